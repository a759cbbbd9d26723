// SPDX-License-Identifier: Apache-2.0
#pragma once
// The control socket of stickylbd: what the `stickylb` CLI (and scripts) talk to.
//
// Protocol
// --------
// Transport: a SOCK_STREAM unix socket (default /run/stickylb/control.sock),
// mode 0600. Messages are newline-delimited JSON: one JSON object per line, in
// both directions, one response per request, in order. A client may send several
// requests on one connection (pipelining) and close whenever it likes.
//
//   request:  {"object":"backend","verb":"show","args":{"vip":"web"}}\n
//   response: {"ok":true,"result":<any JSON>}\n
//         or: {"ok":false,"error":"message"}\n
//
// - "object" and "verb" are required strings; "args" is optional and, when
//   present, must be a JSON object (keys are snake_case: vip, name, weight,
//   force, backend, client). Anything else is answered with an error response;
//   the connection stays open.
// - Blank lines are ignored; a trailing "\r" is stripped. A request nested deeper than
//   kMaxRequestDepth (16) levels is refused as malformed.
// - A line longer than kMaxRequestBytes (64 KiB, newline excluded) gets the
//   error response "request too long ..." and the connection is closed.
// - At most kMaxConnections (32) connections at once; the next one gets the error
//   response "too many connections" and is closed.
// - A connection that sends no complete request within kIdleTimeout (30 s) of
//   connecting or of its last response is closed; blank lines do not count.
// - Each connection may send kRateBurst requests at once, then kRatePerSecond
//   on average (a token bucket per connection); the request over that gets the
//   error response "rate limit exceeded ..." and the connection is closed. A
//   runaway script cannot keep the daemon's only thread busy.
// - Authorisation: SO_PEERCRED of the connecting process: its uid must be 0 or
//   the daemon's effective uid, or, with ControlOptions::group set, its primary
//   or one of its supplementary groups (SO_PEERGROUPS) must be that group;
//   others get "permission denied" and are closed. The socket mode (0600, or
//   0660 and owned by the group) is the first barrier, the credential check the
//   second (it also covers the instant between bind() and chmod()).
// - The handler decides what objects and verbs mean. It runs on the io_context
//   thread; a std::exception it throws becomes {"ok":false,"error":what()}.
//   An AsyncHandler may answer later (work done on other threads): it gets a
//   Reply to call exactly once, on the io_context thread; the connection reads
//   its next request only after that answer, so answers stay in order.
//
// Lifetime: construct on an io_context (binds and listens at once; throws
// std::runtime_error if the socket cannot be set up), run the io_context.
// stop() (also called by the destructor) closes the listener and every
// connection and unlinks the socket file; call it on the io_context's thread or
// while the io_context is not running.
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <nlohmann/json.hpp>

namespace stickylb {

struct ControlOptions {
    // Members of this group may use the socket too: it is chowned to the group and
    // made 0660. nullopt: root and the daemon's own uid only (mode 0600).
    std::optional<unsigned> group{};
    double rate_burst = 100;      // requests a connection may send at once
    double rate_per_second = 50;  // and then on average
};

// The group id of NAME; throws std::runtime_error ("control socket group NAME: no
// such group") if there is none.
unsigned control_group_id(const std::string& name);

class ControlServer {
public:
    using Handler =
        std::function<nlohmann::json(const std::string& object, const std::string& verb, const nlohmann::json& args)>;
    // error empty: {"ok":true,"result":result}; else {"ok":false,"error":error}.
    using Reply = std::function<void(nlohmann::json result, std::string error)>;
    using AsyncHandler = std::function<void(const std::string& object, const std::string& verb,
                                            const nlohmann::json& args, Reply reply)>;

    static constexpr std::size_t kMaxRequestBytes = 64 * 1024;
    // Deeper requests are refused before anything walks them: copying or printing a
    // json value recurses once per level, and one line can nest 32,000 levels.
    static constexpr int kMaxRequestDepth = 16;
    static constexpr std::size_t kMaxConnections = 32;
    static constexpr std::chrono::seconds kIdleTimeout{30};

    // Creates the parent directory, removes a stale socket file (refuses a path
    // that is not a socket, or a socket another process still listens on),
    // binds, chmods 0600 (with a group: chowns to it, 0660) and starts accepting.
    ControlServer(boost::asio::io_context& io, const std::string& path, Handler handler, ControlOptions options = {});
    ControlServer(boost::asio::io_context& io, const std::string& path, AsyncHandler handler,
                  ControlOptions options = {});
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    void stop();
    const std::string& path() const { return path_; }
    std::size_t connection_count() const { return sessions_.size(); }

    // The response line (without newline) for one request line: the protocol
    // minus the transport, for tests and for in-process use.
    static std::string respond(const Handler& handler, const std::string& line);
    // The same for an AsyncHandler: `answer` gets the response line (once).
    static void respond_async(const AsyncHandler& handler, const std::string& line,
                              std::function<void(std::string)> answer);

    // Test hook: the idle timeout of connections accepted from now on.
    void set_idle_timeout(std::chrono::milliseconds timeout) { idle_timeout_ = timeout; }

private:
    class Session;
    void accept();
    void remove(const std::shared_ptr<Session>& session);

    std::string path_;
    AsyncHandler handler_;
    ControlOptions options_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    std::set<std::shared_ptr<Session>> sessions_;
    std::chrono::milliseconds idle_timeout_ = kIdleTimeout;
    bool stopped_ = false;
};

// True if a process with this uid may use the control socket of a daemon running
// with effective uid daemon_euid.
bool control_peer_allowed(unsigned peer_uid, unsigned daemon_euid);

// The same with the configured group: the peer's primary gid or one of its
// supplementary groups may match it.
struct ControlPeer {
    unsigned uid = 0;
    unsigned gid = 0;
    std::vector<unsigned> groups;  // supplementary
};
bool control_peer_allowed(const ControlPeer& peer, unsigned daemon_euid, std::optional<unsigned> group);

}  // namespace stickylb

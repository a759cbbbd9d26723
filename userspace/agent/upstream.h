// SPDX-License-Identifier: Apache-2.0
#pragma once
// One upstream memcached server as stickylb-agent uses it: a few pipelined
// connections shared by every client of the agent, requests matched to replies
// in order (memcached answers in order on a connection), a deadline per
// request, and a health state so a dead server costs callers nothing but a
// fast error.
//
// Requests are sent as given (classic text commands or meta commands, e.g.
// "mg key v c f\r\n", "ms key 3 ME T30 c\r\nabc\r\n", "md key C12\r\n"); the
// caller says what shape the reply has so it can be framed.
//
// Failure model: when a request's deadline passes or its connection fails, the
// connection is closed and every request pending on it completes with an
// error (replies could no longer be matched). A failed connect marks the
// server down for a backoff (100 ms doubling to 2 s); while down, requests fail
// at once with UpstreamError::server_down. A success marks it up again.
//
// Threading: everything runs on the executor given at construction (the agent
// runs one io_context on one thread); handlers are invoked through it, never
// inline from call().
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace stickylb::agent {

// "127.0.0.1:11211", "[::1]:11211", "memcache1:11211" (names are resolved at
// connect). Throws std::invalid_argument with the reason otherwise.
struct ServerAddress {
    std::string host;
    std::uint16_t port = 11211;
    std::string name() const;  // "host:port", "[v6]:port": the metrics label
    static ServerAddress parse(std::string_view text);
};

enum class UpstreamError {
    server_down = 1,  // marked down, not tried (backoff)
    connect_failed,
    timeout,
    connection_lost,  // reset, closed by the server, or closed by another request's failure
    protocol,         // a reply that does not frame as the shape said
};
const std::error_category& upstream_category();
std::error_code make_error_code(UpstreamError error);

enum class ReplyShape {
    line,    // one line: STORED, NOT_STORED, EXISTS, NOT_FOUND, DELETED, TOUCHED, a number,
             // OK, VERSION x, ERROR, CLIENT_ERROR x, SERVER_ERROR x
    values,  // get/gets: VALUE blocks then END (or one error line)
    stats,   // STAT lines then END
    meta,    // mg/ms/md/mn: HD/NS/EX/NF/EN/MN line, or VA <len> <flags> + data block
    none,    // noreply: nothing is read, the handler runs once the request is written
};

struct Reply {
    struct Value {
        std::string key;
        std::uint32_t flags = 0;
        std::string data;
        std::optional<std::uint64_t> cas;  // gets
    };
    std::string line;           // the first (or only) line without "\r\n": "STORED", "HD c5", "VA 3 c2 f0", "END"
    std::vector<Value> values;  // values: the VALUE blocks in order
    std::vector<std::string> stats_lines;  // stats: "STAT name value" lines
    std::string data;                      // meta VA: the data block

    // Meta replies: the two-letter code ("HD", "VA", "EN", "NS", "EX", "NF", "MN").
    std::string_view meta_code() const;
    // Meta replies: the value of a returned flag, e.g. flag('c') -> "5" for "HD c5";
    // nullopt if the flag is absent.
    std::optional<std::string_view> flag(char name) const;
};

struct UpstreamOptions {
    std::chrono::milliseconds connect_timeout{250};
    std::chrono::milliseconds request_timeout{500};
    std::size_t connections = 2;  // opened lazily; requests spread round-robin
    std::size_t max_reply_bytes = 2 * 1024 * 1024;
};

struct UpstreamCounters {
    std::uint64_t requests = 0;
    std::uint64_t errors = 0;  // requests that completed with an error
    std::uint64_t connects = 0;
    std::uint64_t connect_failures = 0;
};

class UpstreamServer {
public:
    using Handler = std::function<void(std::error_code, Reply)>;

    UpstreamServer(boost::asio::any_io_executor executor, ServerAddress address, UpstreamOptions options = {});
    ~UpstreamServer();  // close()
    UpstreamServer(const UpstreamServer&) = delete;
    UpstreamServer& operator=(const UpstreamServer&) = delete;

    const ServerAddress& address() const;
    const std::string& name() const;  // address().name(), cached
    bool up() const;                  // false while in a connect backoff
    const UpstreamCounters& counters() const;

    // Sends `wire` (complete, "\r\n"-terminated, data blocks included) and calls
    // `done` exactly once with the reply or an error.
    void call(std::string wire, ReplyShape shape, Handler done);

    // Closes every connection; pending requests complete with connection_lost. Idempotent.
    void close();

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace stickylb::agent

template <>
struct std::is_error_code_enum<stickylb::agent::UpstreamError> : std::true_type {};

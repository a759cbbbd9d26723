// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the agent does with each client request: sessions and their locks
// through the owner-checked, replicated paths; every other key passed through
// to the memcached server it hashes to.
//
// Locks (the handler's add/delete of "<prefix>lock.<sid>"):
//  - taken upstream with a meta add of a LockTag value and a short lease, owned
//    by the client connection, renewed while it lives, released (CAS-checked)
//    when it unlocks or disconnects;
//  - a lock held by a dead owner (break_reason) is taken over by CAS at once;
//  - a lock held by a live owner is waited for up to lock_wait (woken at once
//    when a local holder releases it), then NOT_STORED so the client's own
//    retry loop goes on.
// Sessions ("<prefix><sid>"): stored as SessionRecords on `replicas` servers.
// Reads take the newest copy and repair the others. A delete writes a
// tombstone (a versioned "deleted" record, kept for a bounded time) as a write
// would, so neither a repair nor a returning server's old copy brings the
// session back. The sessions served are remembered (RecentSessions) so that a server that comes back can be given
// its copies before their users return (SessionResync). Writes are fenced (the
// writer holds the lock, or nobody does) and CAS-conditional on what the
// connection read, so no write replaces a copy it has not seen.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "agent/agent_config.h"
#include "agent/agent_stats.h"
#include "agent/lock_registry.h"
#include "agent/lock_tag.h"
#include "agent/protocol.h"
#include "agent/recent_sessions.h"
#include "agent/reply_sink.h"
#include "agent/session_record.h"
#include "agent/upstream_group.h"
#include "session/membership_view.h"

namespace stickylb::agent {

// What one client connection knows: its locks and the session copies it read.
// A PHP request works on one session: what is kept per connection is bounded
// (kMaxKept reads and lock attempts, oldest forgotten first) and holds no payload.
struct ClientState {
    static constexpr std::size_t kMaxKept = 16;

    struct ReplicaCopy {
        UpstreamServer* server = nullptr;
        bool reachable = false;
        bool present = false;
        std::uint64_t cas = 0;
    };
    struct SessionRead {
        std::vector<ReplicaCopy> replicas;
        std::optional<SessionRecord> newest;
        std::uint32_t flags = 0;
        std::size_t repairs = 0;     // copies this read rewrote
        std::uint64_t sequence = 0;  // when it was remembered, for forgetting the oldest
    };

    std::uint64_t id = 0;
    std::set<std::string> locks;                                                 // lock keys held
    std::map<std::string, SessionRead> reads;                                    // by session id
    std::map<std::string, std::chrono::steady_clock::time_point> lock_attempts;  // first try, by lock key
    std::uint64_t sequence = 0;

    // Keeps what a write needs of `read` (versions, CAS values; not the payload).
    std::map<std::string, SessionRead>::iterator remember_read(const std::string& sid, SessionRead read);
    // The time of the first attempt at `lock_key` still pending (now, for a new one).
    std::chrono::steady_clock::time_point first_lock_attempt(const std::string& lock_key,
                                                             std::chrono::steady_clock::time_point now);
};

class SessionService {
public:
    SessionService(const AgentConfig& config, UpstreamGroup& upstreams, AgentStats& stats);

    const LocalIdentity& identity() const { return self_; }
    LockRegistry& locks() { return locks_; }
    std::size_t locks_held() const { return locks_.size(); }
    void set_view(std::optional<session::MembershipView> view) { view_ = std::move(view); }
    const std::optional<session::MembershipView>& view() const { return view_; }
    std::uint64_t incarnation() const;

    // Answers `request` into `out` (nothing for noreply requests); multi-gets
    // piece by piece. Throws what out.put() throws.
    boost::asio::awaitable<void> handle(ClientState& client, const Request& request, ReplySink& out);
    // The connection closed: release what it holds.
    boost::asio::awaitable<void> disconnect(ClientState& client);
    // When even the release cannot be sent: stop renewing the client's locks,
    // which then expire within their lease.
    void forget(ClientState& client);
    // Extends every held lock's lease; marks the ones found lost.
    boost::asio::awaitable<void> renew_locks();

    const RecentSessions& recent_sessions() const { return recent_; }
    // What a client read does to a session's copies, without a client: reads
    // every replica, repairs the missing or older ones from the newest (each
    // write conditional on the copy read). Returns how many copies it rewrote.
    boost::asio::awaitable<std::size_t> repair_session(const std::string& key);

private:
    // The reply to every request but get/gets (also computed for noreply requests).
    boost::asio::awaitable<std::string> answer(ClientState& client, const Request& request);
    boost::asio::awaitable<void> get(ClientState& client, const Request& request, ReplySink& out);
    // A request that lives on one server (a lock, a key outside sessions): failovers counted.
    boost::asio::awaitable<PlacedResult> call_placed(std::string_view key, std::string wire, ReplyShape shape);
    boost::asio::awaitable<std::string> lock(ClientState& client, const Request& request, std::string_view sid);
    boost::asio::awaitable<std::string> unlock(ClientState& client, const std::string& key);
    boost::asio::awaitable<bool> release(HeldLock held);
    boost::asio::awaitable<std::optional<std::string>> fence(ClientState& client, std::string_view sid);
    // Every copy one read found.
    struct Copies {
        ClientState::SessionRead read;
        std::vector<std::optional<SessionRecord>> records;  // by replica, as read
        std::int64_t newest_ttl = 0;                        // seconds the newest copy has left; 0: no expiry
        std::int64_t longest_ttl = 0;                       // seconds the longest-lived copy has left
        bool copy_without_expiry = false;
    };
    // What writing one record over the copies of a read did.
    struct StoreOutcome {
        std::size_t written = 0;
        std::optional<SessionRecord> conflict;  // a copy by another writer, at or above our version
        std::string conflict_server;
    };

    boost::asio::awaitable<Copies> read_copies(const std::string& key, const std::vector<UpstreamServer*>& servers);
    // Rewrites every reachable copy that is missing or older than the newest (a
    // tombstone included), each conditional on the copy read.
    // quiet: repairs logged at debug level (a resync logs one line per run instead).
    boost::asio::awaitable<void> repair(const std::string& key, Copies& copies, bool quiet);
    boost::asio::awaitable<ClientState::SessionRead> read_session(const std::string& key, bool quiet = false);
    // Writes `record` over the copies `read` saw, in its order, each write
    // conditional on the copy read (added where none was); retries over a copy
    // that changed to an older one, stops at one from another writer at or
    // above the record's version.
    boost::asio::awaitable<StoreOutcome> store_record(const std::string& key, ClientState::SessionRead& read,
                                                      const SessionRecord& record, const std::string& meta_flags);
    boost::asio::awaitable<std::string> write_session(ClientState& client, const Request& request,
                                                      std::string_view sid);
    boost::asio::awaitable<std::string> delete_session(ClientState& client, const Request& request,
                                                       std::string_view sid);
    boost::asio::awaitable<std::string> touch_session(const Request& request);
    boost::asio::awaitable<std::string> pass_through(const Request& request);

    std::uint64_t random64() { return random_(); }

    const AgentConfig& config_;
    UpstreamGroup& upstreams_;
    AgentStats& stats_;
    LocalIdentity self_;
    LockRegistry locks_;
    std::optional<session::MembershipView> view_;
    RecentSessions recent_;
    std::mt19937_64 random_;
    bool long_session_id_logged_ = false;
};

}  // namespace stickylb::agent

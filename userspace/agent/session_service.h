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
#include "agent/session_record.h"
#include "agent/upstream_group.h"
#include "session/membership_view.h"

namespace stickylb::agent {

// What one client connection knows: its locks and the session copies it read.
struct ClientState {
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
        std::size_t repairs = 0;  // copies this read rewrote
    };

    std::uint64_t id = 0;
    std::set<std::string> locks;                                     // lock keys held
    std::map<std::string, SessionRead> reads;                        // by session id
    std::map<std::string, std::chrono::steady_clock::time_point> lock_attempts;  // first try, by lock key
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

    // The reply to send (also computed for noreply requests; the caller drops it).
    boost::asio::awaitable<std::string> handle(ClientState& client, const Request& request);
    // The connection closed: release what it holds.
    boost::asio::awaitable<void> disconnect(ClientState& client);
    // Extends every held lock's lease; marks the ones found lost.
    boost::asio::awaitable<void> renew_locks();

    const RecentSessions& recent_sessions() const { return recent_; }
    // What a client read does to a session's copies, without a client: reads
    // every replica, repairs the missing or older ones from the newest (each
    // write conditional on the copy read). Returns how many copies it rewrote.
    boost::asio::awaitable<std::size_t> repair_session(const std::string& key);

private:
    boost::asio::awaitable<std::string> get(ClientState& client, const Request& request);
    boost::asio::awaitable<std::string> lock(ClientState& client, const Request& request, std::string_view sid);
    boost::asio::awaitable<std::string> unlock(ClientState& client, const std::string& key);
    boost::asio::awaitable<bool> release(HeldLock held);
    boost::asio::awaitable<std::optional<std::string>> fence(ClientState& client, std::string_view sid);
    // Every copy one read found.
    struct Copies {
        ClientState::SessionRead read;
        std::vector<std::optional<SessionRecord>> records;  // by replica, as read
        std::int64_t newest_ttl = 0;    // seconds the newest copy has left; 0: no expiry
        std::int64_t longest_ttl = 0;   // seconds the longest-lived copy has left
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
    boost::asio::awaitable<std::string> write_session(ClientState& client, const Request& request, std::string_view sid);
    boost::asio::awaitable<std::string> delete_session(ClientState& client, const Request& request, std::string_view sid);
    boost::asio::awaitable<std::string> touch_session(const Request& request);
    boost::asio::awaitable<std::string> pass_through(const Request& request);

    UpstreamServer& lock_server(const std::string& key);
    std::uint64_t random64() { return random_(); }

    const AgentConfig& config_;
    UpstreamGroup& upstreams_;
    AgentStats& stats_;
    LocalIdentity self_;
    LockRegistry locks_;
    std::optional<session::MembershipView> view_;
    RecentSessions recent_;
    std::mt19937_64 random_;
};

}  // namespace stickylb::agent

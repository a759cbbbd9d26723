// SPDX-License-Identifier: Apache-2.0
#pragma once
// stickylb-agent's counters, shown two ways: the memcached `stats` command
// (STAT lines, for operators used to memcached) and Prometheus /metrics.
#include <array>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <string_view>
#include <string>
#include <vector>

#include "agent/lock_tag.h"
#include "agent/protocol.h"
#include "base/prometheus.h"
#include "session/signed_value.h"

namespace stickylb::agent {

inline constexpr std::size_t kCommandCount = static_cast<std::size_t>(Command::stats) + 1;
inline constexpr std::size_t kBreakReasonCount = static_cast<std::size_t>(BreakReason::orphaned) + 1;

// Why a client connection ended: the `reason` label of
// stickylb_agent_connections_closed_total, and the STAT names.
#define STICKYLB_AGENT_CONNECTION_ENDS(X)                                                \
    X(client, "the client closed it or sent quit")                                       \
    X(idle_timeout, "no request within --client-idle-timeout")                           \
    X(request_timeout, "a started request not complete within --client-request-timeout") \
    X(write_timeout, "replies not read by the client within --client-write-timeout")     \
    X(buffer_limit, "buffers of all connections at --max-buffered-bytes")                \
    X(protocol_error, "input the parser cannot frame (a line over the limit)")           \
    X(stopping, "the agent stopped")                                                     \
    X(failure, "an internal error (logged) ended it")

enum class ConnectionEnd {
#define STICKYLB_X(name, help) name,
    STICKYLB_AGENT_CONNECTION_ENDS(STICKYLB_X)
#undef STICKYLB_X
};
inline constexpr std::string_view kConnectionEndNames[] = {
#define STICKYLB_X(name, help) #name,
    STICKYLB_AGENT_CONNECTION_ENDS(STICKYLB_X)
#undef STICKYLB_X
};
inline constexpr std::size_t kConnectionEndCount = std::size(kConnectionEndNames);
std::string_view to_string(ConnectionEnd end);  // kConnectionEndNames[end]

// Why an accepted connection was closed at once, or an accept failed.
enum class AcceptRefusal { max_clients, descriptors };
inline constexpr std::size_t kAcceptRefusalCount = 2;
std::string_view to_string(AcceptRefusal refusal);

struct AgentStats {
    std::array<std::uint64_t, kCommandCount> requests{};  // by Command
    std::uint64_t protocol_errors = 0;                    // requests answered with ERROR / CLIENT_ERROR by the parser
    std::uint64_t connections_total = 0;
    std::uint64_t connections_current = 0;
    std::array<std::uint64_t, kConnectionEndCount> connections_closed{};  // by ConnectionEnd
    std::array<std::uint64_t, kAcceptRefusalCount> accepts_refused{};     // by AcceptRefusal
    std::uint64_t upstream_failovers = 0;     // single-server requests retried on the next server in placement order
    std::uint64_t lock_commands_refused = 0;  // commands other than add/delete (and reads) on a lock key

    std::uint64_t locks_taken = 0;
    std::uint64_t locks_busy = 0;      // lock attempts answered NOT_STORED (held by a live owner)
    std::uint64_t locks_released = 0;  // by the client's own delete
    std::uint64_t locks_released_on_disconnect = 0;
    std::array<std::uint64_t, kBreakReasonCount> locks_broken{};  // by BreakReason (none unused)
    std::uint64_t lock_renewals = 0;
    std::uint64_t locks_lost = 0;  // found taken over or gone while held
    std::uint64_t fenced_unlocks_refused = 0;
    std::uint64_t fenced_writes_refused = 0;
    metrics::Histogram lock_wait_seconds{{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}};

    std::uint64_t session_reads = 0;
    std::uint64_t session_writes = 0;
    std::uint64_t replica_repairs = 0;
    std::uint64_t write_conflicts = 0;  // a newer copy found where we meant to write
    std::uint64_t session_deletes = 0;  // deletes that left a tombstone on at least one server
    std::uint64_t tombstone_reads = 0;  // session reads answered "not found" because of a tombstone
    std::uint64_t view_updates = 0;     // polls that found a view with a new epoch
    std::array<std::uint64_t, session::kRejectionCount> memcached_rejected{};  // views refused, by session::Rejection

    std::uint64_t resync_runs = 0;               // walks of every remembered session for a returning server, complete
    std::uint64_t resync_sessions_examined = 0;  // sessions placed on that server, read and repaired as needed
    std::uint64_t resync_sessions_copied = 0;    // of those, sessions with at least one copy rewritten
};

struct UpstreamSample {
    std::string server;
    bool up = false;
    std::uint64_t requests = 0, errors = 0, connect_failures = 0;
};

struct StatsContext {
    const AgentStats* stats = nullptr;
    std::uint64_t buffered_bytes = 0;        // held by client connections now
    std::uint64_t buffered_bytes_limit = 0;  // --max-buffered-bytes
    std::vector<UpstreamSample> upstreams;
    std::chrono::seconds uptime{0};
    bool view_present = false;
    double view_age_seconds = 0;  // now - written_ms of the view in use
    std::uint64_t view_epoch = 0;
    std::uint64_t incarnation = 0;          // this backend's, per the view (0: unknown)
    std::uint64_t locks_held = 0;           // right now, by this agent's clients
    std::uint64_t sessions_remembered = 0;  // ids a resync would walk now
    std::string backend, cluster, version;
};

// "STAT name value\r\n" lines then "END\r\n".
std::string render_memcached_stats(const StatsContext& context);
std::string render_prometheus(const StatsContext& context);

}  // namespace stickylb::agent

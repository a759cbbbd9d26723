// SPDX-License-Identifier: Apache-2.0
#include "agent/agent_stats.h"

#include <unistd.h>

namespace stickylb::agent {

std::string_view to_string(ConnectionEnd end) {
    const auto index = static_cast<std::size_t>(end);
    return index < kConnectionEndCount ? kConnectionEndNames[index] : "failure";
}

std::string_view to_string(AcceptRefusal refusal) {
    return refusal == AcceptRefusal::max_clients ? "max_clients" : "descriptors";
}

std::string render_memcached_stats(const StatsContext& c) {
    const AgentStats& s = *c.stats;
    std::string out;
    auto stat = [&](std::string_view name, auto value) {
        out += "STAT ";
        out += name;
        out += ' ';
        if constexpr (std::is_convertible_v<decltype(value), std::string_view>) {
            out += value;
        } else {
            out += std::to_string(value);
        }
        out += "\r\n";
    };
    stat("pid", static_cast<std::uint64_t>(getpid()));
    stat("uptime", static_cast<std::uint64_t>(c.uptime.count()));
    stat("version", std::string_view(c.version));
    stat("stickylb_backend", std::string_view(c.backend));
    stat("stickylb_cluster", std::string_view(c.cluster));
    stat("curr_connections", s.connections_current);
    stat("total_connections", s.connections_total);
    for (std::size_t i = 0; i < kCommandCount; ++i) {
        stat("cmd_" + std::string(command_name(static_cast<Command>(i))), s.requests[i]);
    }
    stat("protocol_errors", s.protocol_errors);
    for (std::size_t i = 0; i < kConnectionEndCount; ++i) {
        stat("connections_closed_" + std::string(to_string(static_cast<ConnectionEnd>(i))), s.connections_closed[i]);
    }
    for (std::size_t i = 0; i < kAcceptRefusalCount; ++i) {
        stat("accepts_refused_" + std::string(to_string(static_cast<AcceptRefusal>(i))), s.accepts_refused[i]);
    }
    stat("buffered_bytes", c.buffered_bytes);
    stat("upstream_failovers", s.upstream_failovers);
    stat("lock_commands_refused", s.lock_commands_refused);
    stat("locks_held", c.locks_held);
    stat("locks_taken", s.locks_taken);
    stat("locks_busy", s.locks_busy);
    stat("locks_released", s.locks_released);
    stat("locks_released_on_disconnect", s.locks_released_on_disconnect);
    for (std::size_t i = 1; i < kBreakReasonCount; ++i) {
        stat("locks_broken_" + std::string(to_string(static_cast<BreakReason>(i))), s.locks_broken[i]);
    }
    stat("lock_renewals", s.lock_renewals);
    stat("locks_lost", s.locks_lost);
    stat("fenced_unlocks_refused", s.fenced_unlocks_refused);
    stat("fenced_writes_refused", s.fenced_writes_refused);
    stat("session_reads", s.session_reads);
    stat("session_writes", s.session_writes);
    stat("replica_repairs", s.replica_repairs);
    stat("write_conflicts", s.write_conflicts);
    stat("session_deletes", s.session_deletes);
    stat("tombstone_reads", s.tombstone_reads);
    stat("resync_sessions_remembered", c.sessions_remembered);
    stat("resync_runs", s.resync_runs);
    stat("resync_sessions_examined", s.resync_sessions_examined);
    stat("resync_sessions_copied", s.resync_sessions_copied);
    for (std::size_t i = 0; i < session::kRejectionCount; ++i) {
        stat("memcached_rejected_" + std::string(session::to_string(static_cast<session::Rejection>(i))),
             s.memcached_rejected[i]);
    }
    stat("view_present", static_cast<std::uint64_t>(c.view_present));
    stat("view_epoch", c.view_epoch);
    stat("incarnation", c.incarnation);
    for (const UpstreamSample& u : c.upstreams) {
        stat("upstream:" + u.server + ":up", static_cast<std::uint64_t>(u.up));
        stat("upstream:" + u.server + ":requests", u.requests);
        stat("upstream:" + u.server + ":errors", u.errors);
    }
    out += "END\r\n";
    return out;
}

std::string render_prometheus(const StatsContext& c) {
    const AgentStats& s = *c.stats;
    auto d = [](std::uint64_t v) { return static_cast<double>(v); };
    metrics::MetricsWriter w;
    for (std::size_t i = 0; i < kCommandCount; ++i) {
        std::string name = "stickylb_agent_requests_" + std::string(command_name(static_cast<Command>(i))) + "_total";
        w.counter(name, "Client requests of this command.", {}, d(s.requests[i]));
    }
    w.counter("stickylb_agent_protocol_errors_total", "Client requests rejected as malformed (ERROR, CLIENT_ERROR).",
              {}, d(s.protocol_errors));
    w.counter("stickylb_agent_connections_total", "Client connections accepted.", {}, d(s.connections_total));
    w.gauge("stickylb_agent_connections", "Client connections open now.", {}, d(s.connections_current));
    for (std::size_t i = 0; i < kConnectionEndCount; ++i) {
        w.counter("stickylb_agent_connections_closed_total", "Client connections ended, by reason.",
                  {{"reason", std::string(to_string(static_cast<ConnectionEnd>(i)))}}, d(s.connections_closed[i]));
    }
    for (std::size_t i = 0; i < kAcceptRefusalCount; ++i) {
        w.counter("stickylb_agent_accepts_refused_total",
                  "Client connections refused: max_clients reached, or out of file descriptors (accepts paused).",
                  {{"reason", std::string(to_string(static_cast<AcceptRefusal>(i)))}}, d(s.accepts_refused[i]));
    }
    w.gauge("stickylb_agent_buffered_bytes",
            "Bytes client connections hold now: unfinished requests and replies the client has not read.", {},
            d(c.buffered_bytes));
    w.gauge("stickylb_agent_buffered_bytes_limit",
            "--max-buffered-bytes: the ceiling of stickylb_agent_buffered_bytes.", {}, d(c.buffered_bytes_limit));
    w.counter("stickylb_agent_upstream_failovers_total",
              "Requests for one server (locks, keys outside sessions) sent to the next server in placement order "
              "because the first did not answer.",
              {}, d(s.upstream_failovers));
    w.counter("stickylb_agent_lock_commands_refused_total",
              "Commands on a session lock key other than add, delete and reads, refused (locks are owned).", {},
              d(s.lock_commands_refused));
    for (const UpstreamSample& u : c.upstreams) {
        w.gauge("stickylb_agent_upstream_up", "1 if the memcached server is usable, 0 while in a connect backoff.",
                {{"server", u.server}}, u.up ? 1 : 0);
        w.counter("stickylb_agent_upstream_requests_total", "Requests sent to the memcached server.",
                  {{"server", u.server}}, d(u.requests));
        w.counter("stickylb_agent_upstream_errors_total",
                  "Requests to the memcached server that failed (down, timeout, connection lost, protocol).",
                  {{"server", u.server}}, d(u.errors));
    }
    w.gauge("stickylb_agent_locks_held", "Session locks held by this agent's clients now.", {}, d(c.locks_held));
    w.counter("stickylb_agent_locks_taken_total", "Session locks acquired for clients.", {}, d(s.locks_taken));
    w.counter("stickylb_agent_locks_busy_total", "Lock attempts answered NOT_STORED because a live owner held it.", {},
              d(s.locks_busy));
    w.histogram("stickylb_agent_lock_wait_seconds",
                "Time from a client's first lock attempt to getting the lock, retries included.", {},
                s.lock_wait_seconds);
    w.counter("stickylb_agent_locks_released_total", "Session locks released by the client's own unlock.", {},
              d(s.locks_released));
    w.counter("stickylb_agent_locks_released_on_disconnect_total",
              "Session locks released because the owning connection closed (worker finished, crashed or killed).", {},
              d(s.locks_released_on_disconnect));
    w.counter("stickylb_agent_locks_broken_owner_down_total", "Locks broken: the view says the owner is down.", {},
              d(s.locks_broken[static_cast<std::size_t>(BreakReason::owner_down)]));
    w.counter("stickylb_agent_locks_broken_stale_incarnation_total",
              "Locks broken: taken by an older incarnation of the owner's backend.", {},
              d(s.locks_broken[static_cast<std::size_t>(BreakReason::stale_incarnation)]));
    w.counter("stickylb_agent_locks_broken_agent_restarted_total",
              "Locks broken: taken through an earlier process of this agent.", {},
              d(s.locks_broken[static_cast<std::size_t>(BreakReason::agent_restarted)]));
    w.counter("stickylb_agent_locks_broken_orphaned_total",
              "Locks broken: taken through this agent by a connection that no longer holds them.", {},
              d(s.locks_broken[static_cast<std::size_t>(BreakReason::orphaned)]));
    w.counter("stickylb_agent_lock_renewals_total", "Lock expiries extended while their owner's connection lives.", {},
              d(s.lock_renewals));
    w.counter("stickylb_agent_locks_lost_total", "Held locks found taken over or gone upstream.", {}, d(s.locks_lost));
    w.counter("stickylb_agent_fenced_unlocks_refused_total", "Unlocks refused: the connection did not own the lock.",
              {}, d(s.fenced_unlocks_refused));
    w.counter("stickylb_agent_fenced_writes_refused_total",
              "Session writes refused: another connection holds the session's lock, or ours was lost.", {},
              d(s.fenced_writes_refused));
    w.counter("stickylb_agent_session_reads_total", "Session reads (all replicas asked).", {}, d(s.session_reads));
    w.counter("stickylb_agent_session_writes_total", "Session writes stored.", {}, d(s.session_writes));
    w.counter("stickylb_agent_replica_repairs_total", "Stale or missing session replicas rewritten from the newest.",
              {}, d(s.replica_repairs));
    w.counter("stickylb_agent_write_conflicts_total", "Session writes refused because a newer copy was found.", {},
              d(s.write_conflicts));
    w.counter("stickylb_agent_session_deletes_total",
              "Session deletes that left a versioned tombstone (a deleted session cannot be repaired back).", {},
              d(s.session_deletes));
    w.counter("stickylb_agent_tombstone_reads_total",
              "Session reads answered as a miss because the newest copy is a tombstone.", {}, d(s.tombstone_reads));
    w.gauge("stickylb_agent_resync_sessions_remembered",
            "Session ids this agent served lately: what a resync walks (bounded by --resync-sessions).", {},
            d(c.sessions_remembered));
    w.counter("stickylb_agent_resync_runs_total",
              "Resyncs that walked every remembered session for a memcached server that came back or restarted.", {},
              d(s.resync_runs));
    w.counter("stickylb_agent_resync_sessions_examined_total",
              "Sessions placed on a returning memcached server that a resync read and repaired as needed.", {},
              d(s.resync_sessions_examined));
    w.counter("stickylb_agent_resync_sessions_copied_total",
              "Sessions a resync copied back (at least one missing or older copy rewritten from the newest).", {},
              d(s.resync_sessions_copied));
    w.gauge("stickylb_agent_view_present", "1 if a membership view from stickylbd is in use.", {},
            c.view_present ? 1 : 0);
    w.gauge("stickylb_agent_view_age_seconds", "Age of the membership view in use (now - written_ms); 0 if none.", {},
            c.view_present ? c.view_age_seconds : 0);
    w.gauge("stickylb_agent_view_epoch", "Epoch of the membership view in use.", {}, d(c.view_epoch));
    w.gauge("stickylb_agent_incarnation", "This backend's incarnation per the view (0: unknown).", {},
            d(c.incarnation));
    w.counter("stickylb_agent_view_updates_total", "Membership views with a new epoch taken into use.", {},
              d(s.view_updates));
    for (std::size_t i = 0; i < session::kRejectionCount; ++i) {
        w.counter("stickylb_agent_memcached_rejected_total",
                  "Membership views read from memcached and refused, by reason.",
                  {{"reason", std::string(session::to_string(static_cast<session::Rejection>(i)))}},
                  d(s.memcached_rejected[i]));
    }
    w.build_info(c.version, "");
    return w.str();
}

}  // namespace stickylb::agent

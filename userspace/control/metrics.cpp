// SPDX-License-Identifier: Apache-2.0
#include "control/metrics.h"

namespace stickylb::metrics {

std::string global_counter_metric(const GlobalCounter& counter) {
    return std::string(counter.outcome ? "stickylb_packets_" : "stickylb_") + counter.name + "_total";
}

void write_metrics(MetricsWriter& w, const MetricsSnapshot& s) {
    auto d = [](std::uint64_t v) { return static_cast<double>(v); };

    // Global counters, from the one table (stickylb/stats.h): outcomes, then "of which".
    for (const GlobalCounter& counter : kGlobalCounters)
        w.counter(global_counter_metric(counter), counter.help, {}, d(s.global.*counter.field));

    for (const VipSample& v : s.vips) {
        w.counter("stickylb_vip_packets_total", "Packets received for the VIP.", {{"vip", v.vip}}, d(v.stats.packets));
        w.counter("stickylb_vip_bytes_total", "Bytes received for the VIP.", {{"vip", v.vip}}, d(v.stats.bytes));
        w.counter("stickylb_vip_new_flows_total", "Flows recorded for the VIP (handshake completed, or a re-pick).",
                  {{"vip", v.vip}}, d(v.stats.new_flows));
        w.counter("stickylb_vip_affinity_hits_total", "Persistent VIP: client found in the affinity table.",
                  {{"vip", v.vip}}, d(v.stats.affinity_hits));
        w.counter("stickylb_vip_affinity_misses_total", "Persistent VIP: client picked from the ring and recorded.",
                  {{"vip", v.vip}}, d(v.stats.affinity_misses));
        w.counter("stickylb_vip_ring_rewrites_total",
                  "Reconciles that changed slots of the VIP's Maglev ring (since the daemon started).",
                  {{"vip", v.vip}}, d(v.ring_rewrites));
        w.counter("stickylb_vip_ring_slots_written_total",
                  "Maglev ring slots of the VIP changed (since the daemon started).", {{"vip", v.vip}},
                  d(v.ring_slots_written));
        w.gauge("stickylb_vip_ring_applied_timestamp_seconds",
                "When a reconcile last changed the VIP's Maglev ring (Unix time; 0: not since the daemon started). "
                "Compare across LB hosts for the spread of one change.",
                {{"vip", v.vip}}, v.ring_applied_timestamp_seconds);
        if (v.announce_reason) {
            w.gauge("stickylb_vip_announced", "1 while this host announces the VIP to its BGP speaker.",
                    {{"vip", v.vip}}, v.announced ? 1 : 0);
            for (const AnnounceReason reason : all_announce_reasons())
                w.gauge("stickylb_vip_announce_state",
                        "1 for the reason the VIP is announced or withdrawn (one series per reason).",
                        {{"vip", v.vip}, {"reason", std::string(to_string(reason))}},
                        reason == *v.announce_reason ? 1 : 0);
            w.counter("stickylb_vip_announce_changes_total",
                      "Times the VIP went from announced to withdrawn or back (since the daemon started).",
                      {{"vip", v.vip}}, d(v.announce_changes));
        }
    }

    for (const BackendSample& b : s.backends) {
        w.counter("stickylb_backend_packets_total", "Packets forwarded to the backend.",
                  {{"vip", b.vip}, {"backend", b.backend}}, d(b.stats.packets));
        w.counter("stickylb_backend_bytes_total", "Bytes forwarded to the backend.",
                  {{"vip", b.vip}, {"backend", b.backend}}, d(b.stats.bytes));
        w.gauge("stickylb_backend_state", "Backend state: 0 up, 1 draining, 2 down.",
                {{"vip", b.vip}, {"backend", b.backend}}, b.state);
        w.gauge("stickylb_backend_health_check_up", "1 if the backend's last health check passed, else 0.",
                {{"vip", b.vip}, {"backend", b.backend}}, b.health_ok ? 1 : 0);
        w.counter("stickylb_backend_state_transitions_total", "Backend state changes (up, draining, down).",
                  {{"vip", b.vip}, {"backend", b.backend}}, d(b.transitions));
    }
    for (const BackendSample& b : s.backends) {
        if (!b.fleet_votes)
            continue;
        for (const auto& [health, votes] : {std::pair{"up", b.fleet_votes->up}, std::pair{"down", b.fleet_votes->down}})
            w.gauge("stickylb_backend_fleet_votes",
                    "LB hosts of the fleet, this one included, whose own checks find the backend up or down; the "
                    "backend is down in every ring when at least half of them find it down.",
                    {{"vip", b.vip}, {"backend", b.backend}, {"health", health}}, d(votes));
    }
    for (const BackendSample& b : s.backends) {
        w.counter("stickylb_affinity_clients_moved_total",
                  "Affinity clients moved off the backend: still pointing at it when it went down, or moved by "
                  "a forced drain.",
                  {{"vip", b.vip}, {"backend", b.backend}}, d(b.affinity_clients_moved));
        w.gauge("stickylb_backend_last_failover_timestamp_seconds",
                "When the backend was last marked down by its health checks (Unix time); 0: never.",
                {{"vip", b.vip}, {"backend", b.backend}}, b.last_failover_timestamp_seconds);
    }
    for (const BackendSample& b : s.backends) {
        if (b.check_latency_seconds == nullptr)
            continue;
        w.histogram("stickylb_health_check_duration_seconds", "Duration of health checks, in seconds.",
                    {{"vip", b.vip}, {"backend", b.backend}}, *b.check_latency_seconds);
    }

    w.gauge("stickylb_flow_table_entries", "Entries in the flow table (LRU).", {}, d(s.flow_entries));
    w.gauge("stickylb_flow_table_capacity", "Capacity of the flow table.", {}, d(s.flow_capacity));
    w.gauge("stickylb_affinity_table_entries", "Entries in the client affinity table (LRU).", {},
            d(s.affinity_entries));
    w.gauge("stickylb_affinity_table_capacity", "Capacity of the client affinity table.", {}, d(s.affinity_capacity));
    w.counter("stickylb_reconciles_total", "Reconciliations of the data plane with the configuration.", {},
              d(s.reconciles));
    w.counter("stickylb_reconcile_errors_total", "Reconciliations that failed.", {}, d(s.reconcile_errors));
    if (s.session.enabled) {
        const SessionSample& coordination = s.session;
        for (const MemcachedServerSample& server : coordination.servers) {
            w.gauge("stickylb_memcached_up", "1 if the last operation on the memcached server succeeded, else 0.",
                    {{"server", server.server}}, server.up ? 1 : 0);
            w.counter("stickylb_memcached_errors_total", "Failed operations on the memcached server.",
                      {{"server", server.server}}, d(server.errors));
            w.counter("stickylb_membership_view_writes_total", "Membership views written to the memcached server.",
                      {{"server", server.server}}, d(server.view_writes));
        }
        w.gauge("stickylb_membership_view_writer",
                "1 while this host writes the membership views (in a fleet, the lowest host id of those sharing its "
                "config), 0 while another one does.",
                {}, coordination.view_writer ? 1 : 0);
        if (coordination.failover_to_view_seconds != nullptr)
            w.histogram("stickylb_failover_view_written_seconds",
                        "From a backend's first failed check to a membership view saying it is down written to a "
                        "memcached server, in seconds.",
                        {}, *coordination.failover_to_view_seconds);
        w.counter("stickylb_affinity_snapshot_saves_total", "Affinity snapshots saved to memcached.", {},
                  d(coordination.snapshot_saves));
        w.counter("stickylb_affinity_snapshot_save_failures_total", "Affinity snapshots that no memcached server took.",
                  {}, d(coordination.snapshot_save_failures));
        w.gauge("stickylb_affinity_snapshot_last_save_timestamp_seconds",
                "When the last affinity snapshot was saved (Unix time); 0: never.", {},
                coordination.snapshot_last_save_timestamp_seconds);
        w.gauge("stickylb_affinity_snapshot_entries", "Entries in the last affinity snapshot saved.", {},
                d(coordination.snapshot_last_save_entries));
        w.counter("stickylb_affinity_restored_total", "Affinity entries restored from snapshots.", {},
                  d(coordination.affinities_restored));
        w.counter("stickylb_affinity_restore_failures_total",
                  "Restores that found no usable snapshot among those present, or failed; the table started empty.", {},
                  d(coordination.affinity_restore_failures));
        for (std::size_t i = 0; i < session::kRejectionCount; ++i)
            w.counter("stickylb_memcached_rejected_total",
                      "Values read from memcached (membership views, affinity snapshots) refused, by reason.",
                      {{"reason", std::string(session::to_string(static_cast<session::Rejection>(i)))}},
                      d(coordination.memcached_rejected[i]));
    }
    if (s.fleet.standing) {
        for (const FleetStanding standing : all_fleet_standings())
            w.gauge("stickylb_fleet_standing",
                    "1 for where this host stands in its fleet: whether its config fingerprint is the fleet's "
                    "(one series per standing).",
                    {{"standing", std::string(to_string(standing))}}, standing == *s.fleet.standing ? 1 : 0);
        w.gauge("stickylb_fleet_hosts", "Fresh LB hosts of the fleet, this one included.", {},
                d(s.fleet.hosts_agreeing + s.fleet.hosts_differing));
        w.gauge("stickylb_fleet_hosts_other_config",
                "Fresh LB hosts of the fleet whose config fingerprint is not the fleet's.", {},
                d(s.fleet.hosts_differing));
        w.gauge("stickylb_fleet_hosts_sharing_checks",
                "LB hosts whose health checks this host's rings follow, this one included (1: its own checks alone, "
                "as when no memcached server answers).",
                {}, d(s.fleet.hosts_sharing_checks));
        w.counter("stickylb_fleet_roster_reads_total",
                  "Fleet roster reads between heartbeats (peers' checks), all servers.", {}, d(s.fleet.reads));
        w.counter("stickylb_fleet_heartbeats_total", "This host's entries written to the fleet roster, all servers.",
                  {}, d(s.fleet.heartbeats));
        w.counter("stickylb_fleet_heartbeat_failures_total",
                  "Fleet roster writes that failed (a server's error, or other hosts writing in between).", {},
                  d(s.fleet.write_failures));
        w.counter("stickylb_fleet_rosters_rejected_total",
                  "Fleet rosters read from memcached and refused (signature, format); each was rewritten.", {},
                  d(s.fleet.rejected_rosters));
    }
    if (s.fleet.standing && s.fleet.exception_sync) {
        w.gauge("stickylb_fleet_flow_exceptions",
                "This host's flows off today's ring (kept on a backend a ring change no longer picks), as last "
                "published to its peers.",
                {}, d(s.fleet.flow_exceptions_published));
        w.gauge("stickylb_fleet_affinity_exceptions",
                "This host's clients of persistent VIPs kept on a backend their ring pick no longer is, as last "
                "published to its peers.",
                {}, d(s.fleet.affinity_exceptions_published));
        w.gauge("stickylb_fleet_peer_flow_entries",
                "Entries of the peer-flow table: the flow exceptions of the fleet's other hosts, followed by a packet "
                "under way that finds no flow entry.",
                {}, d(s.fleet.peer_flow_entries));
        w.gauge("stickylb_fleet_peer_exceptions_unplaced",
                "Peers' flow exceptions not in the peer-flow table: a backend this host does not have, or past the "
                "table's size.",
                {}, d(s.fleet.peer_exceptions_unplaced));
        w.counter("stickylb_fleet_exception_versions_published_total",
                  "Versions of this host's flow exceptions written whole to a memcached server.", {},
                  d(s.fleet.exception_versions_published));
        w.counter("stickylb_fleet_exception_publish_failures_total",
                  "Writes of this host's flow exceptions to a memcached server that failed.", {},
                  d(s.fleet.exception_publish_failures));
        w.counter("stickylb_fleet_exception_versions_loaded_total",
                  "Versions of peers' flow exceptions read whole from memcached.", {},
                  d(s.fleet.exception_versions_loaded));
        w.counter("stickylb_fleet_peer_affinities_written_total",
                  "Peers' client affinities written into this host's affinity table, so that it sends their new "
                  "connections where the peers do.",
                  {}, d(s.fleet.peer_affinities_written));
        constexpr std::string_view kLoadFailures = "stickylb_fleet_exception_load_failures_total";
        constexpr std::string_view kLoadFailuresHelp =
            "Peers' exceptions not loaded, by reason: a version no memcached server gave whole (fetch), or the "
            "peer-flow and affinity tables not written (table_write).";
        w.counter(kLoadFailures, kLoadFailuresHelp, {{"reason", "fetch"}}, d(s.fleet.exception_fetch_failures));
        w.counter(kLoadFailures, kLoadFailuresHelp, {{"reason", "table_write"}},
                  d(s.fleet.exception_table_write_failures));
    }
    w.build_info(s.version, s.commit);
}

std::string render_metrics(const MetricsSnapshot& snapshot) {
    MetricsWriter writer;
    write_metrics(writer, snapshot);
    return writer.str();
}

}  // namespace stickylb::metrics

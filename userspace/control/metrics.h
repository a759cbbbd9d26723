// SPDX-License-Identifier: Apache-2.0
#pragma once
// stickylbd's metric families: the daemon fills a MetricsSnapshot per scrape and
// render_metrics() turns it into Prometheus text (conventions: base/prometheus.h).
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "control/announce.h"
#include "control/fleet_health.h"
#include "control/fleet_standing.h"
#include "base/prometheus.h"
#include "session/signed_value.h"
#include "stickylb/stats.h"

namespace stickylb::metrics {

struct VipSample {
    std::string vip;  // "tcp 10.0.0.1:80" (VipKey::to_string) or a configured name
    stickylb_vip_stats stats{};
    std::uint64_t ring_rewrites = 0;            // reconciles that changed slots of its Maglev ring
    std::uint64_t ring_slots_written = 0;       // slots they changed
    double ring_applied_timestamp_seconds = 0;  // wall clock of the last such reconcile; 0: none
    // Announcing on (an `announce` section): the current reason, one of announce.h's.
    std::optional<AnnounceReason> announce_reason;
    bool announced = false;  // the route is in the speaker's table
    std::uint64_t announce_changes = 0;
};

struct BackendSample {
    std::string vip;
    std::string backend;  // "10.1.0.2:80" or a configured name
    stickylb_backend_stats stats{};
    int state = 0;  // 0 up, 1 draining, 2 down (stickylb_backend_state)
    bool health_ok = false;
    std::uint64_t transitions = 0;
    // Health-check durations of this backend; nullptr: not exported for it.
    const Histogram* check_latency_seconds = nullptr;
    // Affinity clients moved off it: when it went down, or was drained with force.
    std::uint64_t affinity_clients_moved = 0;
    double last_failover_timestamp_seconds = 0;  // wall clock; 0: never failed over
    // In a fleet sharing checks: the hosts (this one included) whose checks find it up, down.
    std::optional<HealthVotes> fleet_votes = std::nullopt;
};

struct MemcachedServerSample {
    std::string server;  // "host:port"
    bool up = false;
    std::uint64_t errors = 0;
    std::uint64_t view_writes = 0;
};

// Session coordination (memcached); nothing is exported for it unless enabled.
struct SessionSample {
    bool enabled = false;
    bool view_writer = true;  // this host writes the membership views (in a fleet, one host does)
    std::vector<MemcachedServerSample> servers;
    // First failed check of a backend to a view saying down written; nullptr: none.
    const Histogram* failover_to_view_seconds = nullptr;
    std::uint64_t snapshot_saves = 0, snapshot_save_failures = 0;
    double snapshot_last_save_timestamp_seconds = 0;  // 0: never saved
    std::uint64_t snapshot_last_save_entries = 0;
    std::uint64_t affinities_restored = 0;
    std::uint64_t affinity_restore_failures = 0;
    std::array<std::uint64_t, session::kRejectionCount> memcached_rejected{};  // by session::Rejection
};

// Announcing in a fleet (announce and memcached_servers); nothing is exported otherwise.
struct FleetSample {
    std::optional<FleetStanding> standing;
    std::uint64_t hosts_agreeing = 0;  // fresh hosts running the fleet's config fingerprint, this one included
    std::uint64_t hosts_differing = 0;
    std::uint64_t hosts_sharing_checks = 1;  // hosts whose checks this host's rings follow, itself included
    std::uint64_t heartbeats = 0, write_failures = 0, rejected_rosters = 0, reads = 0;
    // Flow exceptions shared with the fleet (announce.share_exceptions); nothing exported when off.
    bool exception_sync = false;
    std::uint64_t flow_exceptions_published = 0;      // this host's, as last published
    std::uint64_t affinity_exceptions_published = 0;  // this host's clients of persistent VIPs, likewise
    std::uint64_t peer_affinities_written = 0;        // the peers', written into the affinity table
    std::uint64_t peer_flow_entries = 0;              // the peers', in the peer-flow table
    std::uint64_t peer_exceptions_unplaced = 0;  // the peers', naming a backend this host lacks (or past the table)
    std::uint64_t exception_versions_published = 0, exception_publish_failures = 0;
    std::uint64_t exception_versions_loaded = 0;
    std::uint64_t exception_fetch_failures = 0;        // a peer's version read from no server
    std::uint64_t exception_table_write_failures = 0;  // the peers' lists not written to this host's tables
};

struct MetricsSnapshot {
    stickylb_global_stats global{};
    std::vector<VipSample> vips;
    std::vector<BackendSample> backends;
    std::uint64_t flow_entries = 0, flow_capacity = 0;
    std::uint64_t affinity_entries = 0, affinity_capacity = 0;
    std::uint64_t reconciles = 0, reconcile_errors = 0;
    SessionSample session;
    FleetSample fleet;
    std::string version, commit;
};

// Every stickylb_* family (see metrics.cpp for the list), data-plane counters
// summed over CPUs as the snapshot carries them.
void write_metrics(MetricsWriter& writer, const MetricsSnapshot& snapshot);
// stickylb_packets_<name>_total for an outcome, stickylb_<name>_total otherwise.
std::string global_counter_metric(const GlobalCounter& counter);
std::string render_metrics(const MetricsSnapshot& snapshot);

}  // namespace stickylb::metrics

// SPDX-License-Identifier: Apache-2.0
#pragma once
// stickylbd's state and decisions: the running config, operator overrides, health,
// the desired state and its reconcile into the data plane, the membership view, and
// one handler per control-socket command. It drives the data plane through
// ServiceMaps and ClientTables, so a unit test builds it on in-memory maps, without
// root; Daemon wires it to the kernel, the sockets and the signals.
//
// Everything runs on the io_context's thread; table walks (flows, affinities: up to
// millions of entries) run on a background worker and answer back on that thread.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/background_worker.h"
#include "control/announce.h"
#include "control/config.h"
#include "control/control_server.h"
#include "control/fleet_health.h"
#include "control/health.h"
#include "control/metrics.h"
#include "control/reconciler.h"
#include "daemon/exception_sync.h"
#include "dataplane/maps.h"
#include "session/fleet_presence.h"
#include "session/session_coordinator.h"

namespace stickylb {

// What set a reconcile off: start and operator or config changes always save the
// state file when the data plane changed; the periodic refresh only when the view did.
enum class ReconcileCause { start, refresh, reload, health, admin };

// What announcing the VIPs (config announce section) needs of the host: the routes its
// BGP speaker learns and the data plane's self-test. Both must outlive the ControlPlane.
struct AnnounceHooks {
    AnnouncedRoutes& routes;
    DataPlaneSelfTest& self_test;
    // Called on every announce tick: the announce guard's proof that the loop deciding
    // the announcements still runs (empty: nobody watches).
    std::function<void()> alive = {};
};

class ControlPlane {
public:
    // The maps must outlive it. With memcached_servers it coordinates sessions
    // (views, snapshots) through them; nothing is written or probed before start().
    ControlPlane(boost::asio::io_context& io, std::string config_path, DaemonConfig config, ServiceMaps& maps,
                 ClientTables& tables, const EgressInterface& egress, Reconciler::MacResolver resolve_mac,
                 std::optional<AnnounceHooks> announce = std::nullopt);
    ~ControlPlane();
    ControlPlane(const ControlPlane&) = delete;
    ControlPlane& operator=(const ControlPlane&) = delete;

    // Reads the state file, adopts what the maps already hold, starts the health checks
    // and the first reconcile. tables_were_empty: a new or rebooted LB host, whose
    // clients the last affinity snapshot brings back (before the program is attached).
    void start(bool tables_were_empty);
    // Session coordination's timers and links, and the announcement's checks, once the
    // data plane forwards.
    void begin_service();
    // Periodic: the reconcile that picks up next-hop MACs, and the table sizes.
    void refresh();
    // Re-reads the config file: rejected whole when invalid (the running config stays),
    // restart-only keys kept at their running values. Returns whether it was applied.
    bool reload();
    // Stops the checks; a last affinity snapshot (bounded), then done() on the io_context.
    void stop(std::function<void()> done);

    // A control-socket request; reply is called once, on the io_context's thread.
    void handle(const std::string& object, const std::string& verb, const nlohmann::json& args,
                ControlServer::Reply reply);
    struct Command {
        std::string_view object, verb;
    };
    // Every command handle() answers (the CLI's grammar is checked against it).
    static std::vector<Command> commands();

    std::string metrics_text() const;
    const DaemonConfig& config() const { return config_; }

    // The health checker's callbacks (public so that tests can play a check's verdict).
    void on_health_change(const HealthChange& change);
    void on_probe(const std::string& key, const ProbeResult& result);
    // Decides and writes the announcement of every VIP now (also run by its timer).
    void announce();

private:
    struct BackendHealth {
        std::optional<ProbeResult> last;
        std::uint64_t transitions = 0;
        metrics::Histogram latency_seconds{metrics::Histogram::default_latency_bounds()};
    };
    struct RingWrites {
        std::uint64_t rewrites = 0, slots = 0;
        // Wall clock of the last rewrite, comparable across LB hosts: how far apart the
        // fleet's rings changed after one event.
        double applied_timestamp_seconds = 0;
    };
    using Handler = void (ControlPlane::*)(const nlohmann::json& args, ControlServer::Reply reply);
    struct HandlerEntry {
        Command command;
        Handler handler;
    };
    static const std::vector<HandlerEntry>& handler_table();

    // The commands, one each (the grammar's tree in cli/grammar.cpp).
    void show_version(const nlohmann::json& args, ControlServer::Reply reply);
    void show_session(const nlohmann::json& args, ControlServer::Reply reply);
    void show_vips(const nlohmann::json& args, ControlServer::Reply reply);
    void show_backends(const nlohmann::json& args, ControlServer::Reply reply);
    void drain_backend(const nlohmann::json& args, ControlServer::Reply reply);
    void enable_backend(const nlohmann::json& args, ControlServer::Reply reply);
    void set_backend(const nlohmann::json& args, ControlServer::Reply reply);
    void show_flows(const nlohmann::json& args, ControlServer::Reply reply);
    void flush_flows(const nlohmann::json& args, ControlServer::Reply reply);
    void show_affinities(const nlohmann::json& args, ControlServer::Reply reply);
    void flush_affinities(const nlohmann::json& args, ControlServer::Reply reply);
    void save_affinities(const nlohmann::json& args, ControlServer::Reply reply);
    void restore_affinities(const nlohmann::json& args, ControlServer::Reply reply);
    void show_stats(const nlohmann::json& args, ControlServer::Reply reply);
    void show_health(const nlohmann::json& args, ControlServer::Reply reply);
    void show_cluster(const nlohmann::json& args, ControlServer::Reply reply);

    // drain, enable, set: the override changed, reconciled and saved; the backend's row.
    nlohmann::json apply_override(const BackendId& id, const AdminOverride& override_of, std::string_view what);
    // drain force: drained, view written (bounded wait), then its clients re-picked.
    void force_drain(const BackendId& id, ControlServer::Reply reply);
    // flow|affinity show|flush, filtered by [vip] [backend] [client], on the worker.
    void table_command(const std::string& object, const std::string& verb, const nlohmann::json& args,
                       ControlServer::Reply reply);

    RuntimeConfig runtime_config() const;
    RingView current_rings() const;
    void reconcile(ReconcileCause cause, std::string_view detail = {});
    // Counts, off the io_context, the live affinity clients of backends that just went down.
    void count_moved_clients(const std::vector<DesiredBackend>& gone_down);
    // At most every 10 s, on the worker: a million-entry walk is most of a second.
    void count_table_entries();
    void update_health_targets();
    void schedule_announce();
    FleetStanding fleet_standing() const;
    // The VIP's announcement state and reason; null without an announce section.
    nlohmann::json announce_json(const std::string& vip) const;
    void on_fleet_change();
    // What the peers sharing this host's checks say changed: the rings follow.
    void on_fleet_checks_change();
    // The host that writes the membership views: the lowest id of this one and the
    // peers running its config; itself when alone (no memcached server answers) or
    // in no fleet; none while its standing is pending or differs.
    std::optional<std::string> membership_view_writer() const;
    // Drains and weights are the fleet's: this host's overrides by observation_key,
    // and what the fleet's roster says applied here.
    std::map<std::string, fleet::SharedOverride> shared_overrides() const;
    void on_fleet_overrides_change();
    void choose_membership_view_writer();
    // This host's own checks, written to the fleet roster.
    HealthVerdict own_verdict(const BackendId& id) const;
    void publish_own_health();
    // The votes of the hosts sharing checks, this one included; none without peers.
    std::optional<HealthVotes> fleet_votes(const BackendId& id) const;
    // What the rings follow: the fleet's rule over fleet_votes, or this host's own checks.
    HealthVerdict verdict(const BackendId& id) const;
    // SHA-256 of what the VIP's ring in the data plane forwards to (ring_fingerprint.h).
    std::string vip_ring_fingerprint(const DesiredVip& vip) const;
    RingWrites ring_writes(const std::string& vip) const;
    nlohmann::json backends_json(const nlohmann::json& args) const;
    nlohmann::json backend_counters(const DesiredVip& vip) const;
    const VipConfig& find_vip(const std::string& name) const;
    BackendId find_backend(const nlohmann::json& args) const;
    void load_state();
    void save_state() const;

    boost::asio::io_context& io_;
    std::string config_path_;
    DaemonConfig config_;
    ServiceMaps& maps_;
    ClientTables& tables_;
    BackgroundWorker worker_{"slb-tables"};  // table walks off the io_context
    IndexRegistry indexes_;
    Reconciler reconciler_;
    HealthChecker checker_;
    std::unique_ptr<SessionCoordinator> session_;  // null without memcached_servers
    std::optional<Announcer> announcer_;           // set with config announce and hooks
    std::function<void()> announce_alive_;
    // Announcing with memcached_servers: the fleet's hosts compare config fingerprints.
    std::unique_ptr<FleetPresence> fleet_;
    std::unique_ptr<ExceptionSync> exceptions_;  // in a fleet with announce.share_exceptions
    boost::asio::steady_timer announce_timer_;
    AdminOverrides overrides_;
    DesiredState desired_;
    std::map<std::string, BackendHealth> health_detail_;  // by to_string(BackendId)
    std::uint64_t reconciles_ = 0;
    std::uint64_t reconcile_errors_ = 0;
    std::map<std::string, RingWrites> ring_writes_;  // VIP name -> reconciles that rewrote its ring
    std::uint64_t flow_entries_ = 0, affinity_entries_ = 0;
    std::chrono::steady_clock::time_point tables_counted_at_{};
    // Marked down by this host's checks and not yet down in the rings (the fleet may
    // still count them up): their first failed check.
    std::map<BackendId, std::chrono::steady_clock::time_point> failovers_;
    std::map<BackendId, std::uint64_t> clients_moved_;
    std::map<BackendId, double> last_failover_seconds_;  // wall clock
};

}  // namespace stickylb

// SPDX-License-Identifier: Apache-2.0
#pragma once
// stickylbd: keeps the data plane in line with the config file, operator
// overrides and health checks. One io_context on one thread; every component
// posts to it, so daemon state needs no locks. Stopping cancels timers, checks
// and servers; the data plane keeps forwarding (its maps and link are pinned).
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <boost/asio.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "base/metrics_server.h"
#include "dataplane/dataplane.h"
#include "dataplane/neighbours.h"
#include "dataplane/pinned_maps.h"
#include "base/background_worker.h"
#include "control/config.h"
#include "control/control_server.h"
#include "control/health.h"
#include "control/metrics.h"
#include "control/reconciler.h"
#include "session/session_coordinator.h"

namespace stickylb {

class Daemon {
public:
    Daemon(boost::asio::io_context& io, std::string config_path);
    ~Daemon();
    void start();

private:
    struct BackendHealth {
        std::optional<ProbeResult> last;
        std::uint64_t transitions = 0;
        metrics::Histogram latency_seconds{metrics::Histogram::default_latency_bounds()};
    };

    void reload();
    // What the XDP program reads from its runtime config map, from the running config.
    RuntimeConfig runtime_config() const;
    void reconcile(const std::string& why);
    // Counts, off the io_context, the live affinity clients of backends that just went down.
    void count_moved_clients(const std::vector<DesiredBackend>& gone_down);
    // drain force: drained, view written (bounded wait), then its clients re-picked.
    void force_drain(const BackendId& id, ControlServer::Reply reply);
    void stop(int signal);
    void schedule_refresh();
    void watch_signals();
    void update_health_targets();
    void on_health_change(const HealthChange& change);
    void on_probe(const std::string& key, const ProbeResult& result);
    HealthVerdict verdict(const BackendId& id) const;
    void handle_async(const std::string& object, const std::string& verb, const nlohmann::json& args,
                      ControlServer::Reply reply);
    nlohmann::json handle(const std::string& object, const std::string& verb, const nlohmann::json& args);
    nlohmann::json backends_json(const nlohmann::json& args) const;
    nlohmann::json table_command(const std::string& object, const std::string& verb, const nlohmann::json& args);
    // Names of what flow and affinity entries refer to by index.
    nlohmann::json backend_counters(const DesiredVip& vip) const;
    std::string vip_name(std::uint32_t vip_index) const;
    std::string backend_name(std::uint32_t backend_index) const;
    const VipConfig& find_vip(const std::string& name) const;
    BackendId find_backend(const nlohmann::json& args) const;
    void load_state();
    void save_state() const;
    std::string metrics_text() const;
    std::optional<MacAddress> resolve_mac(const DesiredBackend& backend, ForwardingMode mode);

    boost::asio::io_context& io_;
    std::string config_path_;
    DaemonConfig config_;
    std::optional<DataPlane> plane_;
    std::optional<Reconciler> reconciler_;
    std::optional<IndexRegistry> indexes_;
    AdminOverrides overrides_;
    DesiredState desired_;
    std::map<std::string, BackendHealth> health_detail_;  // by to_string(BackendId)
    std::unique_ptr<NeighbourTable> neighbours_;
    std::uint32_t ifindex_ = 0;
    std::unique_ptr<HealthChecker> checker_;
    std::unique_ptr<ControlServer> control_;
    std::unique_ptr<metrics::MetricsServer> metrics_;
    std::optional<PinnedMaps> tables_;  // flow and affinity tables, read for the CLI
    boost::asio::signal_set signals_;
    boost::asio::steady_timer refresh_timer_;
    mutable std::uint64_t flow_entries_ = 0, affinity_entries_ = 0;
    mutable std::chrono::steady_clock::time_point tables_counted_at_{};
    std::uint64_t reconciles_ = 0;
    struct RingWrites {
        std::uint64_t rewrites = 0, slots = 0;
    };
    std::map<std::string, RingWrites> ring_writes_;  // VIP name -> reconciles that rewrote its ring
    std::uint64_t reconcile_errors_ = 0;
    std::unique_ptr<BackgroundWorker> worker_;     // table walks off the io_context
    std::unique_ptr<SessionCoordinator> session_;  // null without memcached_servers
    // Marked down by their checks since the last reconcile: their first failed check.
    std::map<BackendId, std::chrono::steady_clock::time_point> failovers_;
    std::map<BackendId, std::uint64_t> clients_moved_;
    std::map<BackendId, double> last_failover_seconds_;  // wall clock
};

// --check-config: 0 if valid, else the problems on stderr and 1.
int check_config(const std::string& path);
// --detach: removes the XDP program, the tc filter and the pinned maps the config names.
int detach_data_plane(const std::string& config_path);

}  // namespace stickylb

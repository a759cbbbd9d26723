// SPDX-License-Identifier: Apache-2.0
#include "daemon/daemon.h"

#include <net/if.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "base/errors.h"
#include "session/signed_value.h"

namespace stickylb {
namespace {

constexpr auto kRefreshPeriod = std::chrono::seconds(1);  // next-hop MACs, periodic reconcile

LoadOptions load_options_for(const DaemonConfig& config) {
    LoadOptions options;
    options.pin_dir = config.pin_dir;
    options.ring_size = config.ring_size;
    options.max_vips = config.max_vips;
    options.max_backends = config.max_backends;
    options.flow_entries = config.flow_table_size;
    options.affinity_entries = config.affinity_table_size;
    return options;
}

}  // namespace

Daemon::Daemon(boost::asio::io_context& io, std::string config_path)
    : io_(io), config_path_(std::move(config_path)), signals_(io), refresh_timer_(io) {}

void Daemon::start() {
    DaemonConfig config = load_config(config_path_);
    ifindex_ = if_nametoindex(config.interface.c_str());
    if (ifindex_ == 0)
        throw std::runtime_error("interface '" + config.interface + "' does not exist");
    if (config.announce.enabled) {
        // Before any thread starts: the guard is a fork of this process.
        announce_lease_.emplace(AnnounceLease::acquire(config.announce));
        announce_lease_->start_guard();
    }

    // No affinity table pinned: a new or rebooted LB host, whose clients the
    // last affinity snapshot brings back before XDP forwards anything.
    const bool tables_were_empty = !std::filesystem::exists(config.pin_dir + "/affinity");
    plane_.emplace(DataPlane::load(load_options_for(config)));
    tables_.emplace(plane_->client_tables());
    neighbours_.emplace();
    const EgressInterface egress{MacAddress::of_interface(config.interface), ifindex_};
    std::optional<AnnounceHooks> announce;
    if (config.announce.enabled) {
        announced_routes_.emplace(config.announce.routing_table);
        self_test_.emplace(*plane_, ifindex_, egress.mac);
        announce.emplace(AnnounceHooks{*announced_routes_, *self_test_, [this] { announce_lease_->alive(); }});
    }
    control_plane_ = std::make_unique<ControlPlane>(
        io_, config_path_, std::move(config), *plane_, *tables_, egress,
        [this](const DesiredBackend& backend, ForwardingMode mode) { return resolve_mac(backend, mode); }, announce);
    control_plane_->start(tables_were_empty);

    const DaemonConfig& running = control_plane_->config();
    const AttachResult attached = plane_->attach(running.interface, running.attach_mode);
    spdlog::info("XDP on {}: {} mode, {}", running.interface, to_string(attached.mode),
                 attached.replaced ? "program replaced in place" : "attached");

    ControlOptions control_options;
    if (!running.control_group.empty())
        control_options.group = control_group_id(running.control_group);
    control_ = std::make_unique<ControlServer>(
        io_, running.control_socket,
        [this](const std::string& object, const std::string& verb, const nlohmann::json& args,
               ControlServer::Reply reply) { control_plane_->handle(object, verb, args, std::move(reply)); },
        control_options);
    metrics_ = std::make_unique<metrics::MetricsServer>(io_, running.metrics_listen,
                                                        [this] { return control_plane_->metrics_text(); });
    spdlog::info("control socket {}, metrics on http://{}/metrics", running.control_socket, running.metrics_listen);
    control_plane_->begin_service();
    watch_signals();
    schedule_refresh();
}

void Daemon::watch_signals() {
    signals_.add(SIGHUP);
    signals_.add(SIGTERM);
    signals_.add(SIGINT);
    signals_.async_wait([this](const boost::system::error_code& error, int signal) {
        if (error)
            return;
        if (signal == SIGHUP) {
            control_plane_->reload();
            signals_.clear();
            watch_signals();
            return;
        }
        stop(signal);
    });
}

void Daemon::stop(int signal) {
    spdlog::info("signal {}: stopping; the data plane keeps forwarding", signal);
    if (announce_lease_)
        announce_lease_->end_ticks();
    refresh_timer_.cancel();
    if (control_)
        control_->stop();
    if (metrics_)
        metrics_->stop();
    signals_.clear();
    // A last affinity snapshot (bounded); the io_context runs until it is done.
    control_plane_->stop([] {});
}

void Daemon::schedule_refresh() {
    refresh_timer_.expires_after(kRefreshPeriod);
    refresh_timer_.async_wait([this](const boost::system::error_code& error) {
        if (error)
            return;
        control_plane_->refresh();
        schedule_refresh();
    });
}

std::optional<MacAddress> Daemon::resolve_mac(const DesiredBackend& backend, ForwardingMode mode) {
    try {
        IpAddress next_hop = backend.next_hop.value_or(backend.address);
        std::uint32_t ifindex = ifindex_;
        if (mode == ForwardingMode::ipip && !backend.next_hop)
            std::tie(next_hop, ifindex) = neighbours_->next_hop(backend.address);
        if (auto mac = neighbours_->lookup(ifindex, next_hop))
            return mac;
        neighbours_->ensure_resolving(ifindex, next_hop);
    } catch (const std::exception& error) {
        spdlog::warn("next hop of backend {}: {}", to_string(backend.id), error.what());
    }
    return std::nullopt;  // the tc slow path forwards meanwhile
}

int check_config(const std::string& path) {
    try {
        const DaemonConfig config = load_config(path);
        if (config.session_enabled() && !config.session.key_file.empty())
            session::SigningKey::load(config.session.key_file);  // throws what is wrong with it
        std::size_t backends = 0;
        for (const auto& vip : config.vips)
            backends += vip.backends.size();
        std::printf("%s: valid (%zu VIPs, %zu backends)\n", path.c_str(), config.vips.size(), backends);
        return 0;
    } catch (const ConfigError& error) {
        for (const std::string& problem : error.problems())
            std::fprintf(stderr, "Error: %s\n", problem.c_str());
    } catch (const std::exception& error) {
        std::fprintf(stderr, "Error: %s\n", error.what());
    }
    return 1;
}

int detach_data_plane(const std::string& config_path) {
    const DaemonConfig config = load_config(config_path);
    DataPlane plane = DataPlane::load(load_options_for(config));
    plane.detach(config.interface);
    plane.unpin_maps();
    std::filesystem::remove(config.state_file);
    std::printf("detached from %s; maps unpinned from %s\n", config.interface.c_str(), config.pin_dir.c_str());
    return 0;
}

}  // namespace stickylb

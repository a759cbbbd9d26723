// SPDX-License-Identifier: Apache-2.0
#pragma once
// stickylbd's wiring: the XDP program loaded and attached, the pinned tables, the
// neighbour table, the control socket, the metrics listener, signals and the refresh
// timer, around the ControlPlane that decides. One io_context on one thread; every
// component posts to it, so no state needs locks. Stopping cancels timers, checks and
// servers; the data plane keeps forwarding (its maps and link are pinned).
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <boost/asio.hpp>

#include <memory>
#include <optional>
#include <string>

#include "base/metrics_server.h"
#include "control/control_server.h"
#include "daemon/announce_guard.h"
#include "daemon/control_plane.h"
#include "dataplane/dataplane.h"
#include "dataplane/kernel_routes.h"
#include "dataplane/neighbours.h"
#include "dataplane/pinned_maps.h"
#include "dataplane/self_test.h"

namespace stickylb {

class Daemon {
public:
    Daemon(boost::asio::io_context& io, std::string config_path);
    void start();

private:
    void stop(int signal);
    void schedule_refresh();
    void watch_signals();
    std::optional<MacAddress> resolve_mac(const DesiredBackend& backend, ForwardingMode mode);

    boost::asio::io_context& io_;
    std::string config_path_;
    std::uint32_t ifindex_ = 0;
    std::optional<DataPlane> plane_;
    std::optional<PinnedMaps> tables_;
    std::optional<NeighbourTable> neighbours_;
    std::optional<AnnounceLease> announce_lease_;  // config announce only
    std::optional<KernelRoutes> announced_routes_;
    std::optional<XdpSelfTest> self_test_;
    std::unique_ptr<ControlPlane> control_plane_;  // after what it drives: destroyed first
    std::unique_ptr<ControlServer> control_;
    std::unique_ptr<metrics::MetricsServer> metrics_;
    boost::asio::signal_set signals_;
    boost::asio::steady_timer refresh_timer_;
};

// --check-config: 0 if valid, else the problems on stderr and 1.
int check_config(const std::string& path);
// --detach: removes the XDP program, the tc filter and the pinned maps the config names.
int detach_data_plane(const std::string& config_path);

}  // namespace stickylb

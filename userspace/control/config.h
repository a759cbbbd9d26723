// SPDX-License-Identifier: Apache-2.0
#pragma once
// stickylbd's configuration file (YAML): parsed, validated, and every problem
// reported at once with its file, line and path. The commented reference of
// every key is userspace/daemon/stickylbd.example.yaml.
#include <netinet/in.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "base/address.h"
#include "base/duration.h"
#include "base/host_port.h"
#include "control/health_check_kind.h"
#include "dataplane/maps.h"

namespace stickylb {

struct HealthCheckConfig {
    using Kind = HealthCheckKind;
    Kind kind = Kind::tcp;
    std::chrono::milliseconds interval{1000};  // sub-second allowed, e.g. "200ms"
    std::chrono::milliseconds timeout{500};    // must be <= interval
    unsigned rise = 2, fall = 3;               // HAProxy semantics, >= 1
    std::uint16_t port = 0;                    // 0: the VIP's port
    std::string http_path = "/";               // http only
    unsigned expected_status = 200;            // http only
    std::string http_host;                     // Host header; empty: backend address
    bool operator==(const HealthCheckConfig&) const = default;
};

struct BackendConfig {
    std::string name;  // unique within the VIP; default: the address as text
    IpAddress address;
    std::uint32_t weight = 1;  // 0: keeps its clients, gets no new ones
    std::optional<IpAddress> next_hop;
    bool operator==(const BackendConfig&) const = default;
};

struct PersistenceConfig {
    bool enabled = false;
    std::uint32_t timeout_s = 300;
    std::uint8_t client_prefix_v4 = 32;
    std::uint8_t client_prefix_v6 = 128;
    bool operator==(const PersistenceConfig&) const = default;
};

struct VipConfig {
    std::string name;  // unique; default "<proto>-<address>-<port>", e.g. "tcp-10.0.0.1-80"
    // The membership view (session coordination) this VIP's backends belong to.
    // VIPs naming the same cluster share one view, their backends merged by name.
    // Default: the VIP's name.
    std::string cluster;
    IpAddress address;
    std::uint16_t port = 0;
    std::uint8_t protocol = IPPROTO_TCP;                 // "tcp" | "udp"
    ForwardingMode forwarding = ForwardingMode::l2_dsr;  // "l2" | "ipip"
    bool hash_source = false;
    PersistenceConfig persistence;
    HealthCheckConfig health;
    std::vector<BackendConfig> backends;  // names unique within the VIP
    VipKey key() const { return VipKey{address, port, protocol}; }
    bool operator==(const VipConfig&) const = default;
};

// Session coordination with memcached; in effect only when memcached_servers is
// not empty (see stickylbd.example.yaml for what each setting does).
struct SessionConfig {
    std::chrono::milliseconds view_refresh_interval{1000};     // > 0
    std::chrono::milliseconds view_ttl{5000};                  // whole seconds, >= 2 refresh intervals
    std::chrono::milliseconds affinity_save_interval{30'000};  // 0: never saved (nor at shutdown)
    std::chrono::milliseconds memcached_connect_timeout{200};
    std::chrono::milliseconds memcached_timeout{500};  // each read or write
    // The key that signs views and snapshots (session/signed_value.h); "": unsigned.
    std::string key_file;
    bool operator==(const SessionConfig&) const = default;
};

// Announcing the VIPs to the host's BGP speaker (docs/scale-out.md): stickylbd keeps
// one route per announceable VIP in a kernel routing table of its own, which the
// speaker learns and advertises. Off unless the config has an `announce` section.
struct AnnounceConfig {
    bool enabled = false;
    std::uint32_t routing_table = 89;                       // 1..0xFFFFFFFF, not main (254) or local (255)
    std::chrono::milliseconds check_interval{200};          // data-plane self-test and announce decision
    std::chrono::milliseconds hold{2000};                   // routes outlive a stopped stickylbd this long
    std::string lock_file = "/run/stickylb/announce.lock";  // held by the running stickylbd
    // With memcached_servers: the fleet whose hosts compare config fingerprints before
    // announcing, this host's name in it ("": the host name), and how often it says so.
    std::string fleet = "default";
    std::string host_id;
    std::chrono::milliseconds peer_heartbeat{1000};
    // How often, between heartbeats, it reads its peers' health checks from the roster.
    std::chrono::milliseconds peer_poll{100};
    // Publish this host's flow exceptions and load its peers' (daemon/exception_sync.h).
    bool share_exceptions = true;
    bool operator==(const AnnounceConfig&) const = default;
};
// host_id, or the host name when it is empty.
std::string host_id(const AnnounceConfig& config);

struct DaemonConfig {
    std::string interface;                           // required
    AttachMode attach_mode = AttachMode::automatic;  // "auto" | "native" | "generic"
    std::string pin_dir = "/sys/fs/bpf/stickylb";
    std::string state_file = "/var/lib/stickylb/state.json";
    std::string control_socket = "/run/stickylb/control.sock";
    std::string control_group;                      // "": only root and the daemon's uid may use the socket
    std::string metrics_listen = "127.0.0.1:9478";  // host:port, [v6]:port
    std::uint32_t hash_seed = 0;
    std::uint32_t ring_size = 65537;  // prime
    // Map sizes, fixed while the maps are pinned (a change needs `stickylbd --detach`).
    std::uint32_t max_vips = STICKYLB_DEFAULT_MAX_VIPS;
    std::uint32_t max_backends = STICKYLB_DEFAULT_MAX_BACKENDS;  // (VIP, backend) pairs + 1: index 0 is "none"
    std::uint32_t flow_table_size = STICKYLB_DEFAULT_FLOW_ENTRIES;
    std::uint32_t affinity_table_size = STICKYLB_DEFAULT_AFFINITY_ENTRIES;
    // New flows each CPU records per second; past it they are forwarded by the ring
    // without a flow entry. 0: no limit.
    std::uint32_t new_flow_limit_per_cpu = STICKYLB_DEFAULT_NEW_FLOW_LIMIT;
    std::vector<std::string> memcached_servers;  // "host:port"; empty: no session coordination
    SessionConfig session;
    AnnounceConfig announce;
    std::vector<VipConfig> vips;
    bool session_enabled() const { return !memcached_servers.empty(); }
    bool operator==(const DaemonConfig&) const = default;
};

// Every problem found, not just the first; each formatted "FILE:LINE: PATH: MESSAGE",
// e.g. "lb.yaml:14: vips[1].backends[0].address: '10.0.0.300' is not an IP address".
// Problems are in line order. what() is all of them, one per line.
class ConfigError : public std::runtime_error {
public:
    explicit ConfigError(std::vector<std::string> problems);
    const std::vector<std::string>& problems() const { return problems_; }

private:
    std::vector<std::string> problems_;
};

// Throws ConfigError. source_name is what problems start with (usually the path).
DaemonConfig parse_config(std::string_view yaml_text, const std::string& source_name);
// Why the config's VIPs and backends do not fit its map sizes (max_vips, max_backends);
// empty if they fit. parse_config reports these too; a reload checks them against the
// running sizes, which only a restart changes.
std::vector<std::string> capacity_problems(const DaemonConfig& config);
// Reads the file (a ConfigError "PATH: REASON" if it can't: missing, not a
// regular file, over 1 MiB), then parse_config.
DaemonConfig load_config(const std::string& path);

std::string to_string(HealthCheckConfig::Kind kind);  // "tcp" | "http"

}  // namespace stickylb

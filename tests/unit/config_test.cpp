// SPDX-License-Identifier: Apache-2.0
// stickylbd's YAML configuration: defaults, the shipped example, and every kind of
// mistake reported with its file, line and path.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "control/config.h"

namespace stickylb {
namespace {

using namespace std::chrono_literals;

const std::string kMinimal = R"(interface: eth0
vips:
  - address: 192.0.2.10
    port: 80
    backends:
      - address: 10.0.1.11
)";

// The problems parse_config reports (none if it accepts the text).
std::vector<std::string> problems_of(const std::string& yaml) {
    try {
        parse_config(yaml, "lb.yaml");
    } catch (const ConfigError& error) {
        return error.problems();
    }
    return {};
}

std::string joined(const std::vector<std::string>& problems) {
    std::string text;
    for (const auto& problem : problems)
        text += "\n  " + problem;
    return text;
}

// Exactly one problem, and it is `expected`.
void expect_problem(const std::string& yaml, const std::string& expected) {
    const auto problems = problems_of(yaml);
    ASSERT_EQ(problems.size(), 1u) << "expected only: " << expected << "\ngot:" << joined(problems);
    EXPECT_EQ(problems[0], expected);
}

// kMinimal with `extra` appended under the first VIP (indented 4 spaces).
std::string minimal_vip_with(const std::string& extra) { return kMinimal + extra; }

TEST(Config, ShippedExampleParsesWithTheValuesItDocuments) {
    const std::string path = std::string(STICKYLB_SOURCE_DIR) + "/userspace/daemon/stickylbd.example.yaml";
    const DaemonConfig config = load_config(path);
    EXPECT_EQ(config.interface, "eth0");
    EXPECT_EQ(config.attach_mode, AttachMode::automatic);
    EXPECT_EQ(config.pin_dir, "/sys/fs/bpf/stickylb");
    EXPECT_EQ(config.state_file, "/var/lib/stickylb/state.json");
    EXPECT_EQ(config.control_socket, "/run/stickylb/control.sock");
    EXPECT_EQ(config.metrics_listen, "127.0.0.1:9478");
    EXPECT_EQ(config.hash_seed, 0u);
    EXPECT_EQ(config.ring_size, 65537u);
    EXPECT_EQ(config.max_vips, 64u);
    EXPECT_EQ(config.max_backends, 4096u);
    EXPECT_EQ(config.flow_table_size, 1048576u);
    EXPECT_EQ(config.affinity_table_size, 1048576u);
    EXPECT_EQ(config.new_flow_limit_per_cpu, 125000u);
    EXPECT_EQ(config.new_flow_limit_per_cpu, DaemonConfig{}.new_flow_limit_per_cpu);  // spelled-out default
    EXPECT_EQ(config.memcached_servers, (std::vector<std::string>{"10.0.1.20:11211", "[fd00:1::20]:11211"}));
    EXPECT_TRUE(config.session_enabled());
    EXPECT_EQ(config.session, SessionConfig{});  // the example spells out the defaults
    EXPECT_EQ(config.session.view_refresh_interval, 1s);
    EXPECT_EQ(config.session.view_ttl, 5s);
    EXPECT_EQ(config.session.affinity_save_interval, 30s);
    EXPECT_EQ(config.session.memcached_connect_timeout, 200ms);
    EXPECT_EQ(config.session.memcached_timeout, 500ms);
    EXPECT_FALSE(config.announce.enabled) << "the example documents announce commented out";
    ASSERT_EQ(config.vips.size(), 2u);

    const VipConfig& web = config.vips[0];
    EXPECT_EQ(web.name, "web-http");
    EXPECT_EQ(web.cluster, "web");
    EXPECT_EQ(config.vips[1].cluster, "udp-2001:db8::53-53");  // default: the VIP's name
    EXPECT_EQ(web.address, IpAddress::parse("192.0.2.10"));
    EXPECT_EQ(web.port, 80);
    EXPECT_EQ(web.protocol, IPPROTO_TCP);
    EXPECT_EQ(web.forwarding, ForwardingMode::l2_dsr);
    EXPECT_FALSE(web.hash_source);
    EXPECT_TRUE(web.persistence.enabled);
    EXPECT_EQ(web.persistence.timeout_s, 1800u);
    EXPECT_EQ(web.persistence.client_prefix_v4, 24);
    EXPECT_EQ(web.persistence.client_prefix_v6, 64);
    EXPECT_EQ(web.health.kind, HealthCheckConfig::Kind::http);
    EXPECT_EQ(web.health.interval, 500ms);
    EXPECT_EQ(web.health.timeout, 300ms);
    EXPECT_EQ(web.health.rise, 2u);
    EXPECT_EQ(web.health.fall, 3u);
    EXPECT_EQ(web.health.port, 8080);
    EXPECT_EQ(web.health.http_path, "/healthz");
    EXPECT_EQ(web.health.expected_status, 200u);
    EXPECT_EQ(web.health.http_host, "www.example.com");
    ASSERT_EQ(web.backends.size(), 3u);
    EXPECT_EQ(web.backends[0].name, "web1");
    EXPECT_EQ(web.backends[0].address, IpAddress::parse("10.0.1.11"));
    EXPECT_EQ(web.backends[0].weight, 2u);
    EXPECT_EQ(web.backends[0].next_hop, IpAddress::parse("10.0.1.1"));
    EXPECT_EQ(web.backends[1].name, "web2");
    EXPECT_EQ(web.backends[1].weight, 1u);
    EXPECT_FALSE(web.backends[1].next_hop);
    EXPECT_EQ(web.backends[2].name, "10.0.1.13");
    EXPECT_EQ(web.backends[2].weight, 0u);

    const VipConfig& dns = config.vips[1];
    EXPECT_EQ(dns.name, "udp-2001:db8::53-53");
    EXPECT_EQ(dns.protocol, IPPROTO_UDP);
    EXPECT_EQ(dns.forwarding, ForwardingMode::ipip);
    EXPECT_EQ(dns.persistence, PersistenceConfig{});
    EXPECT_EQ(dns.health.port, 53);
    EXPECT_EQ(dns.health.kind, HealthCheckConfig::Kind::tcp);
    ASSERT_EQ(dns.backends.size(), 2u);
    EXPECT_EQ(dns.backends[0].name, "2001:db8:1::53");
    EXPECT_TRUE(dns.backends[1].address.is_v4());
}

TEST(Config, MinimalConfigGetsTheDefaults) {
    const DaemonConfig config = parse_config(kMinimal, "lb.yaml");
    const DaemonConfig defaults;
    EXPECT_EQ(config.interface, "eth0");
    EXPECT_EQ(config.attach_mode, defaults.attach_mode);
    EXPECT_EQ(config.pin_dir, defaults.pin_dir);
    EXPECT_EQ(config.state_file, defaults.state_file);
    EXPECT_EQ(config.control_socket, defaults.control_socket);
    EXPECT_EQ(config.metrics_listen, defaults.metrics_listen);
    EXPECT_EQ(config.hash_seed, 0u);
    EXPECT_EQ(config.ring_size, 65537u);
    EXPECT_TRUE(config.memcached_servers.empty());
    EXPECT_FALSE(config.session_enabled());
    EXPECT_EQ(config.session, SessionConfig{});
    ASSERT_EQ(config.vips.size(), 1u);
    const VipConfig& vip = config.vips[0];
    EXPECT_EQ(vip.name, "tcp-192.0.2.10-80");
    EXPECT_EQ(vip.cluster, "tcp-192.0.2.10-80");
    EXPECT_EQ(vip.protocol, IPPROTO_TCP);
    EXPECT_EQ(vip.forwarding, ForwardingMode::l2_dsr);
    EXPECT_FALSE(vip.hash_source);
    EXPECT_EQ(vip.persistence, PersistenceConfig{});
    EXPECT_EQ(vip.health, HealthCheckConfig{});
    EXPECT_EQ(vip.health.interval, 1000ms);
    EXPECT_EQ(vip.health.timeout, 500ms);
    ASSERT_EQ(vip.backends.size(), 1u);
    EXPECT_EQ(vip.backends[0].name, "10.0.1.11");
    EXPECT_EQ(vip.backends[0].weight, 1u);
    EXPECT_FALSE(vip.backends[0].next_hop);
}

TEST(Config, BadBackendAddressNamesFileLinePathAndText) {
    expect_problem(R"(interface: eth0
vips:
  - address: 192.0.2.10
    port: 80
    backends:
      - address: 10.0.1.11
  - address: 192.0.2.11
    port: 80
    backends:
      - address: 10.0.0.300
)",
                   "lb.yaml:10: vips[1].backends[0].address: '10.0.0.300' is not an IP address");
}

TEST(Config, NewFlowLimitIsACountPerCpuAndZeroTurnsItOff) {
    EXPECT_EQ(parse_config(minimal_vip_with("new_flow_limit_per_cpu: 0\n"), "lb.yaml").new_flow_limit_per_cpu, 0u);
    EXPECT_EQ(parse_config(minimal_vip_with("new_flow_limit_per_cpu: 5000\n"), "lb.yaml").new_flow_limit_per_cpu,
              5000u);
    const auto problems = problems_of(minimal_vip_with("new_flow_limit_per_cpu: -1\n"));
    ASSERT_EQ(problems.size(), 1u) << joined(problems);
    EXPECT_NE(problems[0].find("new_flow_limit_per_cpu: must not be negative, got -1"), std::string::npos)
        << problems[0];
}

TEST(Config, MapSizesAreSetAndBoundedByWhatTheDataPlaneCanHold) {
    const DaemonConfig sized = parse_config(kMinimal + R"(max_vips: 200
max_backends: 20000
flow_table_size: 4194304
affinity_table_size: 2048
)",
                                            "lb.yaml");
    EXPECT_EQ(sized.max_vips, 200u);
    EXPECT_EQ(sized.max_backends, 20000u);
    EXPECT_EQ(sized.flow_table_size, 4194304u);
    EXPECT_EQ(sized.affinity_table_size, 2048u);

    expect_problem(kMinimal + "max_vips: 513\n", "lb.yaml:7: max_vips: must be between 1 and 512, got 513");
    expect_problem(kMinimal + "flow_table_size: 100\n",
                   "lb.yaml:7: flow_table_size: must be between 1024 and 268435456, got 100");
    expect_problem(kMinimal + "ring_size: 1048573\nmax_vips: 512\n",
                   "lb.yaml:8: max_vips: max_vips x ring_size = 536869376 ring slots, more than the 268435456 "
                   "(1 GiB) the rings map may hold");
}

TEST(Config, MoreVipsOrBackendsThanTheMapsHoldAreRefused) {
    std::string yaml = "interface: eth0\nmax_vips: 2\nmax_backends: 4\nvips:\n";
    for (const char* address : {"192.0.2.10", "192.0.2.11", "192.0.2.12"})
        yaml += std::string("  - address: ") + address + "\n    port: 80\n    backends:\n      - address: 10.0.1.11\n";
    const auto problems = problems_of(yaml);
    ASSERT_EQ(problems.size(), 1u) << joined(problems);
    EXPECT_EQ(problems[0], "lb.yaml:4: vips: 3 VIPs do not fit max_vips 2");

    std::string crowded = "interface: eth0\nmax_backends: 4\n" + kMinimal.substr(kMinimal.find("vips:"));
    for (const char* address : {"10.0.1.12", "10.0.1.13", "10.0.1.14"})
        crowded += std::string("      - address: ") + address + "\n";
    expect_problem(crowded,
                   "lb.yaml:3: vips: 4 backends (counted per VIP) do not fit max_backends 4 (index 0 is "
                   "reserved)");
}

TEST(Config, EveryProblemIsReportedInLineOrder) {
    const auto problems = problems_of(R"(interface: eth0
ring_size: 65536
vips:
  - address: 192.0.2.300
    port: 0
    protocol: sctp
    backends:
      - address: 10.0.1.11
        weight: -1
      - address: nope
)");
    ASSERT_EQ(problems.size(), 6u) << joined(problems);
    EXPECT_EQ(problems[0],
              "lb.yaml:2: ring_size: must be a prime number (Maglev), got 65536 (e.g. 65537, 131071, 262139)");
    EXPECT_EQ(problems[1], "lb.yaml:4: vips[0].address: '192.0.2.300' is not an IP address");
    EXPECT_EQ(problems[2], "lb.yaml:5: vips[0].port: must be between 1 and 65535, got 0");
    EXPECT_EQ(problems[3], "lb.yaml:6: vips[0].protocol: expected one of 'tcp', 'udp', got 'sctp'");
    EXPECT_EQ(problems[4], "lb.yaml:9: vips[0].backends[0].weight: must not be negative, got -1");
    EXPECT_EQ(problems[5], "lb.yaml:10: vips[0].backends[1].address: 'nope' is not an IP address");
}

TEST(Config, AnnounceSectionTurnsAnnouncingOnWithItsDefaultsAndBounds) {
    EXPECT_FALSE(parse_config(kMinimal, "lb.yaml").announce.enabled);
    const DaemonConfig defaults = parse_config(kMinimal + "announce: {}\n", "lb.yaml");
    EXPECT_TRUE(defaults.announce.enabled);
    EXPECT_EQ(defaults.announce.routing_table, 89u);
    EXPECT_EQ(defaults.announce.check_interval, 200ms);
    EXPECT_EQ(defaults.announce.hold, 2s);
    EXPECT_EQ(defaults.announce.lock_file, "/run/stickylb/announce.lock");

    const DaemonConfig set = parse_config(
        kMinimal + "announce: {routing_table: 4242, check_interval: 50ms, hold: 0s, lock_file: /tmp/a.lock}\n",
        "lb.yaml");
    EXPECT_EQ(set.announce.routing_table, 4242u);
    EXPECT_EQ(set.announce.check_interval, 50ms);
    EXPECT_EQ(set.announce.hold, 0ms);
    EXPECT_EQ(set.announce.lock_file, "/tmp/a.lock");

    expect_problem(kMinimal + "announce: {routing_table: 254}\n",
                   "lb.yaml:7: announce.routing_table: table 254 is one of the kernel's own (default, main, "
                   "local): use a table of its own");
    expect_problem(kMinimal + "announce: {check_interval: 5ms}\n",
                   "lb.yaml:7: announce.check_interval: must be between 10ms and 10000ms, got 5ms");
    expect_problem(kMinimal + "announce: {hold: 700s}\n",
                   "lb.yaml:7: announce.hold: must be between 0ms and 600000ms, got 700000ms");
    expect_problem(kMinimal + "announce: {lock_file: run/a.lock}\n",
                   "lb.yaml:7: announce.lock_file: 'run/a.lock' is not an absolute path");
    expect_problem(kMinimal + "announce: {table: 90}\n", "lb.yaml:7: announce.table: unknown key 'table'");
}

TEST(Config, FleetKeysNameAMemcachedKeyAndBoundTheHeartbeat) {
    const DaemonConfig defaults = parse_config(kMinimal + "announce: {}\n", "lb.yaml");
    EXPECT_EQ(defaults.announce.fleet, "default");
    EXPECT_EQ(defaults.announce.peer_heartbeat, 1s);
    EXPECT_EQ(defaults.announce.peer_poll, 100ms);
    EXPECT_TRUE(defaults.announce.share_exceptions);
    EXPECT_FALSE(host_id(defaults.announce).empty()) << "the host name stands in for host_id";
    const DaemonConfig set =
        parse_config(kMinimal +
                         "announce: {fleet: edge-1, host_id: lb7, peer_heartbeat: 250ms, peer_poll: 20ms, "
                         "share_exceptions: false}\n",
                     "lb.yaml");
    EXPECT_EQ(set.announce.fleet, "edge-1");
    EXPECT_EQ(host_id(set.announce), "lb7");
    EXPECT_EQ(set.announce.peer_heartbeat, 250ms);
    EXPECT_EQ(set.announce.peer_poll, 20ms);
    EXPECT_FALSE(set.announce.share_exceptions);
    expect_problem(kMinimal + "announce: {fleet: 'edge 1'}\n",
                   "lb.yaml:7: announce.fleet: 'edge 1' cannot be a fleet name: name has a space, control or "
                   "non-ASCII character");
    expect_problem(kMinimal + "announce: {host_id: ''}\n", "lb.yaml:7: announce.host_id: must not be empty");
    expect_problem(kMinimal + "announce: {peer_heartbeat: 50ms}\n",
                   "lb.yaml:7: announce.peer_heartbeat: must be between 100ms and 10000ms, got 50ms");
    expect_problem(kMinimal + "announce: {peer_poll: 5ms}\n",
                   "lb.yaml:7: announce.peer_poll: must be between 10ms and 10000ms, got 5ms");
}

TEST(Config, ConfigErrorWhatListsEveryProblem) {
    try {
        parse_config("interface: eth0\nvips: []\nfoo: 1\n", "lb.yaml");
        FAIL() << "accepted";
    } catch (const ConfigError& error) {
        EXPECT_STREQ(error.what(),
                     "lb.yaml:2: vips: at least one VIP is required\n"
                     "lb.yaml:3: foo: unknown key 'foo'");
    }
}

TEST(Config, UnknownKeyAtTopLevel) {
    expect_problem("interfac: eth0\n" + kMinimal.substr(kMinimal.find('\n') + 1) + "interface: eth1\n",
                   "lb.yaml:1: interfac: unknown key 'interfac' (did you mean 'interface'?)");
}

TEST(Config, UnknownKeysNestedAtEveryLevel) {
    const auto problems = problems_of(R"(interface: eth0
vips:
  - address: 192.0.2.10
    port: 80
    colour: blue
    persistence:
      enabled: true
      timeout: 60
    health:
      intervall: 1s
    backends:
      - address: 10.0.1.11
        wieght: 3
)");
    ASSERT_EQ(problems.size(), 4u) << joined(problems);
    EXPECT_EQ(problems[0], "lb.yaml:5: vips[0].colour: unknown key 'colour'");
    EXPECT_EQ(problems[1], "lb.yaml:8: vips[0].persistence.timeout: unknown key 'timeout' (did you mean 'timeout_s'?)");
    EXPECT_EQ(problems[2], "lb.yaml:10: vips[0].health.intervall: unknown key 'intervall' (did you mean 'interval'?)");
    EXPECT_EQ(problems[3], "lb.yaml:13: vips[0].backends[0].wieght: unknown key 'wieght' (did you mean 'weight'?)");
}

TEST(Config, DuplicateKeyIsAnError) {
    expect_problem(kMinimal + "interface: eth1\n", "lb.yaml:7: interface: duplicate key (first at line 1)");
}

TEST(Config, WrongTypesAreErrorsNamingWhatWasFound) {
    const auto problems = problems_of(R"(interface: [eth0]
hash_seed: twelve
memcached_servers: 10.0.1.20:11211
vips:
  - address: 192.0.2.10
    port: "80"
    hash_source: yes
    persistence: true
    backends: 10.0.1.11
)");
    ASSERT_EQ(problems.size(), 7u) << joined(problems);
    EXPECT_EQ(problems[0], "lb.yaml:1: interface: expected a string, got a list");
    EXPECT_EQ(problems[1], "lb.yaml:2: hash_seed: expected an integer, got 'twelve'");
    EXPECT_EQ(problems[2], "lb.yaml:3: memcached_servers: expected a list, got '10.0.1.20:11211'");
    EXPECT_EQ(problems[3], "lb.yaml:6: vips[0].port: expected an integer, got the string '80'");
    EXPECT_EQ(problems[4], "lb.yaml:7: vips[0].hash_source: expected true or false, got 'yes'");
    EXPECT_EQ(problems[5], "lb.yaml:8: vips[0].persistence: expected a mapping, got 'true'");
    EXPECT_EQ(problems[6], "lb.yaml:9: vips[0].backends: expected a list, got '10.0.1.11'");
}

TEST(Config, MissingRequiredKeys) {
    const auto problems = problems_of(R"(attach_mode: native
vips:
  - protocol: udp
    health: {port: 53}
    backends:
      - weight: 2
)");
    ASSERT_EQ(problems.size(), 4u) << joined(problems);
    EXPECT_EQ(problems[0], "lb.yaml:1: interface: is required (the NIC the XDP program attaches to)");
    EXPECT_EQ(problems[1], "lb.yaml:3: vips[0].address: is required");
    EXPECT_EQ(problems[2], "lb.yaml:3: vips[0].port: is required");
    EXPECT_EQ(problems[3], "lb.yaml:6: vips[0].backends[0].address: is required");
}

TEST(Config, AtLeastOneVipAndOneBackendEach) {
    expect_problem("interface: eth0\n", "lb.yaml:1: vips: is required (at least one VIP)");
    expect_problem("interface: eth0\nvips:\n", "lb.yaml:2: vips: at least one VIP is required");
    expect_problem(R"(interface: eth0
vips:
  - address: 192.0.2.10
    port: 80
    backends: []
)",
                   "lb.yaml:5: vips[0].backends: at least one backend is required");
    expect_problem(R"(interface: eth0
vips:
  - address: 192.0.2.10
    port: 80
)",
                   "lb.yaml:3: vips[0].backends: is required (at least one backend)");
}

TEST(Config, DuplicateVipsAndNames) {
    const auto problems = problems_of(R"(interface: eth0
vips:
  - name: web
    address: 192.0.2.10
    port: 80
    backends:
      - {name: a, address: 10.0.1.11}
      - {name: a, address: 10.0.1.12}
      - {name: b, address: 10.0.1.11}
  - name: web
    address: 192.0.2.10
    port: 443
    backends: [{address: 10.0.1.11}]
  - address: 192.0.2.10
    port: 80
    backends: [{address: 10.0.1.11}]
  - address: 192.0.2.10
    port: 80
    protocol: udp
    health: {port: 80}
    backends: [{address: 10.0.1.11}]
)");
    ASSERT_EQ(problems.size(), 4u) << joined(problems);
    EXPECT_EQ(problems[0],
              "lb.yaml:8: vips[0].backends[1].name: duplicate backend name 'a' (already vips[0].backends[0])");
    EXPECT_EQ(
        problems[1],
        "lb.yaml:9: vips[0].backends[2].address: duplicate backend address 10.0.1.11 (already vips[0].backends[0])");
    EXPECT_EQ(problems[2], "lb.yaml:10: vips[1].name: duplicate VIP name 'web' (already vips[0])");
    EXPECT_EQ(problems[3], "lb.yaml:14: vips[2]: duplicate VIP tcp 192.0.2.10:80 (already vips[0])");
}

TEST(Config, DefaultVipNamesCollideWithExplicitOnes) {
    expect_problem(R"(interface: eth0
vips:
  - address: 192.0.2.10
    port: 80
    backends: [{address: 10.0.1.11}]
  - address: 192.0.2.10
    port: 81
    name: tcp-192.0.2.10-80
    backends: [{address: 10.0.1.11}]
)",
                   "lb.yaml:8: vips[1].name: duplicate VIP name 'tcp-192.0.2.10-80' (already vips[0])");
}

TEST(Config, HealthCheckRules) {
    const auto problems = problems_of(R"(interface: eth0
vips:
  - address: 192.0.2.10
    port: 80
    health:
      interval: 200ms
      timeout: 1s
      rise: 0
      http_path: /x
    backends: [{address: 10.0.1.11}]
  - address: 192.0.2.10
    port: 53
    protocol: udp
    backends: [{address: 10.0.1.11}]
  - address: 192.0.2.10
    port: 8080
    health:
      kind: http
      http_path: health
      expected_status: 99
      interval: 0
    backends: [{address: 10.0.1.11}]
)");
    ASSERT_EQ(problems.size(), 7u) << joined(problems);
    EXPECT_EQ(problems[0], "lb.yaml:7: vips[0].health.timeout: 1000ms is longer than the interval (200ms)");
    EXPECT_EQ(problems[1], "lb.yaml:8: vips[0].health.rise: must be between 1 and 1000, got 0");
    EXPECT_EQ(problems[2], "lb.yaml:9: vips[0].health.http_path: only applies to kind: http");
    EXPECT_EQ(problems[3],
              "lb.yaml:11: vips[1].health.port: is required for a udp VIP (the default, the VIP's own port, is udp; "
              "tcp checks need a tcp port)");
    EXPECT_EQ(problems[4],
              "lb.yaml:19: vips[2].health.http_path: 'health' is not an HTTP path (starts with '/', no spaces)");
    EXPECT_EQ(problems[5], "lb.yaml:20: vips[2].health.expected_status: must be between 100 and 599, got 99");
    EXPECT_EQ(problems[6], "lb.yaml:21: vips[2].health.interval: must be more than 0");
}

TEST(Config, PersistencePrefixesInRange) {
    const auto problems = problems_of(minimal_vip_with(R"(    persistence:
      enabled: true
      timeout_s: 0
      client_prefix_v4: 33
      client_prefix_v6: 129
)"));
    ASSERT_EQ(problems.size(), 3u) << joined(problems);
    EXPECT_EQ(problems[0], "lb.yaml:9: vips[0].persistence.timeout_s: must be between 1 and 4294967295, got 0");
    EXPECT_EQ(problems[1], "lb.yaml:10: vips[0].persistence.client_prefix_v4: must be between 0 and 32, got 33");
    EXPECT_EQ(problems[2], "lb.yaml:11: vips[0].persistence.client_prefix_v6: must be between 0 and 128, got 129");
}

TEST(Config, TopLevelValuesAreChecked) {
    const auto problems = problems_of(R"(interface: this-name-is-too-long
attach_mode: offload
pin_dir: relative/dir
metrics_listen: fd00::1:9478
hash_seed: 4294967296
memcached_servers: [10.0.1.20, "mc:11211"]
)" + kMinimal.substr(kMinimal.find('\n') + 1));
    ASSERT_EQ(problems.size(), 6u) << joined(problems);
    EXPECT_EQ(problems[0],
              "lb.yaml:1: interface: 'this-name-is-too-long' is longer than an interface name can be (15 characters)");
    EXPECT_EQ(problems[1], "lb.yaml:2: attach_mode: expected one of 'auto', 'native', 'generic', got 'offload'");
    EXPECT_EQ(problems[2], "lb.yaml:3: pin_dir: 'relative/dir' is not an absolute path");
    EXPECT_EQ(problems[3],
              "lb.yaml:4: metrics_listen: 'fd00::1:9478' is not host:port (an IPv6 address goes in brackets: "
              "[fd00::1]:9478)");
    EXPECT_EQ(problems[4], "lb.yaml:5: hash_seed: must be between 0 and 4294967295, got 4294967296");
    EXPECT_EQ(problems[5], "lb.yaml:6: memcached_servers[0]: '10.0.1.20' is not host:port (no port)");
}

TEST(Config, ValuesAcceptedInTheirVariousSpellings) {
    const DaemonConfig config = parse_config(R"(interface: eth0
attach_mode: generic
metrics_listen: "[::1]:9100"
hash_seed: 0xdeadbeef
ring_size: 131071
memcached_servers: [localhost:11211, "[fd00::20]:11211"]
vips:
  - address: fd00::10
    port: 443
    forwarding: ipip
    hash_source: true
    health: {kind: http, interval: 1.5s, timeout: 1500}
    backends:
      - {address: fd00:1::11, weight: 0, next_hop: fe80::1}
)",
                                             "lb.yaml");
    EXPECT_EQ(config.attach_mode, AttachMode::generic);
    EXPECT_EQ(config.metrics_listen, "[::1]:9100");
    EXPECT_EQ(config.hash_seed, 0xdeadbeefu);
    EXPECT_EQ(config.ring_size, 131071u);
    ASSERT_EQ(config.vips.size(), 1u);
    EXPECT_EQ(config.vips[0].name, "tcp-fd00::10-443");
    EXPECT_EQ(config.vips[0].forwarding, ForwardingMode::ipip);
    EXPECT_TRUE(config.vips[0].hash_source);
    EXPECT_EQ(config.vips[0].health.interval, 1500ms);
    EXPECT_EQ(config.vips[0].health.timeout, 1500ms);
    EXPECT_EQ(config.vips[0].backends[0].weight, 0u);
    EXPECT_EQ(config.vips[0].backends[0].next_hop, IpAddress::parse("fe80::1"));
}

TEST(Config, DurationsParse) {
    EXPECT_EQ(parse_duration("200ms"), 200ms);
    EXPECT_EQ(parse_duration("1s"), 1000ms);
    EXPECT_EQ(parse_duration("1.5s"), 1500ms);
    EXPECT_EQ(parse_duration("0.25s"), 250ms);
    EXPECT_EQ(parse_duration("2m"), 120000ms);
    EXPECT_EQ(parse_duration("1h"), 3600000ms);
    EXPECT_EQ(parse_duration("750"), 750ms);
    EXPECT_EQ(parse_duration("0"), 0ms);
    for (const char* bad : {"", "s", "1.5", "1.5ms", "-1s", "1.s", ".5s", "1 s", "1sec", "1.2.3s", "0.0001s", "1d"}) {
        EXPECT_THROW(parse_duration(bad), std::invalid_argument) << bad;
    }
    // The bound is on the value, whatever the unit: what is accepted in one unit reads
    // back from its millisecond count (the config fuzzer found "7220107220s" did not).
    EXPECT_EQ(parse_duration("7220107220s"), 7220107220000ms);
    EXPECT_EQ(parse_duration("7220107220000"), 7220107220000ms);
    EXPECT_EQ(parse_duration("1000000000000000"), 1000000000000000ms);
    for (const char* bad : {"1000000000000001", "277777778h", "99999999999999999999h", "1.00000000001h"}) {
        EXPECT_THROW(parse_duration(bad), std::invalid_argument) << bad;
    }
    // In a file, a bad duration names its path and line.
    expect_problem(minimal_vip_with("    health:\n      interval: 1.5\n"),
                   "lb.yaml:8: vips[0].health.interval: '1.5' is not a whole number of milliseconds");
    expect_problem(minimal_vip_with("    health:\n      timeout: soon\n"),
                   "lb.yaml:8: vips[0].health.timeout: 'soon' is not a duration (use e.g. 200ms, 1.5s, 2m or an "
                   "integer number of milliseconds)");
}

TEST(Config, HostPortParses) {
    EXPECT_EQ(parse_host_port("127.0.0.1:9478"), (HostPort{"127.0.0.1", 9478}));
    EXPECT_EQ(parse_host_port("[fd00::1]:80"), (HostPort{"fd00::1", 80}));
    EXPECT_EQ(parse_host_port("mc-1.example.com:11211"), (HostPort{"mc-1.example.com", 11211}));
    for (const char* bad : {"", "host", ":80", "host:", "host:0", "host:65536", "host:8o", "fd00::1:80", "[fd00::1]",
                            "[10.0.0.1]:80", "[nope]:80", "a b:80"}) {
        EXPECT_THROW(parse_host_port(bad), std::invalid_argument) << bad;
    }
}

TEST(Config, RingMustHoldEveryWeightedBackend) {
    expect_problem(R"(interface: eth0
ring_size: 2
vips:
  - address: 192.0.2.10
    port: 80
    backends:
      - address: 10.0.1.11
      - address: 10.0.1.12
      - address: 10.0.1.13
      - address: 10.0.1.14
        weight: 0
)",
                   "lb.yaml:6: vips[0].backends: 3 weighted backends do not fit a ring of 2 slots (ring_size)");
}

TEST(Config, YamlSyntaxErrorsGiveTheirLine) {
    const auto problems = problems_of("interface: eth0\nvips:\n  - address: [192.0.2.10\n    port: 80\n");
    ASSERT_EQ(problems.size(), 1u) << joined(problems);
    EXPECT_EQ(problems[0].rfind("lb.yaml:", 0), 0u) << problems[0];
    EXPECT_NE(problems[0].find(": (document): YAML syntax error: "), std::string::npos) << problems[0];
    const auto tabbed = problems_of("interface: eth0\nvips:\n\t- address: 1\n");
    ASSERT_EQ(tabbed.size(), 1u) << joined(tabbed);
    EXPECT_EQ(tabbed[0].rfind("lb.yaml:3: (document): YAML syntax error: ", 0), 0u) << tabbed[0];
}

TEST(Config, DocumentThatIsNotAMapping) {
    expect_problem("", "lb.yaml:1: (document): the configuration is empty");
    expect_problem("- a\n- b\n", "lb.yaml:1: (document): expected a mapping, got a list");
}

TEST(Config, SessionSettingsAndClusters) {
    const DaemonConfig config = parse_config(R"(interface: eth0
memcached_servers: [127.0.0.1:11211]
session:
  view_refresh_interval: 250ms
  view_ttl: 2s
  affinity_save_interval: 0
  memcached_connect_timeout: 50ms
  memcached_timeout: 1s
vips:
  - name: http
    cluster: shop
    address: 192.0.2.10
    port: 80
    backends: [{name: be1, address: 10.0.1.11}]
  - name: https
    cluster: shop
    address: 192.0.2.10
    port: 443
    backends: [{name: be1, address: 10.0.1.11}]
)",
                                             "lb.yaml");
    EXPECT_EQ(config.session.view_refresh_interval, 250ms);
    EXPECT_EQ(config.session.view_ttl, 2s);
    EXPECT_EQ(config.session.affinity_save_interval, 0ms);  // never saved
    EXPECT_EQ(config.session.memcached_connect_timeout, 50ms);
    EXPECT_EQ(config.session.memcached_timeout, 1000ms);
    EXPECT_EQ(config.vips[0].cluster, "shop");
    EXPECT_EQ(config.vips[1].cluster, "shop");
}

TEST(Config, SessionMistakesNameTheirKeyAndLine) {
    const auto problems = problems_of(R"(interface: eth0
memcached_servers: [127.0.0.1:11211, 127.0.0.1:11211]
session:
  view_refresh_interval: 50ms
  view_ttl: 2500ms
  affinity_save_interval: 500ms
  memcached_connect_timeout: 0
  memcached_timeout: 1m
  view_ttl_s: 5
)" + kMinimal.substr(kMinimal.find('\n') + 1));
    ASSERT_EQ(problems.size(), 7u) << joined(problems);
    EXPECT_EQ(problems[0],
              "lb.yaml:2: memcached_servers[1]: duplicate server '127.0.0.1:11211' (already "
              "memcached_servers[0])");
    EXPECT_EQ(problems[1], "lb.yaml:4: session.view_refresh_interval: must be between 100ms and 3600000ms, got 50ms");
    EXPECT_EQ(problems[2],
              "lb.yaml:5: session.view_ttl: must be a whole number of seconds (memcached expiry), got "
              "2500ms");
    EXPECT_EQ(problems[3],
              "lb.yaml:6: session.affinity_save_interval: must be 0 (never save) or at least 1000ms, "
              "got 500ms");
    EXPECT_EQ(problems[4], "lb.yaml:7: session.memcached_connect_timeout: must be between 1ms and 10000ms, got 0ms");
    EXPECT_EQ(problems[5], "lb.yaml:8: session.memcached_timeout: must be between 1ms and 10000ms, got 60000ms");
    EXPECT_EQ(problems[6], "lb.yaml:9: session.view_ttl_s: unknown key 'view_ttl_s' (did you mean 'view_ttl'?)");
}

TEST(Config, ViewTtlMustOutliveTwoRefreshes) {
    expect_problem(R"(interface: eth0
session:
  view_refresh_interval: 3s
  view_ttl: 5s
)" + kMinimal.substr(kMinimal.find('\n') + 1),
                   "lb.yaml:4: session.view_ttl: 5000ms is shorter than two view refreshes (2 x 3000ms): a view "
                   "would expire between its writes");
    // The default TTL (5s) against a longer refresh: reported at the refresh.
    expect_problem(R"(interface: eth0
session: {view_refresh_interval: 4s}
)" + kMinimal.substr(kMinimal.find('\n') + 1),
                   "lb.yaml:2: session.view_ttl: 5000ms is shorter than two view refreshes (2 x 4000ms): a view "
                   "would expire between its writes");
}

TEST(Config, ClusterAndBackendNamesMustFitMemcachedKeys) {
    // An explicit cluster is always checked: it exists only to name a key.
    expect_problem(minimal_vip_with("    cluster: \"caf\u00e9\"\n"),
                   "lb.yaml:7: vips[0].cluster: 'caf\u00e9' cannot be a cluster name: name has a space, control or "
                   "non-ASCII character");
    expect_problem(minimal_vip_with("    cluster: \"\"\n"), "lb.yaml:7: vips[0].cluster: must not be empty");
    // Names that only become keys with memcached: accepted without it...
    const std::string unicode = R"(vips:
  - name: "caf\u00e9"
    address: 192.0.2.10
    port: 80
    backends:
      - {name: "b\u00e9", address: 10.0.1.11}
)";
    EXPECT_TRUE(problems_of("interface: eth0\n" + unicode).empty());
    // ... refused with it, where they are written.
    const auto problems = problems_of("interface: eth0\nmemcached_servers: [127.0.0.1:11211]\n" + unicode);
    ASSERT_EQ(problems.size(), 2u) << joined(problems);
    EXPECT_EQ(problems[0],
              "lb.yaml:4: vips[0].cluster: the VIP name 'caf\u00e9' cannot be a cluster name (name has "
              "a space, control or non-ASCII character): set cluster");
    EXPECT_EQ(problems[1],
              "lb.yaml:8: vips[0].backends[0].name: 'b\u00e9' cannot name a backend in the membership "
              "view: name has a space, control or non-ASCII character");
}

TEST(Config, LoadConfigReportsAnUnreadableFile) {
    try {
        load_config("/nonexistent/stickylbd.yaml");
        FAIL() << "accepted";
    } catch (const ConfigError& error) {
        ASSERT_EQ(error.problems().size(), 1u);
        EXPECT_EQ(error.problems()[0], "/nonexistent/stickylbd.yaml: cannot read: No such file or directory");
    }
}

// What is not a small regular file is refused before a byte is parsed: a
// device would be read forever, a FIFO would hang, a huge file fill memory.
TEST(Config, LoadConfigRefusesWhatIsNotASmallRegularFile) {
    const auto problem = [](const std::string& path) {
        try {
            load_config(path);
        } catch (const ConfigError& error) {
            return error.problems().at(0);
        }
        return std::string("(accepted)");
    };
    EXPECT_EQ(problem("/dev/zero"), "/dev/zero: is a character device, not a regular file");
    EXPECT_EQ(problem("/"), "/: is a directory, not a regular file");
    const std::string fifo = ::testing::TempDir() + "/config-fifo-" + std::to_string(::getpid());
    std::filesystem::remove(fifo);
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    EXPECT_EQ(problem(fifo), fifo + ": is a FIFO, not a regular file");
    std::filesystem::remove(fifo);
    const std::string big = ::testing::TempDir() + "/config-big-" + std::to_string(::getpid()) + ".yaml";
    std::ofstream(big) << kMinimal << "# " << std::string(2 * 1024 * 1024, 'x') << "\n";
    EXPECT_EQ(problem(big), big + ": is " + std::to_string(std::filesystem::file_size(big)) +
                                " bytes, larger than the limit of 1048576");
    std::filesystem::remove(big);
}

// Strings end up in system calls, logs, JSON and metric labels: invalid UTF-8
// or a control character anywhere is refused where it is.
TEST(Config, StringsMustBeUtf8WithoutControlCharacters) {
    std::string nul_interface = kMinimal;
    nul_interface.replace(0, std::string("interface: eth0").size(), "interface: \"\\u0000eth0\"");
    expect_problem(nul_interface, "lb.yaml:1: interface: contains a control character (0x00) at byte 0");
    const auto latin1 = problems_of(minimal_vip_with("        name: b\xe9\n"));
    ASSERT_EQ(latin1.size(), 1u) << joined(latin1);
    EXPECT_EQ(latin1[0], "lb.yaml:7: vips[0].backends[0].name: contains not valid UTF-8 (truncated) at byte 1");
    expect_problem(minimal_vip_with("    name: \"web\\x85\"\n"),
                   "lb.yaml:7: vips[0].name: contains a control character (U+0085) at byte 3");
    EXPECT_EQ(joined(problems_of(minimal_vip_with("        name: b\u00e9\n"))), "") << "valid UTF-8 is a name";
}

TEST(Config, SessionKeyFileIsAnAbsolutePath) {
    const std::string session = "memcached_servers: [127.0.0.1:11211]\nsession:\n  key_file: ";
    EXPECT_EQ(parse_config(kMinimal + session + "/etc/stickylb/session.key\n", "lb.yaml").session.key_file,
              "/etc/stickylb/session.key");
    expect_problem(kMinimal + session + "session.key\n",
                   "lb.yaml:9: session.key_file: 'session.key' is not an absolute path");
}

}  // namespace
}  // namespace stickylb

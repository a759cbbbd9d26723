// SPDX-License-Identifier: Apache-2.0
// End to end: HTTP from the lab client through the XDP data plane on the lab LB
// to the lab backends, which answer the client directly (DSR). The lab is built
// by tools/lab/lab.sh (namespaces only) for each test and removed afterwards.
//
// Needs root. The test process enters the LB namespace only around the calls
// that resolve or attach to its eth0 (if_nametoindex, ioctl, netlink), and
// always returns to its own namespace.
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dataplane/dataplane.h"
#include "dataplane/maglev.h"
#include "support/lab.h"
#include "support/load_options.h"
#include "support/privileges.h"

#ifndef STICKYLB_SOURCE_DIR
#error "STICKYLB_SOURCE_DIR must be defined (the repository root)"
#endif
#ifndef STICKYLB_BUILD_DIR
#error "STICKYLB_BUILD_DIR must be defined (the build directory holding bpf/*.bpf.o)"
#endif

namespace stickylb {
namespace {

using namespace stickylb::testing::lab;

// Lab constants: they must match tools/lab/lab.sh.
constexpr const char* kVip4 = kLabVip;
constexpr const char* kVip6 = kLabVip6;
constexpr int kBackends = 2;
constexpr int kBackendHostBase = 20;      // backend N is .20+N / ::20+N
constexpr std::uint32_t kRingSize = 257;  // prime
constexpr std::uint64_t kRingSeed = 0x5eed;
constexpr std::uint16_t kHttpPort = 80;
constexpr int kRequests = 20;

// Enters a named network namespace for this thread; returns to the original one
// when destroyed. Not returning would leave the test in the lab: abort instead.
class NetnsScope {
public:
    explicit NetnsScope(const std::string& name) {
        original_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (original_ < 0)
            throw SystemErrorLike("open /proc/thread-self/ns/net");
        const std::string path = "/var/run/netns/" + name;
        const int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (target < 0) {
            const auto error = SystemErrorLike("open " + path);
            close(original_);
            throw error;
        }
        const int rc = setns(target, CLONE_NEWNET);
        const int saved = errno;
        close(target);
        if (rc != 0) {
            close(original_);
            errno = saved;
            throw SystemErrorLike("setns " + path);
        }
    }
    ~NetnsScope() {
        if (setns(original_, CLONE_NEWNET) != 0) {
            std::perror("e2e: cannot return to the original network namespace");
            std::abort();
        }
        close(original_);
    }
    NetnsScope(const NetnsScope&) = delete;
    NetnsScope& operator=(const NetnsScope&) = delete;

private:
    static std::runtime_error SystemErrorLike(const std::string& what) {
        return std::runtime_error(what + ": " + std::strerror(errno));
    }
    int original_ = -1;
};

// Call inside the namespace: a socket made now belongs to it.
MacAddress interface_mac(const std::string& interface) {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
    ifreq request{};
    std::strncpy(request.ifr_name, interface.c_str(), IFNAMSIZ - 1);
    const int rc = ioctl(fd, SIOCGIFHWADDR, &request);
    const int saved = errno;
    close(fd);
    if (rc != 0)
        throw std::runtime_error("SIOCGIFHWADDR " + interface + ": " + std::strerror(saved));
    std::array<std::uint8_t, 6> bytes;
    std::memcpy(bytes.data(), request.ifr_hwaddr.sa_data, bytes.size());
    return MacAddress(bytes);
}

struct Case {
    ForwardingMode mode;
    bool ipv6;
};

void PrintTo(const Case& c, std::ostream* out) {
    *out << (c.mode == ForwardingMode::l2_dsr ? "L2 DSR" : "IPIP") << (c.ipv6 ? ", IPv6 VIP" : ", IPv4 VIP");
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
    return std::string(info.param.mode == ForwardingMode::l2_dsr ? "L2Dsr" : "Ipip") +
           (info.param.ipv6 ? "_IPv6" : "_IPv4");
}

class E2eHttpTest : public ::testing::TestWithParam<Case> {
protected:
    void SetUp() override {
        STICKYLB_REQUIRE_ROOT();
        const Case& c = GetParam();
        lab_requested_ = true;
        const auto up =
            run_command(lab_command(std::string("up --mode ") + (c.mode == ForwardingMode::ipip ? "ipip" : "l2") +
                                    " --backends " + std::to_string(kBackends)));
        ASSERT_EQ(up.exit_code, 0) << "lab.sh up failed:\n" << up.output;

        plane_.emplace(DataPlane::load(stickylb::testing::small_load_options(kRingSize)));
        plane_->set_runtime_config(RuntimeConfig{});

        {
            NetnsScope lb(lab_ns("lb"));
            lb_ifindex_ = if_nametoindex("eth0");
            lb_mac_ = interface_mac("eth0");
            attach_ = plane_->attach("eth0");
            attached_ = true;
        }
        ASSERT_NE(lb_ifindex_, 0u);
        // Cross-check that the namespace switch really reached the LB.
        const auto lb_mac_text = run_command(in_ns(lab_ns("lb"), "cat /sys/class/net/eth0/address"));
        ASSERT_EQ(lb_mac_text.exit_code, 0) << lb_mac_text.output;
        ASSERT_EQ(MacAddress::parse(trim(lb_mac_text.output)), lb_mac_);
        const auto xdp = run_command("ip -n " + shell_quote(lab_ns("lb")) + " -d link show dev eth0");
        ASSERT_NE(xdp.output.find("prog/xdp"), std::string::npos) << "no XDP program on the LB's eth0:\n" << xdp.output;

        for (int index = 1; index <= kBackends; ++index) {
            const auto mac = run_command(in_ns(backend_ns(index), "cat /sys/class/net/eth0/address"));
            ASSERT_EQ(mac.exit_code, 0) << mac.output;
            backend_macs_[index] = MacAddress::parse(trim(mac.output));
        }
    }

    void TearDown() override {
        if (plane_ && attached_) {
            try {
                NetnsScope lb(lab_ns("lb"));
                plane_->detach("eth0");
            } catch (const std::exception& error) {
                ADD_FAILURE() << "detach from the LB's eth0: " << error.what();
            }
        }
        plane_.reset();  // closes the XDP link and the programs
        if (lab_requested_) {
            const auto down = run_command(lab_command("down"));
            EXPECT_EQ(down.exit_code, 0) << "lab.sh down failed:\n" << down.output;
            EXPECT_TRUE(lab_namespaces_left().empty()) << "lab namespaces left behind";
        }
    }

    bool ipv6() const { return GetParam().ipv6; }
    IpAddress vip() const { return IpAddress::parse(ipv6() ? kVip6 : kVip4); }
    std::string vip_url(const std::string& path) const {
        return std::string("http://") + (ipv6() ? std::string("[") + kVip6 + "]" : std::string(kVip4)) + path;
    }
    IpAddress backend_address(int index) const {
        const int host = kBackendHostBase + index;
        return IpAddress::parse(ipv6() ? lab_host6(host) : lab_host(host));
    }
    std::string client_address(int host) const { return ipv6() ? lab_host6(host) : lab_host(host); }

    // One VIP (index 0, tcp/80) with both backends in its ring.
    void configure(bool persistent, bool nexthop_known) {
        const Case& c = GetParam();
        std::vector<MaglevBackend> members;
        for (int index = 1; index <= kBackends; ++index) {
            BackendEntry entry;
            entry.index = static_cast<std::uint32_t>(index);
            entry.address = backend_address(index);
            entry.state = BackendState::up;
            if (nexthop_known)
                entry.nexthop_mac = backend_macs_.at(index);
            entry.egress_mac = lb_mac_;
            entry.egress_ifindex = 0;
            plane_->set_backend(entry);
            members.push_back(MaglevBackend{"be" + std::to_string(index), entry.index, 1, true});
        }
        VipSettings settings;
        settings.index = 0;
        settings.persistent = persistent;
        settings.client_prefix_v4 = 32;
        settings.client_prefix_v6 = 128;
        settings.forwarding = c.mode;
        plane_->upsert_vip(VipKey{vip(), kHttpPort, IPPROTO_TCP}, settings);
        const auto ring = build_maglev_ring(members, kRingSize, kRingSeed);
        plane_->write_ring(0, ring);
    }

    // GET through the VIP from the client namespace; optional source address.
    CommandResult get(const std::string& path, const std::string& source = "") const {
        std::string command = "curl -sS --max-time 5";
        if (!source.empty())
            command += " --interface " + shell_quote(source);
        return run_command(in_ns(lab_ns("client"), command + " " + shell_quote(vip_url(path))));
    }

    // Asserts the reply names a configured backend; returns its name ("be1").
    std::string backend_of(const CommandResult& reply) const {
        EXPECT_EQ(reply.exit_code, 0) << reply.output;
        const std::string text = trim(reply.output);
        for (int index = 1; index <= kBackends; ++index)
            if (text == "backend=be" + std::to_string(index))
                return "be" + std::to_string(index);
        ADD_FAILURE() << "unexpected reply through " << vip_url("/") << ": '" << reply.output << "'";
        return "";
    }

    std::uint64_t lb_rx_bytes() const {
        const auto value = run_command(in_ns(lab_ns("lb"), "cat /sys/class/net/eth0/statistics/rx_bytes"));
        EXPECT_EQ(value.exit_code, 0) << value.output;
        return std::strtoull(value.output.c_str(), nullptr, 10);
    }

    // TCP segments the client had to send again (Tcp RetransSegs of its namespace).
    // On an idle lab nothing is lost: a retransmission means a packet through the
    // VIP (or its direct reply) vanished and TCP only hid it.
    std::uint64_t client_retransmissions() const {
        const auto snmp = run_command(in_ns(lab_ns("client"), "cat /proc/net/snmp"));
        EXPECT_EQ(snmp.exit_code, 0) << snmp.output;
        std::istringstream lines(snmp.output);
        std::string names, values;
        while (std::getline(lines, names)) {
            if (names.rfind("Tcp:", 0) != 0 || !std::getline(lines, values))
                continue;
            std::istringstream name_fields(names), value_fields(values);
            std::string name, value;
            while (name_fields >> name && value_fields >> value)
                if (name == "RetransSegs")
                    return std::strtoull(value.c_str(), nullptr, 10);
        }
        ADD_FAILURE() << "no Tcp RetransSegs in the client's /proc/net/snmp:\n" << snmp.output;
        return 0;
    }

    std::string diagnostics() const {
        const auto stats = plane_->global_stats();
        std::ostringstream out;
        out << "XDP attach mode " << to_string(attach_.mode) << "; global stats: pass_not_ip=" << stats.pass_not_ip
            << " pass_not_vip=" << stats.pass_not_vip << " pass_malformed=" << stats.pass_malformed
            << " pass_slow_path=" << stats.pass_slow_path << " drop_malformed=" << stats.drop_malformed
            << " drop_no_backend=" << stats.drop_no_backend << " drop_fragment=" << stats.drop_fragment
            << " drop_error=" << stats.drop_error << " tx=" << stats.tx << " redirect=" << stats.redirect;
        return out.str();
    }

    std::optional<DataPlane> plane_;
    AttachResult attach_{AttachMode::native, false};
    bool lab_requested_ = false;
    bool attached_ = false;
    unsigned lb_ifindex_ = 0;
    MacAddress lb_mac_;
    std::map<int, MacAddress> backend_macs_;
};

TEST_P(E2eHttpTest, RequestsThroughTheVipReachConfiguredBackends) {
    STICKYLB_REQUIRE_ROOT();
    configure(/*persistent=*/false, /*nexthop_known=*/true);
    const auto before = plane_->global_stats();
    const std::uint64_t retransmissions_before = client_retransmissions();
    std::map<std::string, int> seen;
    for (int request = 0; request < kRequests; ++request) {
        const std::string backend = backend_of(get("/"));
        ASSERT_FALSE(backend.empty()) << "request " << request << "; " << diagnostics();
        ++seen[backend];
    }
    const auto after = plane_->global_stats();
    EXPECT_EQ(client_retransmissions() - retransmissions_before, 0u) << "packets were lost; " << diagnostics();
    EXPECT_GT(after.tx, before.tx) << diagnostics();
    EXPECT_EQ(after.pass_slow_path, before.pass_slow_path) << diagnostics();
    // 20 connections with distinct source ports over a 50/50 ring: both backends
    // answer unless the flow hash ignores the ports (odds otherwise 2^-19).
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(kBackends)) << "only " << seen.begin()->first << " answered";
    const auto vip = plane_->vip_stats(0);
    EXPECT_GE(vip.new_flows, static_cast<std::uint64_t>(kRequests));
}

TEST_P(E2eHttpTest, RepliesGoStraightFromBackendToClient) {
    STICKYLB_REQUIRE_ROOT();
    configure(/*persistent=*/false, /*nexthop_known=*/true);
    constexpr std::uint64_t kReplyBytes = 2'000'000;
    constexpr std::uint64_t kMaxLbBytes = 500'000;
    const auto stats_before = plane_->global_stats();
    const std::uint64_t rx_before = lb_rx_bytes();
    const auto reply =
        run_command(in_ns(lab_ns("client"), "curl -sS --max-time 10 -o /dev/null -w '%{size_download}' " +
                                                shell_quote(vip_url("/bytes?n=" + std::to_string(kReplyBytes)))));
    const std::uint64_t rx_after = lb_rx_bytes();
    const auto stats_after = plane_->global_stats();
    ASSERT_EQ(reply.exit_code, 0) << reply.output << "\n" << diagnostics();
    EXPECT_EQ(std::strtoull(reply.output.c_str(), nullptr, 10), kReplyBytes) << reply.output;
    EXPECT_LT(rx_after - rx_before, kMaxLbBytes)
        << "the LB received " << rx_after - rx_before << " bytes for a " << kReplyBytes << "-byte reply: not DSR";
    // Requests and ACKs of the client went through XDP (several hundred packets).
    EXPECT_GT(stats_after.tx - stats_before.tx, 50u) << diagnostics();
}

TEST_P(E2eHttpTest, PersistentVipKeepsEachClientOnOneBackend) {
    STICKYLB_REQUIRE_ROOT();
    configure(/*persistent=*/true, /*nexthop_known=*/true);
    constexpr int kClients = 6;
    constexpr int kRequestsPerClient = 5;
    const std::uint64_t retransmissions_before = client_retransmissions();
    for (int client = 0; client < kClients; ++client) {
        const std::string source = client_address(101 + client);
        std::string first;
        for (int request = 0; request < kRequestsPerClient; ++request) {
            const std::string backend = backend_of(get("/", source));
            ASSERT_FALSE(backend.empty()) << "client " << source << "; " << diagnostics();
            if (request == 0)
                first = backend;
            EXPECT_EQ(backend, first) << "client " << source << " moved on request " << request;
        }
    }
    EXPECT_EQ(client_retransmissions() - retransmissions_before, 0u) << "packets were lost; " << diagnostics();
    const auto vip = plane_->vip_stats(0);
    EXPECT_GE(vip.affinity_hits, static_cast<std::uint64_t>(kClients * (kRequestsPerClient - 1)));
    EXPECT_GE(vip.affinity_misses, static_cast<std::uint64_t>(kClients));
}

TEST_P(E2eHttpTest, UnknownNexthopGoesThroughTheTcSlowPath) {
    STICKYLB_REQUIRE_ROOT();
    configure(/*persistent=*/false, /*nexthop_known=*/false);
    const auto before = plane_->global_stats();
    const std::uint64_t retransmissions_before = client_retransmissions();
    constexpr int kSlowRequests = 10;
    for (int request = 0; request < kSlowRequests; ++request)
        ASSERT_FALSE(backend_of(get("/")).empty()) << "request " << request << "; " << diagnostics();
    const auto after = plane_->global_stats();
    EXPECT_EQ(client_retransmissions() - retransmissions_before, 0u)
        << "packets handed to the tc slow path were lost; " << diagnostics();
    // Every packet of every connection (SYN, request, ACKs, FIN) took the slow path.
    EXPECT_GE(after.pass_slow_path - before.pass_slow_path, static_cast<std::uint64_t>(3 * kSlowRequests))
        << diagnostics();
    EXPECT_EQ(after.tx, before.tx) << diagnostics();
}

INSTANTIATE_TEST_SUITE_P(Lab, E2eHttpTest,
                         ::testing::Values(Case{ForwardingMode::l2_dsr, false}, Case{ForwardingMode::l2_dsr, true},
                                           Case{ForwardingMode::ipip, false}, Case{ForwardingMode::ipip, true}),
                         case_name);

}  // namespace
}  // namespace stickylb

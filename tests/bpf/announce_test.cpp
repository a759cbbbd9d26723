// SPDX-License-Identifier: Apache-2.0
// What the announcement rests on, against a real kernel in a namespace of the
// test's own: the routes the BGP speaker learns (a table of their own, protocol
// 89, nobody else's routes touched) and the data-plane self-test (a probe packet
// through the loaded program, the program's attachment to the interface).
#include <linux/bpf.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>

#include "bpf/fixture.h"
#include "control/announce.h"
#include "dataplane/kernel_routes.h"
#include "dataplane/self_test.h"
#include "support/network_namespace.h"

namespace stickylb::testing {
namespace {

constexpr std::uint32_t kTable = 89;

// The output of a shell command.
std::string output_of(const std::string& command) {
    std::unique_ptr<FILE, decltype(&pclose)> pipe(popen(command.c_str(), "r"), &pclose);
    std::string text;
    char buffer[512];
    while (pipe && fgets(buffer, sizeof(buffer), pipe.get()))
        text += buffer;
    return text;
}

std::vector<std::string> sorted_strings(const std::vector<IpAddress>& addresses) {
    std::vector<std::string> out;
    for (const IpAddress& address : addresses)
        out.push_back(address.to_string());
    std::sort(out.begin(), out.end());
    return out;
}

class KernelRoutesInNamespace : public ::testing::Test {
protected:
    void SetUp() override {
        STICKYLB_REQUIRE_ROOT();
        namespace_.emplace("slb-test-routes");
    }
    std::optional<EnteredNetworkNamespace> namespace_;
};

TEST_F(KernelRoutesInNamespace, RoutesOfBothFamiliesAreAddedListedAndRemoved) {
    KernelRoutes routes(kTable);
    const IpAddress v4 = IpAddress::parse("192.0.2.10");
    const IpAddress v6 = IpAddress::parse("2001:db8::10");
    routes.add(v4);
    routes.add(v6);
    routes.add(v4);  // again: no error, no second route
    EXPECT_EQ(sorted_strings(routes.list()), (std::vector<std::string>{"192.0.2.10", "2001:db8::10"}));

    // What BIRD's kernel protocol (or `ip route`) sees: host routes on lo, protocol 89.
    const std::string v4_table = output_of("ip route show table 89");
    EXPECT_NE(v4_table.find("192.0.2.10 dev lo proto 89"), std::string::npos) << v4_table;
    const std::string v6_table = output_of("ip -6 route show table 89");
    EXPECT_NE(v6_table.find("2001:db8::10 dev lo proto 89"), std::string::npos) << v6_table;
    EXPECT_EQ(output_of("ip route show table main | grep 192.0.2.10"), "") << "forwarding on the host is untouched";

    routes.remove(v4);
    routes.remove(v4);  // absent: fine
    EXPECT_EQ(sorted_strings(routes.list()), std::vector<std::string>{"2001:db8::10"});
    routes.remove(v6);
    EXPECT_TRUE(routes.list().empty());
}

TEST_F(KernelRoutesInNamespace, RemoveAllTakesOnlyStickylbRoutes) {
    ASSERT_EQ(EnteredNetworkNamespace::run("ip route add 198.51.100.1 dev lo table 89 proto static"), 0);
    KernelRoutes routes(kTable);
    routes.add(IpAddress::parse("192.0.2.10"));
    routes.add(IpAddress::parse("2001:db8::10"));
    EXPECT_EQ(routes.list().size(), 2u) << "another protocol's route is not ours";
    EXPECT_EQ(routes.remove_all(), 2u);
    EXPECT_TRUE(routes.list().empty());
    EXPECT_NE(output_of("ip route show table 89").find("198.51.100.1"), std::string::npos)
        << "the operator's route stays";
}

TEST_F(KernelRoutesInNamespace, ATableOfAnotherNumberIsSeparate) {
    KernelRoutes ours(kTable);
    KernelRoutes other(kTable + 1);
    ours.add(IpAddress::parse("192.0.2.10"));
    EXPECT_TRUE(other.list().empty());
    EXPECT_EQ(other.remove_all(), 0u);
    EXPECT_EQ(ours.list().size(), 1u);
}

// The self-test against the loaded program; VIPs as the reconciler writes them.
class SelfTest : public DataPlaneTest {
protected:
    void SetUp() override {
        DataPlaneTest::SetUp();
        if (IsSkipped() || HasFatalFailure())
            return;
        plane().upsert_vip(tcp_vip("192.0.2.10"), VipSettings{.index = 1});
        plane().upsert_vip(VipKey{IpAddress::parse("2001:db8::10"), 53, IPPROTO_UDP}, VipSettings{.index = 2});
        set_backends(1, {{1, IpAddress::parse("10.0.0.1")}, {2, IpAddress::parse("10.0.0.2")}});
        std::vector<MaglevBackend> v6_members{{"be3", 3, 1, true}};
        plane().set_backend(BackendEntry{3, IpAddress::parse("fd00::3"), BackendState::up, backend_mac(3), kLbMac, 0});
        plane().write_ring(2, build_maglev_ring(v6_members, kTestRingSize, kTestSeed));
    }
    // BPF_PROG_TEST_RUN receives on lo; the program's view of the interface is irrelevant.
    XdpSelfTest self_test() { return XdpSelfTest(plane(), 1, kLbMac); }
};

TEST_F(SelfTest, AVipWithABackendUpForwardsTheProbe) {
    XdpSelfTest test = self_test();
    EXPECT_TRUE(test.forwards(IpAddress::parse("192.0.2.10"), 80, IPPROTO_TCP));
    EXPECT_TRUE(test.forwards(IpAddress::parse("2001:db8::10"), 53, IPPROTO_UDP));
}

TEST_F(SelfTest, NoBackendUpOrNoSuchVipDoesNotForward) {
    XdpSelfTest test = self_test();
    EXPECT_FALSE(test.forwards(IpAddress::parse("192.0.2.10"), 81, IPPROTO_TCP)) << "another port";
    EXPECT_FALSE(test.forwards(IpAddress::parse("192.0.2.10"), 80, IPPROTO_UDP)) << "another protocol";
    EXPECT_FALSE(test.forwards(IpAddress::parse("192.0.2.99"), 80, IPPROTO_TCP)) << "not a VIP";
    ASSERT_TRUE(test.forwards(IpAddress::parse("192.0.2.10"), 80, IPPROTO_TCP));
    // The probes before made a flow entry and an affinity entry: they must not keep it "forwarding".
    set_state_and_ring(1, 1, BackendState::down);
    set_state_and_ring(1, 2, BackendState::down);
    EXPECT_FALSE(test.forwards(IpAddress::parse("192.0.2.10"), 80, IPPROTO_TCP)) << "every backend down";
}

// The program is attached where it is asked about, and only while it is.
class SelfTestAttached : public SelfTest {
protected:
    void SetUp() override {
        SelfTest::SetUp();
        if (IsSkipped() || HasFatalFailure())
            return;
        namespace_.emplace("slb-test-selftest");
        ASSERT_EQ(EnteredNetworkNamespace::run("ip link add veth0 type veth peer name veth1"), 0);
        ASSERT_EQ(EnteredNetworkNamespace::run("ip link set veth0 up && ip link set veth1 up"), 0);
    }
    void TearDown() override { namespace_.reset(); }
    std::optional<EnteredNetworkNamespace> namespace_;
};

TEST_F(SelfTestAttached, AttachedOnlyWhileThisProgramIsOnTheInterface) {
    XdpSelfTest test(plane(), if_nametoindex("veth0"), kLbMac);
    EXPECT_FALSE(test.attached());
    plane().attach("veth0");
    EXPECT_TRUE(test.attached());
    XdpSelfTest other_interface(plane(), if_nametoindex("veth1"), kLbMac);
    EXPECT_FALSE(other_interface.attached());
    plane().detach("veth0");
    EXPECT_FALSE(test.attached());
}

// The announcer end to end on the kernel: routes follow readiness.
TEST_F(SelfTestAttached, AnnouncerWritesTheRoutesOfReadyVipsOnly) {
    plane().attach("veth0");
    XdpSelfTest test(plane(), if_nametoindex("veth0"), kLbMac);
    KernelRoutes routes(kTable);
    Announcer announcer(routes, test);
    std::vector<VipReadiness> vips{
        {.vip = "web",
         .address = IpAddress::parse("192.0.2.10"),
         .port = 80,
         .protocol = IPPROTO_TCP,
         .backend_passing = true,
         .backends_checked = true},
        {.vip = "dns",
         .address = IpAddress::parse("2001:db8::10"),
         .port = 53,
         .protocol = IPPROTO_UDP,
         .backend_passing = false,
         .backends_checked = true},
    };
    announcer.apply(vips);
    EXPECT_EQ(sorted_strings(routes.list()), std::vector<std::string>{"192.0.2.10"});
    vips[1].backend_passing = true;
    announcer.apply(vips);
    EXPECT_EQ(sorted_strings(routes.list()), (std::vector<std::string>{"192.0.2.10", "2001:db8::10"}));

    plane().detach("veth0");
    announcer.apply(vips);
    EXPECT_TRUE(routes.list().empty()) << "a detached program withdraws every VIP";
    for (const VipAnnouncement& state : announcer.state())
        EXPECT_EQ(state.reason, AnnounceReason::data_plane_detached) << state.vip;
}

}  // namespace
}  // namespace stickylb::testing

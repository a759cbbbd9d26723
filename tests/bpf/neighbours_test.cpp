// SPDX-License-Identifier: Apache-2.0
// The next-hop resolver against a real kernel: two network namespaces joined by
// a veth pair; the test thread works from inside the first one.
#include <gtest/gtest.h>
#include <linux/neighbour.h>
#include <net/if.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <thread>

#include "base/errors.h"
#include "dataplane/neighbours.h"
#include "support/network_namespace.h"
#include "support/privileges.h"

namespace stickylb::testing {
namespace {

const MacAddress kMacA = MacAddress::parse("02:77:00:00:00:0a");
const MacAddress kMacB = MacAddress::parse("02:77:00:00:00:0b");

class NeighboursInNamespaces : public ::testing::Test {
protected:
    void SetUp() override {
        STICKYLB_REQUIRE_ROOT();
        b_ = "slb-test-neigh-b-" + std::to_string(getpid());
        ASSERT_EQ(run("ip netns add " + b_), 0);
        // The test thread works from inside a.
        namespace_a_.emplace("slb-test-neigh-a");
        a_ = namespace_a_->name();
        // No duplicate address detection: a solicitation sent while the link-local
        // addresses are tentative goes unanswered until the retry a second later.
        for (const auto& ns : {a_, b_})
            ASSERT_EQ(run("ip netns exec " + ns + " sysctl -qw net.ipv6.conf.default.accept_dad=0"), 0);
        ASSERT_EQ(run("ip -n " + a_ + " link add a0 address " + kMacA.to_string() + " type veth peer name b0 address " +
                      kMacB.to_string() + " netns " + b_),
                  0);
        for (const auto& [ns, dev, v4, v6] :
             {std::tuple{a_, "a0", "10.77.0.1/24", "fd77::1/64"}, std::tuple{b_, "b0", "10.77.0.2/24", "fd77::2/64"}}) {
            ASSERT_EQ(run("ip -n " + ns + " addr add " + v4 + " dev " + dev), 0);
            ASSERT_EQ(run("ip -n " + ns + " addr add " + v6 + " dev " + dev + " nodad"), 0);
            ASSERT_EQ(run("ip -n " + ns + " link set " + dev + " up"), 0);
            ASSERT_EQ(run("ip -n " + ns + " link set lo up"), 0);
        }
        // Both ends up (carrier) before any test sends: a solicitation sent earlier is
        // lost and only retried a second later.
        for (int attempt = 0; attempt < 100; ++attempt) {
            if (run("ip -n " + a_ + " link show a0 | grep -q 'state UP'") == 0 &&
                run("ip -n " + b_ + " link show b0 | grep -q 'state UP'") == 0)
                break;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        ASSERT_EQ(run("ip -n " + a_ + " route add 203.0.113.0/24 via 10.77.0.2"), 0);
        ASSERT_EQ(run("ip -n " + a_ + " -6 route add 2001:db8:77::/48 via fd77::2"), 0);

        ifindex_ = if_nametoindex("a0");
        ASSERT_NE(ifindex_, 0u);
    }
    void TearDown() override {
        namespace_a_.reset();
        if (!b_.empty())
            run("ip netns del " + b_);
    }
    static int run(const std::string& command) { return EnteredNetworkNamespace::run(command); }

    // Polls lookup() for up to 3 s.
    std::optional<MacAddress> wait_for_mac(NeighbourTable& table, const IpAddress& address) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
        while (std::chrono::steady_clock::now() < deadline) {
            if (auto mac = table.lookup(ifindex_, address))
                return mac;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return std::nullopt;
    }

    std::optional<EnteredNetworkNamespace> namespace_a_;
    std::string a_, b_;
    std::uint32_t ifindex_ = 0;
};

TEST_F(NeighboursInNamespaces, EnsureResolvingMakesTheKernelResolveAndKeepTheEntry) {
    NeighbourTable table;
    for (const char* text : {"10.77.0.2", "fd77::2"}) {
        SCOPED_TRACE(text);
        const auto b = IpAddress::parse(text);
        EXPECT_FALSE(table.lookup(ifindex_, b)) << "nothing resolved before";
        EXPECT_FALSE(table.entry(ifindex_, b)) << "no entry at all before";

        table.ensure_resolving(ifindex_, b);  // never blocks
        const auto started = std::chrono::steady_clock::now();
        const auto mac = wait_for_mac(table, b);
        const auto took = std::chrono::steady_clock::now() - started;
        RecordProperty(std::string("resolve_ms_") + text,
                       static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
        ASSERT_TRUE(mac) << "the kernel resolved the address within 3 s";
        EXPECT_EQ(*mac, kMacB);

        const auto entry = table.entry(ifindex_, b);
        ASSERT_TRUE(entry);
        EXPECT_EQ(entry->ifindex, ifindex_);
        EXPECT_TRUE(entry->state & (NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE));
        if (table.managed_supported()) {
            EXPECT_TRUE(entry->managed);
            EXPECT_EQ(run(std::string("ip neigh show ") + text + " dev a0 | grep -q managed"), 0)
                << "ip neigh shows the managed entry";
        }
        table.ensure_resolving(ifindex_, b);  // again: nothing to do, the MAC stays
        EXPECT_EQ(table.lookup(ifindex_, b), kMacB);
    }
}

TEST_F(NeighboursInNamespaces, ManagedEntriesOnKernelsThatHaveThem) {
    // managed is kernel >= 5.16; this host's kernel is what CI runs, so say which path ran.
    NeighbourTable table;
    table.ensure_resolving(ifindex_, IpAddress::parse("10.77.0.2"));
    if (!table.managed_supported())
        GTEST_SKIP() << "kernel without managed neighbour entries: the UDP trigger is the fallback";
    EXPECT_EQ(run("ip neigh show 10.77.0.2 dev a0 | grep -q managed"), 0);
}

TEST_F(NeighboursInNamespaces, AnUnansweredAddressStaysUnresolvedWithoutBlocking) {
    NeighbourTable table;
    const auto nobody = IpAddress::parse("10.77.0.99");
    const auto start = std::chrono::steady_clock::now();
    table.ensure_resolving(ifindex_, nobody);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_FALSE(table.lookup(ifindex_, nobody));
    const auto entry = table.entry(ifindex_, nobody);
    ASSERT_TRUE(entry) << "the kernel has an entry it is resolving";
    EXPECT_FALSE(entry->mac);
}

TEST_F(NeighboursInNamespaces, NextHopIsTheDestinationOnLinkAndTheGatewayBehindARoute) {
    NeighbourTable table;
    EXPECT_EQ(table.next_hop(IpAddress::parse("10.77.0.2")), std::pair(IpAddress::parse("10.77.0.2"), ifindex_));
    EXPECT_EQ(table.next_hop(IpAddress::parse("203.0.113.9")), std::pair(IpAddress::parse("10.77.0.2"), ifindex_));
    EXPECT_EQ(table.next_hop(IpAddress::parse("fd77::2")), std::pair(IpAddress::parse("fd77::2"), ifindex_));
    EXPECT_EQ(table.next_hop(IpAddress::parse("2001:db8:77::5")), std::pair(IpAddress::parse("fd77::2"), ifindex_));
    try {
        table.next_hop(IpAddress::parse("198.18.0.1"));
        FAIL() << "no route, no next hop";
    } catch (const SystemError& error) {
        EXPECT_EQ(error.error_number(), ENETUNREACH) << error.what();
        EXPECT_NE(std::string(error.what()).find("198.18.0.1"), std::string::npos) << error.what();
    }
}

}  // namespace
}  // namespace stickylb::testing

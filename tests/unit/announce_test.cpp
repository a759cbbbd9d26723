// SPDX-License-Identifier: Apache-2.0
// Which VIPs an LB host announces to its BGP speaker and why the others are not: the
// decision, the routes it leaves in the speaker's table, and the counts operators see.
#include "control/announce.h"

#include <gtest/gtest.h>
#include <netinet/in.h>

#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include "support/fake_announce.h"

namespace stickylb {
namespace {

using testing::FakeRoutes;
using testing::FakeSelfTest;

const IpAddress kWeb = IpAddress::parse("192.0.2.10");
const IpAddress kWeb6 = IpAddress::parse("2001:db8::10");

VipReadiness ready(const std::string& name, const IpAddress& address, std::uint16_t port = 80) {
    return {name, address, port, IPPROTO_TCP, /*backend_passing=*/true, /*backends_checked=*/true};
}

class AnnouncerTest : public ::testing::Test {
protected:
    FakeRoutes routes_;
    FakeSelfTest self_test_;
    Announcer announcer_{routes_, self_test_};

    AnnounceReason reason_of(const std::string& vip) const {
        for (const VipAnnouncement& announcement : announcer_.state())
            if (announcement.vip == vip)
                return announcement.reason;
        ADD_FAILURE() << "no announcement state for " << vip;
        return AnnounceReason::route_error;
    }
};

TEST_F(AnnouncerTest, AServableVipIsAnnouncedOnceAndStaysWithoutRewrites) {
    const auto changed = announcer_.apply({ready("web", kWeb), ready("web6", kWeb6)});
    EXPECT_EQ(changed.size(), 2u);
    EXPECT_EQ(routes_.routes, (std::set{kWeb, kWeb6}));
    EXPECT_EQ(reason_of("web"), AnnounceReason::announced);
    const int writes = routes_.writes;
    EXPECT_TRUE(announcer_.apply({ready("web", kWeb), ready("web6", kWeb6)}).empty());
    EXPECT_EQ(routes_.writes, writes) << "a steady state must not touch the speaker's table";
    EXPECT_EQ(announcer_.state()[0].changes, 1u);
}

TEST_F(AnnouncerTest, EachReasonWithdrawsTheVipAndSaysWhy) {
    announcer_.apply({ready("web", kWeb)});
    ASSERT_TRUE(routes_.routes.contains(kWeb));

    VipReadiness down = ready("web", kWeb);
    down.backend_passing = false;
    announcer_.apply({down});
    EXPECT_EQ(reason_of("web"), AnnounceReason::no_backend_passing);
    EXPECT_FALSE(routes_.routes.contains(kWeb));

    announcer_.apply({ready("web", kWeb)});
    EXPECT_TRUE(routes_.routes.contains(kWeb));
    self_test_.not_forwarding.insert(kWeb);
    announcer_.apply({ready("web", kWeb)});
    EXPECT_EQ(reason_of("web"), AnnounceReason::data_plane_not_forwarding);
    EXPECT_FALSE(routes_.routes.contains(kWeb));

    self_test_.not_forwarding.clear();
    self_test_.is_attached = false;
    announcer_.apply({ready("web", kWeb)});
    EXPECT_EQ(reason_of("web"), AnnounceReason::data_plane_detached);
    EXPECT_FALSE(routes_.routes.contains(kWeb));

    self_test_.is_attached = true;
    announcer_.apply({ready("web", kWeb)});
    EXPECT_EQ(reason_of("web"), AnnounceReason::announced);
    EXPECT_EQ(announcer_.state()[0].changes, 5u)
        << "every add and every remove counts once; detached while withdrawn is none";
}

TEST_F(AnnouncerTest, ADetachedProgramIsNotProbed) {
    self_test_.is_attached = false;
    announcer_.apply({ready("web", kWeb)});
    EXPECT_EQ(self_test_.probes, 0);
}

TEST_F(AnnouncerTest, ARestartBeforeTheFirstChecksKeepsTheRouteItFoundAndAddsNone) {
    routes_.routes.insert(kWeb);  // left by the stickylbd that stopped
    VipReadiness pending = ready("web", kWeb);
    pending.backend_passing = false;
    pending.backends_checked = false;
    VipReadiness pending6 = pending;
    pending6.vip = "web6";
    pending6.address = kWeb6;
    announcer_.apply({pending, pending6});
    EXPECT_EQ(routes_.routes, std::set{kWeb}) << "kept, and nothing announced before a check passed";
    EXPECT_EQ(reason_of("web"), AnnounceReason::checks_pending);
    EXPECT_TRUE(announcer_.state()[0].route_present);
    EXPECT_FALSE(announcer_.state()[1].route_present);

    announcer_.apply({ready("web", kWeb), ready("web6", kWeb6)});
    EXPECT_EQ(routes_.routes, (std::set{kWeb, kWeb6}));
    EXPECT_EQ(announcer_.state()[0].changes, 0u) << "the route never went: no change";
}

TEST_F(AnnouncerTest, AnAddressStaysAnnouncedWhileAnyOfItsVipsCanBeServed) {
    VipReadiness https = ready("https", kWeb, 443);
    https.backend_passing = false;
    announcer_.apply({ready("http", kWeb), https});
    EXPECT_TRUE(routes_.routes.contains(kWeb));
    EXPECT_EQ(reason_of("https"), AnnounceReason::no_backend_passing);
    EXPECT_TRUE(announcer_.state()[1].route_present) << "the route is the address's, and http keeps it";

    VipReadiness http = ready("http", kWeb);
    http.backend_passing = false;
    announcer_.apply({http, https});
    EXPECT_TRUE(routes_.routes.empty());
}

TEST_F(AnnouncerTest, RoutesOfVipsNoLongerConfiguredAreRemoved) {
    routes_.routes.insert(IpAddress::parse("198.51.100.7"));  // a VIP of an older config
    announcer_.apply({ready("web", kWeb), ready("web6", kWeb6)});
    announcer_.apply({ready("web", kWeb)});
    EXPECT_EQ(routes_.routes, std::set{kWeb});
    EXPECT_EQ(announcer_.state().size(), 1u);
}

TEST_F(AnnouncerTest, ARouteThatCannotBeWrittenIsARouteErrorAndIsRetried) {
    routes_.broken = true;
    const auto changed = announcer_.apply({ready("web", kWeb)});
    ASSERT_EQ(changed.size(), 1u);
    EXPECT_EQ(changed[0].reason, AnnounceReason::route_error);
    EXPECT_FALSE(changed[0].route_present);

    routes_.broken = false;
    announcer_.apply({ready("web", kWeb)});
    EXPECT_EQ(reason_of("web"), AnnounceReason::announced);
    EXPECT_TRUE(routes_.routes.contains(kWeb));
}

TEST(AnnounceReasons, NamesAreUniqueSnakeCaseAndDescribed) {
    std::set<std::string_view> names;
    for (const AnnounceReason reason : all_announce_reasons()) {
        const std::string_view name = to_string(reason);
        EXPECT_TRUE(names.insert(name).second) << name;
        EXPECT_EQ(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_"), std::string_view::npos) << name;
        EXPECT_FALSE(description(reason).empty()) << name;
    }
    EXPECT_EQ(names.size(), 9u);
}

TEST(AnnounceReasons, EveryReasonIsDocumentedInTheManPageAndTheScaleOutGuide) {
    for (const char* doc : {"docs/man/stickylb.8", "docs/scale-out.md"}) {
        std::ifstream file(std::string(STICKYLB_SOURCE_DIR) + "/" + doc);
        ASSERT_TRUE(file) << doc;
        std::string text(std::istreambuf_iterator<char>(file), {});
        for (const AnnounceReason reason : all_announce_reasons())
            EXPECT_NE(text.find(std::string(to_string(reason))), std::string::npos)
                << to_string(reason) << " in " << doc;
    }
}

TEST(ProbeFrame, IsATcpSynFromADocumentationAddressToTheVip) {
    const MacAddress mac = MacAddress::parse("02:00:00:00:00:01");
    const auto v4 = probe_frame(mac, kWeb, 80, IPPROTO_TCP);
    ASSERT_EQ(v4.size(), 54u);
    EXPECT_EQ(v4[12], 0x08);
    EXPECT_EQ(v4[23], IPPROTO_TCP);
    EXPECT_EQ((std::vector<std::uint8_t>(v4.begin() + 26, v4.begin() + 30)), (std::vector<std::uint8_t>{192, 0, 2, 1}));
    EXPECT_EQ((std::vector<std::uint8_t>(v4.begin() + 30, v4.begin() + 34)),
              (std::vector<std::uint8_t>{192, 0, 2, 10}));
    EXPECT_EQ(v4[34 + 13], 0x02) << "SYN";
    // The IPv4 header checksum of a valid header sums to 0xffff.
    std::uint32_t sum = 0;
    for (int i = 14; i < 34; i += 2)
        sum += static_cast<std::uint32_t>(v4[i] << 8 | v4[i + 1]);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    EXPECT_EQ(sum, 0xffffu);

    const auto v6 = probe_frame(mac, kWeb6, 53, IPPROTO_UDP);
    ASSERT_EQ(v6.size(), 62u);
    EXPECT_EQ(v6[12], 0x86);
    EXPECT_EQ(v6[20], IPPROTO_UDP);
}

TEST_F(AnnouncerTest, AHostWhoseConfigDiffersFromItsFleetsWithdrawsEveryVipAndSaysWhy) {
    announcer_.apply({ready("web", kWeb), ready("web6", kWeb6)});
    ASSERT_EQ(routes_.routes.size(), 2u);
    announcer_.apply({ready("web", kWeb), ready("web6", kWeb6)}, FleetStanding::differs);
    EXPECT_TRUE(routes_.routes.empty());
    EXPECT_EQ(reason_of("web"), AnnounceReason::config_differs);
    EXPECT_EQ(reason_of("web6"), AnnounceReason::config_differs);

    announcer_.apply({ready("web", kWeb), ready("web6", kWeb6)}, FleetStanding::agrees);
    EXPECT_EQ(routes_.routes.size(), 2u) << "announced again once its config is the fleet's";
}

TEST_F(AnnouncerTest, UntilThePeersExceptionsAreLoadedAHostKeepsTheRoutesItFoundAndAddsNone) {
    routes_.routes.insert(kWeb);  // left by the stickylbd that stopped
    announcer_.apply({ready("web", kWeb), ready("web6", kWeb6)}, FleetStanding::agrees, /*peers_loaded=*/false);
    EXPECT_EQ(routes_.routes, std::set{kWeb}) << "a joining host must not take flows it cannot place";
    EXPECT_EQ(reason_of("web"), AnnounceReason::exceptions_pending);
    EXPECT_EQ(reason_of("web6"), AnnounceReason::exceptions_pending);
    VipReadiness down = ready("web", kWeb);
    down.backend_passing = false;
    announcer_.apply({down}, FleetStanding::agrees, false);
    EXPECT_TRUE(routes_.routes.empty()) << "a VIP it cannot serve goes without waiting";
    announcer_.apply({ready("web", kWeb), ready("web6", kWeb6)}, FleetStanding::agrees, true);
    EXPECT_EQ(routes_.routes.size(), 2u);
}

TEST_F(AnnouncerTest, UntilTheFleetIsHeardFromAHostKeepsTheRoutesItFoundAndAddsNone) {
    routes_.routes.insert(kWeb);  // left by the stickylbd that stopped
    announcer_.apply({ready("web", kWeb), ready("web6", kWeb6)}, FleetStanding::pending);
    EXPECT_EQ(routes_.routes, std::set{kWeb}) << "a new host must not announce before it knows its peers agree";
    EXPECT_EQ(reason_of("web6"), AnnounceReason::fleet_pending);

    VipReadiness down = ready("web", kWeb);
    down.backend_passing = false;
    announcer_.apply({down}, FleetStanding::pending);
    EXPECT_TRUE(routes_.routes.empty()) << "a VIP it cannot serve goes without waiting for the fleet";
    EXPECT_EQ(reason_of("web"), AnnounceReason::no_backend_passing);

    announcer_.apply({ready("web", kWeb)}, FleetStanding::alone);
    EXPECT_EQ(routes_.routes, std::set{kWeb}) << "with memcached gone, a host announces on its own checks";
}

}  // namespace
}  // namespace stickylb

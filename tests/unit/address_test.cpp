// SPDX-License-Identifier: Apache-2.0
// Addresses as users write them and as the maps store them.
#include <gtest/gtest.h>

#include "base/address.h"

namespace stickylb {
namespace {

TEST(IpAddress, ParsesBothFamiliesAndPrintsThemBack) {
    const auto v4 = IpAddress::parse("192.0.2.10");
    EXPECT_TRUE(v4.is_v4());
    EXPECT_EQ(v4.to_string(), "192.0.2.10");
    const auto v6 = IpAddress::parse("2001:DB8::10");
    EXPECT_EQ(v6.family(), STICKYLB_FAMILY_IPV6);
    EXPECT_EQ(v6.to_string(), "2001:db8::10");
}

TEST(IpAddress, RejectsWhatIsNotAnAddressNamingIt) {
    for (const char* bad : {"", "192.0.2", "192.0.2.256", "10.0.0.1/24", "fd00::1::2", "example.com", " 10.0.0.1"}) {
        try {
            IpAddress::parse(bad);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const std::invalid_argument& error) {
            EXPECT_NE(std::string(error.what()).find(std::string("'") + bad + "'"), std::string::npos);
        }
    }
}

TEST(IpAddress, AbiLayoutKeepsV4InTheFirstWordAndZeroesTheRest) {
    const auto abi = IpAddress::parse("192.0.2.10").to_abi();
    EXPECT_EQ(abi.bytes[0], 192);
    EXPECT_EQ(abi.bytes[3], 10);
    for (int i = 4; i < 16; ++i)
        EXPECT_EQ(abi.bytes[i], 0) << "byte " << i << " must be zero: map keys compare all 16 bytes";
    EXPECT_EQ(IpAddress::from_abi(abi, STICKYLB_FAMILY_IPV4), IpAddress::parse("192.0.2.10"));
}

TEST(IpAddress, MaskingKeepsThePrefixOnly) {
    EXPECT_EQ(IpAddress::parse("198.51.100.77").masked(24), IpAddress::parse("198.51.100.0"));
    EXPECT_EQ(IpAddress::parse("198.51.100.77").masked(25), IpAddress::parse("198.51.100.0"));
    EXPECT_EQ(IpAddress::parse("198.51.100.200").masked(25), IpAddress::parse("198.51.100.128"));
    EXPECT_EQ(IpAddress::parse("198.51.100.77").masked(32), IpAddress::parse("198.51.100.77"));
    EXPECT_EQ(IpAddress::parse("198.51.100.77").masked(0), IpAddress::parse("0.0.0.0"));
    EXPECT_EQ(IpAddress::parse("2001:db8:aaaa:bbbb::1").masked(48), IpAddress::parse("2001:db8:aaaa::"));
    EXPECT_EQ(IpAddress::parse("2001:db8::1").masked(200), IpAddress::parse("2001:db8::1"));
}

TEST(MacAddress, ParsesAndRejects) {
    EXPECT_EQ(MacAddress::parse("02:89:00:00:00:1B").to_string(), "02:89:00:00:00:1b");
    EXPECT_THROW(MacAddress::parse("02:89:00:00:00"), std::invalid_argument);
    EXPECT_THROW(MacAddress::parse("02:89:00:00:00:1b:ff"), std::invalid_argument);
    EXPECT_THROW(MacAddress::parse("zz:89:00:00:00:1b"), std::invalid_argument);
}

}  // namespace
}  // namespace stickylb

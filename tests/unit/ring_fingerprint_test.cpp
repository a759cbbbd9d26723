// SPDX-License-Identifier: Apache-2.0
// The ring fingerprint LB hosts compare: it names what each slot forwards to, not
// the map index this host happened to give a backend.
#include "control/ring_fingerprint.h"

#include <gtest/gtest.h>

#include <vector>

namespace stickylb {
namespace {

const IpAddress kA = IpAddress::parse("10.0.0.1");
const IpAddress kB = IpAddress::parse("fd00::2");

TEST(RingFingerprint, TheSameBackendsUnderOtherIndexesGiveTheSameFingerprint) {
    const std::vector<std::uint32_t> here{1, 2, 1, 2, 2};
    const std::vector<std::uint32_t> there{7, 3, 7, 3, 3};
    EXPECT_EQ(ring_fingerprint(here, {{1, kA}, {2, kB}}), ring_fingerprint(there, {{7, kA}, {3, kB}}));
}

TEST(RingFingerprint, AnySlotPointingElsewhereChangesIt) {
    const std::vector<std::uint32_t> ring{1, 2, 1, 2, 2};
    std::vector<std::uint32_t> moved = ring;
    moved[4] = 1;
    EXPECT_NE(ring_fingerprint(ring, {{1, kA}, {2, kB}}), ring_fingerprint(moved, {{1, kA}, {2, kB}}));
    EXPECT_NE(ring_fingerprint(ring, {{1, kA}, {2, kB}}), ring_fingerprint(ring, {{1, kB}, {2, kA}}));
}

TEST(RingFingerprint, IsTheSha256OfOneLinePerSlotInLowercaseHex) {
    // printf -- '-\n' | sha256sum: a ring of one empty slot.
    EXPECT_EQ(ring_fingerprint(std::vector<std::uint32_t>{0}, {}),
              "61d1954b9aba0c9aedb8d1338804e817c7262cfc36da94161dab8e3ed7a3a43a");
    EXPECT_EQ(ring_fingerprint(std::vector<std::uint32_t>{9}, {{1, kA}}),
              ring_fingerprint(std::vector<std::uint32_t>{0}, {}))
        << "an index of no backend is an empty slot";
}

}  // namespace
}  // namespace stickylb

// SPDX-License-Identifier: Apache-2.0
#include "dataplane/maglev.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace stickylb {
namespace {

constexpr std::uint64_t kSeed = 0x5eed'cafe'f00d'0001ULL;
constexpr std::uint32_t kRingSize = 65537;
constexpr std::uint32_t kLargeRingSize = 655373;
constexpr int kClientCount = 10000;

std::vector<MaglevBackend> make_backends(std::size_t count, std::uint32_t weight = 1) {
    std::vector<MaglevBackend> backends;
    for (std::size_t i = 0; i < count; ++i) {
        backends.push_back({.name = "10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ":80",
                            .index = static_cast<std::uint32_t>(i + 1),
                            .weight = weight,
                            .in_service = true});
    }
    return backends;
}

// Slot counts indexed by backend index; entry kNoBackend counts empty slots.
std::vector<std::size_t> slot_counts(const std::vector<std::uint32_t>& ring, std::size_t backend_count) {
    std::vector<std::size_t> counts(backend_count + 1, 0);
    for (std::uint32_t index : ring) {
        ++counts.at(index);
    }
    return counts;
}

// Stands in for the data plane's flow hash: a fixed pseudo-random slot per client.
std::uint32_t client_slot(int client, std::uint32_t ring_size) {
    std::uint64_t x = static_cast<std::uint64_t>(client) + 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return static_cast<std::uint32_t>((x ^ (x >> 31)) % ring_size);
}

std::vector<std::size_t> client_counts(const std::vector<std::uint32_t>& ring, std::size_t backend_count) {
    std::vector<std::size_t> counts(backend_count + 1, 0);
    for (int client = 0; client < kClientCount; ++client) {
        ++counts.at(ring[client_slot(client, static_cast<std::uint32_t>(ring.size()))]);
    }
    return counts;
}

void expect_rejected(const std::vector<MaglevBackend>& backends, std::uint32_t ring_size,
                     std::string_view expected_text) {
    try {
        build_maglev_ring(backends, ring_size, kSeed);
        ADD_FAILURE() << "expected std::invalid_argument mentioning '" << expected_text << "'";
    } catch (const std::invalid_argument& error) {
        EXPECT_NE(std::string_view(error.what()).find(expected_text), std::string_view::npos) << error.what();
    }
}

TEST(IsPrime, ClassifiesSmallAndLargeNumbers) {
    for (std::uint32_t not_prime : {0u, 1u, 4u, 9u, 25u, 49u, 65535u, 65536u, 4294967295u}) {
        EXPECT_FALSE(is_prime(not_prime)) << not_prime;
    }
    for (std::uint32_t prime : {2u, 3u, 5u, 7u, 251u, 65537u, 655373u, 4294967291u}) {
        EXPECT_TRUE(is_prime(prime)) << prime;
    }
}

TEST(MaglevBalance, EqualWeightSlotCountsWithinOnePercentOfMean) {
    const auto backends = make_backends(100);
    const auto counts = slot_counts(build_maglev_ring(backends, kRingSize, kSeed), backends.size());

    const double mean = static_cast<double>(kRingSize) / static_cast<double>(backends.size());
    EXPECT_EQ(counts[kNoBackend], 0u);
    for (const MaglevBackend& backend : backends) {
        EXPECT_NEAR(static_cast<double>(counts[backend.index]), mean, 0.01 * mean) << backend.name;
    }
}

TEST(MaglevBalance, LargeRingWithThousandBackendsIsBalanced) {
    const auto backends = make_backends(1000);
    const auto counts = slot_counts(build_maglev_ring(backends, kLargeRingSize, kSeed), backends.size());

    const double mean = static_cast<double>(kLargeRingSize) / static_cast<double>(backends.size());
    EXPECT_EQ(counts[kNoBackend], 0u);
    for (const MaglevBackend& backend : backends) {
        EXPECT_NEAR(static_cast<double>(counts[backend.index]), mean, 0.01 * mean) << backend.name;
    }
}

TEST(MaglevBalance, SimulatedClientsSpreadEvenly) {
    const auto backends = make_backends(100);
    const auto counts = client_counts(build_maglev_ring(backends, kRingSize, kSeed), backends.size());

    // 100 clients expected per backend with a standard deviation of about 10: a 50%
    // margin is five deviations, loose enough to hold for any sound hash.
    const double mean = static_cast<double>(kClientCount) / static_cast<double>(backends.size());
    for (const MaglevBackend& backend : backends) {
        EXPECT_NEAR(static_cast<double>(counts[backend.index]), mean, 0.5 * mean) << backend.name;
    }
}

class MaglevRemoveOne : public testing::TestWithParam<std::size_t> {};

TEST_P(MaglevRemoveOne, OnlyTheRemovedBackendsSlotsAndClientsMove) {
    const std::size_t backend_count = GetParam();
    auto backends = make_backends(backend_count);
    const auto ring_all_up = build_maglev_ring(backends, kRingSize, kSeed);
    MaglevBackend& removed = backends[backend_count / 2];
    removed.in_service = false;
    const auto ring_one_down = build_maglev_ring(backends, kRingSize, kSeed);

    for (std::uint32_t slot = 0; slot < kRingSize; ++slot) {
        if (ring_all_up[slot] == removed.index) {
            ASSERT_NE(ring_one_down[slot], removed.index) << "slot " << slot;
            ASSERT_NE(ring_one_down[slot], kNoBackend) << "slot " << slot;
        } else {
            ASSERT_EQ(ring_one_down[slot], ring_all_up[slot]) << "slot " << slot;
        }
    }

    int moved_clients = 0;
    int clients_on_removed = 0;
    for (int client = 0; client < kClientCount; ++client) {
        const std::uint32_t slot = client_slot(client, kRingSize);
        const bool was_on_removed = ring_all_up[slot] == removed.index;
        clients_on_removed += was_on_removed ? 1 : 0;
        if (ring_one_down[slot] != ring_all_up[slot]) {
            ++moved_clients;
            EXPECT_TRUE(was_on_removed) << "client " << client << " moved off a healthy backend";
        }
    }
    EXPECT_EQ(moved_clients, clients_on_removed);
    // Binomial around kClientCount / N; half of the expectation either way is at least
    // five standard deviations for N = 10 and N = 100.
    const double expected_fraction = 1.0 / static_cast<double>(backend_count);
    EXPECT_NEAR(static_cast<double>(moved_clients) / kClientCount, expected_fraction, 0.5 * expected_fraction);
}

INSTANTIATE_TEST_SUITE_P(BackendCounts, MaglevRemoveOne, testing::Values(10, 100));

TEST(MaglevFailover, OrphanedSlotsSpreadEvenlyOverSurvivors) {
    auto backends = make_backends(10);
    const auto ring_all_up = build_maglev_ring(backends, kRingSize, kSeed);
    backends[3].in_service = false;
    const auto ring_one_down = build_maglev_ring(backends, kRingSize, kSeed);

    std::vector<std::size_t> orphans_taken(backends.size() + 1, 0);
    std::size_t orphan_count = 0;
    for (std::uint32_t slot = 0; slot < kRingSize; ++slot) {
        if (ring_all_up[slot] == backends[3].index) {
            ++orphan_count;
            ++orphans_taken.at(ring_one_down[slot]);
        }
    }
    // About 6550 orphans over 9 survivors: ~728 each, standard deviation ~26.
    const double fair_share = static_cast<double>(orphan_count) / static_cast<double>(backends.size() - 1);
    for (const MaglevBackend& backend : backends) {
        if (backend.in_service) {
            EXPECT_NEAR(static_cast<double>(orphans_taken[backend.index]), fair_share, 0.15 * fair_share)
                << backend.name;
        }
    }
}

TEST(MaglevFailover, TwoDownThenOneBackRestoresItsSlots) {
    auto backends = make_backends(10);
    const auto ring_all_up = build_maglev_ring(backends, kRingSize, kSeed);
    MaglevBackend& stays_down = backends[2];
    MaglevBackend& comes_back = backends[7];

    stays_down.in_service = false;
    comes_back.in_service = false;
    const auto ring_two_down = build_maglev_ring(backends, kRingSize, kSeed);
    comes_back.in_service = true;
    const auto ring_one_back = build_maglev_ring(backends, kRingSize, kSeed);

    for (std::uint32_t slot = 0; slot < kRingSize; ++slot) {
        const std::uint32_t base_owner = ring_all_up[slot];
        if (base_owner == stays_down.index) {
            // The still-down backend's orphans either stay put or move to the returning one.
            ASSERT_NE(ring_one_back[slot], stays_down.index) << "slot " << slot;
            if (ring_one_back[slot] != ring_two_down[slot]) {
                ASSERT_EQ(ring_one_back[slot], comes_back.index) << "slot " << slot;
            }
        } else if (base_owner == comes_back.index) {
            ASSERT_EQ(ring_one_back[slot], comes_back.index) << "slot " << slot;
        } else {
            ASSERT_EQ(ring_two_down[slot], base_owner) << "slot " << slot;
            ASSERT_EQ(ring_one_back[slot], base_owner) << "slot " << slot;
        }
    }
}

TEST(MaglevWeights, SharesProportionalToWeight) {
    std::vector<MaglevBackend> backends = make_backends(4);
    for (std::size_t i = 0; i < backends.size(); ++i) {
        backends[i].weight = static_cast<std::uint32_t>(i + 1);
    }
    const auto counts = slot_counts(build_maglev_ring(backends, kRingSize, kSeed), backends.size());

    const double slots_per_weight = kRingSize / 10.0;
    for (const MaglevBackend& backend : backends) {
        const double expected = slots_per_weight * backend.weight;
        EXPECT_NEAR(static_cast<double>(counts[backend.index]), expected, 0.01 * expected) << backend.name;
    }
}

TEST(MaglevWeights, WeightChangeMovesShareToNewProportion) {
    std::vector<MaglevBackend> backends = make_backends(4);
    for (std::size_t i = 0; i < backends.size(); ++i) {
        backends[i].weight = static_cast<std::uint32_t>(i + 1);
    }
    backends[1].weight = 6;  // weights now 1, 6, 3, 4
    const auto counts = slot_counts(build_maglev_ring(backends, kRingSize, kSeed), backends.size());

    const double slots_per_weight = kRingSize / 14.0;
    for (const MaglevBackend& backend : backends) {
        const double expected = slots_per_weight * backend.weight;
        EXPECT_NEAR(static_cast<double>(counts[backend.index]), expected, 0.01 * expected) << backend.name;
    }
}

TEST(MaglevWeights, OrphansFollowWeightsOfSurvivors) {
    std::vector<MaglevBackend> backends = make_backends(5);
    for (std::size_t i = 0; i < 4; ++i) {
        backends[i].weight = static_cast<std::uint32_t>(i + 1);
    }
    backends[4].weight = 10;
    backends[4].in_service = false;
    const auto ring = build_maglev_ring(backends, kRingSize, kSeed);
    const auto counts = slot_counts(ring, backends.size());

    EXPECT_EQ(counts[backends[4].index], 0u);
    // Every slot now belongs to a survivor, so overall shares follow weights 1:2:3:4;
    // the ~32768 reassigned slots add binomial noise of at most ~90 slots per backend.
    const double slots_per_weight = kRingSize / 10.0;
    for (std::size_t i = 0; i < 4; ++i) {
        const double expected = slots_per_weight * backends[i].weight;
        EXPECT_NEAR(static_cast<double>(counts[backends[i].index]), expected, 0.05 * expected) << backends[i].name;
    }
}

TEST(MaglevWeights, ZeroWeightBackendGetsNoSlots) {
    std::vector<MaglevBackend> backends = make_backends(5);
    backends[2].weight = 0;
    const auto counts = slot_counts(build_maglev_ring(backends, kRingSize, kSeed), backends.size());

    EXPECT_EQ(counts[backends[2].index], 0u);
    EXPECT_EQ(counts[kNoBackend], 0u);
}

TEST(MaglevDeterminism, SameInputAndSeedGiveIdenticalRing) {
    auto backends = make_backends(100);
    backends[5].in_service = false;
    EXPECT_EQ(build_maglev_ring(backends, kRingSize, kSeed), build_maglev_ring(backends, kRingSize, kSeed));
}

TEST(MaglevDeterminism, DifferentSeedGivesDifferentRing) {
    const auto backends = make_backends(100);
    const auto ring = build_maglev_ring(backends, kRingSize, kSeed);
    const auto reseeded = build_maglev_ring(backends, kRingSize, kSeed + 1);

    std::size_t differing_slots = 0;
    for (std::uint32_t slot = 0; slot < kRingSize; ++slot) {
        differing_slots += ring[slot] != reseeded[slot] ? 1 : 0;
    }
    // Unrelated rings over 100 backends agree on about 1% of slots.
    EXPECT_GT(differing_slots, kRingSize * 9 / 10);
}

TEST(MaglevDeterminism, InputOrderDoesNotMatter) {
    auto backends = make_backends(100);
    backends[17].in_service = false;
    backends[42].weight = 3;
    const auto ring = build_maglev_ring(backends, kRingSize, kSeed);

    std::mt19937 shuffler(12345);
    for (int attempt = 0; attempt < 3; ++attempt) {
        std::shuffle(backends.begin(), backends.end(), shuffler);
        EXPECT_EQ(build_maglev_ring(backends, kRingSize, kSeed), ring);
    }
}

TEST(MaglevDeterminism, PlacementFollowsNamesNotIndexes) {
    auto backends = make_backends(50);
    const auto ring = build_maglev_ring(backends, kRingSize, kSeed);
    auto renumbered = backends;
    for (MaglevBackend& backend : renumbered) {
        backend.index = 1000 - backend.index;
    }
    const auto renumbered_ring = build_maglev_ring(renumbered, kRingSize, kSeed);

    for (std::uint32_t slot = 0; slot < kRingSize; ++slot) {
        ASSERT_EQ(renumbered_ring[slot], 1000 - ring[slot]) << "slot " << slot;
    }
}

TEST(MaglevErrors, RingSizeNotPrime) {
    expect_rejected(make_backends(3), 65536, "not prime");
    expect_rejected(make_backends(3), 1, "not prime");
    expect_rejected({}, 0, "not prime");
}

TEST(MaglevErrors, RingSmallerThanWeightedBackendCount) { expect_rejected(make_backends(3), 2, "smaller than"); }

TEST(MaglevErrors, DuplicateName) {
    auto backends = make_backends(3);
    backends[2].name = backends[0].name;
    expect_rejected(backends, kRingSize, "duplicate backend name");
}

TEST(MaglevErrors, DuplicateIndex) {
    auto backends = make_backends(3);
    backends[2].index = backends[0].index;
    expect_rejected(backends, kRingSize, "share index");
}

TEST(MaglevErrors, IndexZeroIsReserved) {
    auto backends = make_backends(3);
    backends[1].index = kNoBackend;
    expect_rejected(backends, kRingSize, "index 0");
}

TEST(MaglevEdgeCases, AllDownGivesNoBackendEverywhere) {
    auto backends = make_backends(10);
    for (MaglevBackend& backend : backends) {
        backend.in_service = false;
    }
    const auto ring = build_maglev_ring(backends, kRingSize, kSeed);
    ASSERT_EQ(ring.size(), kRingSize);
    EXPECT_EQ(std::ranges::count(ring, kNoBackend), kRingSize);
}

TEST(MaglevEdgeCases, OnlyZeroWeightInServiceGivesNoBackendEverywhere) {
    auto backends = make_backends(2);
    backends[0].in_service = false;
    backends[1].weight = 0;
    EXPECT_EQ(std::ranges::count(build_maglev_ring(backends, kRingSize, kSeed), kNoBackend), kRingSize);
}

TEST(MaglevEdgeCases, NoBackendsGivesNoBackendEverywhere) {
    const auto ring = build_maglev_ring({}, kRingSize, kSeed);
    ASSERT_EQ(ring.size(), kRingSize);
    EXPECT_EQ(std::ranges::count(ring, kNoBackend), kRingSize);
}

TEST(MaglevEdgeCases, SingleBackendOwnsEverySlot) {
    const auto backends = make_backends(1);
    const auto ring = build_maglev_ring(backends, kRingSize, kSeed);
    ASSERT_EQ(ring.size(), kRingSize);
    EXPECT_EQ(std::ranges::count(ring, backends[0].index), kRingSize);
}

TEST(MaglevEdgeCases, RingAsSmallAsBackendCountGivesEachOneSlot) {
    const auto backends = make_backends(7);
    const auto counts = slot_counts(build_maglev_ring(backends, 7, kSeed), backends.size());
    for (const MaglevBackend& backend : backends) {
        EXPECT_EQ(counts[backend.index], 1u) << backend.name;
    }
}

// The reconciler keeps one MaglevRing per VIP: whatever sequence of changes it sees, each
// ring it writes must be the one a fresh build gives (another LB host, a restart).
TEST(MaglevRingUpdates, EveryUpdateEqualsAFreshBuildAndRepeatsGiveNothing) {
    MaglevRing cached;
    auto backends = make_backends(20);
    const auto expect_fresh = [&](const char* step) {
        const auto ring = cached.update(backends, kRingSize, kSeed);
        ASSERT_TRUE(ring.has_value()) << step;
        EXPECT_EQ(*ring, build_maglev_ring(backends, kRingSize, kSeed)) << step;
        EXPECT_FALSE(cached.update(backends, kRingSize, kSeed).has_value()) << step << ": nothing changed";
    };
    expect_fresh("first build");
    backends[3].in_service = false;
    expect_fresh("one down");
    backends[7].in_service = false;
    expect_fresh("two down");
    backends[3].in_service = true;
    expect_fresh("one back");
    backends[5].index = 99;
    expect_fresh("renumbered");
    backends[9].weight = 3;
    expect_fresh("weight change");
    backends.push_back({.name = "added", .index = 100, .weight = 1, .in_service = true});
    expect_fresh("backend added");
    std::ranges::reverse(backends);
    EXPECT_FALSE(cached.update(backends, kRingSize, kSeed).has_value()) << "input order does not matter";
    for (MaglevBackend& backend : backends)
        backend.in_service = false;
    expect_fresh("all down");
    backends[0].in_service = true;
    expect_fresh("one up again");
    const auto other_seed = cached.update(backends, kRingSize, kSeed + 1);
    ASSERT_TRUE(other_seed.has_value());
    EXPECT_EQ(*other_seed, build_maglev_ring(backends, kRingSize, kSeed + 1));
}

TEST(MaglevRingUpdates, FailedUpdateKeepsTheLastRing) {
    MaglevRing cached;
    auto backends = make_backends(5);
    ASSERT_TRUE(cached.update(backends, kRingSize, kSeed).has_value());
    auto duplicate = backends;
    duplicate.push_back(duplicate.front());
    EXPECT_THROW(cached.update(duplicate, kRingSize, kSeed), std::invalid_argument);
    EXPECT_FALSE(cached.update(backends, kRingSize, kSeed).has_value());
}

}  // namespace
}  // namespace stickylb

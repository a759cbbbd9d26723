// SPDX-License-Identifier: Apache-2.0
#include "dataplane/maglev.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string_view>

namespace stickylb {
namespace {

// Marks a base-table slot no backend has claimed yet; distinct from every backend rank.
constexpr std::uint32_t kUnclaimedSlot = std::numeric_limits<std::uint32_t>::max();

constexpr std::uint64_t kGoldenGamma = 0x9e3779b97f4a7c15ULL;

// splitmix64 finalizer: a bijection with full avalanche, so nearby inputs (consecutive
// slots, names differing in one byte) give unrelated outputs.
constexpr std::uint64_t mix64(std::uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

// Bytes are assembled little-endian by hand rather than memcpy'd so that every host,
// whatever its byte order, derives the same ring from the same configuration.
// The length goes into the initial state, which makes zero-padding the tail unambiguous.
std::uint64_t hash_name(std::string_view name, std::uint64_t seed) {
    std::uint64_t state = mix64(seed + kGoldenGamma * (name.size() + 1));
    for (std::size_t chunk_start = 0; chunk_start < name.size(); chunk_start += 8) {
        const std::size_t chunk_end = std::min(name.size(), chunk_start + 8);
        std::uint64_t chunk = 0;
        for (std::size_t i = chunk_end; i-- > chunk_start;) {
            chunk = (chunk << 8) | static_cast<unsigned char>(name[i]);
        }
        state = mix64(state ^ chunk);
    }
    return state;
}

// Offset, skip and rendezvous key are successive splitmix64 outputs from the backend's
// identity, so they are independent of each other.
std::uint64_t derive(std::uint64_t identity, std::uint64_t stream) { return mix64(identity + stream * kGoldenGamma); }

// Where a backend is in its Maglev permutation (offset + k * skip) mod ring_size.
// Kept in 64 bits because position + skip can exceed 2^32 for large rings.
struct PermutationCursor {
    std::uint64_t position;
    std::uint64_t skip;
};

// One backend's place in the weighted turn order (stride scheduling): the backend whose
// next turn is due soonest, (turns_taken + 1) / weight, goes next. Unlike a per-round
// credit sweep, the cost per slot is O(log n) however skewed the weights are, and each
// backend's slot count stays within about one slot of its exact weighted share.
struct TurnQueueEntry {
    std::uint64_t turns_taken;
    std::uint64_t weight;
    std::uint32_t rank;
};

// Heap order: "a is due later than b". Cross-multiplied to stay exact in integers;
// (turns + 1) <= 2^32 and weight < 2^32, so the products fit in 64 bits.
// Ties go to the lower rank (name order) to keep the ring independent of input order.
bool due_later(const TurnQueueEntry& a, const TurnQueueEntry& b) {
    const std::uint64_t a_due = (a.turns_taken + 1) * b.weight;
    const std::uint64_t b_due = (b.turns_taken + 1) * a.weight;
    return a_due != b_due ? a_due > b_due : a.rank > b.rank;
}

void claim_next_free_slot(PermutationCursor& cursor, std::vector<std::uint32_t>& base_table, std::uint32_t rank) {
    const std::uint64_t ring_size = base_table.size();
    auto advance = [&] {
        cursor.position += cursor.skip;
        if (cursor.position >= ring_size) {
            cursor.position -= ring_size;
        }
    };
    while (base_table[cursor.position] != kUnclaimedSlot) {
        advance();
    }
    base_table[cursor.position] = rank;
    advance();
}

struct RendezvousCandidate {
    std::uint64_t key;
    std::uint32_t index;
};

// In-service backends of one weight, in name order. Within a class the highest per-slot
// draw has the highest score, so a slot needs one logarithm per distinct weight rather
// than one per backend, and with uniform weights the choice is exact integer comparison.
struct WeightClass {
    double weight;
    std::vector<RendezvousCandidate> members;
};

// Weighted rendezvous: score = weight / -ln(u) with u uniform in (0, 1) per (slot,
// backend) makes each backend win a slot with probability weight / total weight.
// Classes are in weight order and members in name order, and only a strictly better
// draw or score wins, so ties resolve the same way for any input order.
std::uint32_t rendezvous_owner(std::uint32_t slot, std::span<const WeightClass> weight_classes) {
    const std::uint64_t slot_key = mix64(slot + kGoldenGamma);
    double best_score = -1.0;
    std::uint32_t best_index = kNoBackend;
    for (const WeightClass& weight_class : weight_classes) {
        std::uint64_t best_draw = mix64(slot_key ^ weight_class.members.front().key);
        std::uint32_t class_winner = weight_class.members.front().index;
        for (const RendezvousCandidate& candidate : std::span(weight_class.members).subspan(1)) {
            const std::uint64_t draw = mix64(slot_key ^ candidate.key);
            if (draw > best_draw) {
                best_draw = draw;
                class_winner = candidate.index;
            }
        }
        // 52 bits plus a half step keeps u strictly inside (0, 1) after rounding, so the
        // logarithm is finite and negative.
        const double u = (static_cast<double>(best_draw >> 12) + 0.5) * 0x1p-52;
        const double score = weight_class.weight / -std::log(u);
        if (score > best_score) {
            best_score = score;
            best_index = class_winner;
        }
    }
    return best_index;
}

std::vector<const MaglevBackend*> validated_in_name_order(std::span<const MaglevBackend> backends,
                                                          std::uint32_t ring_size) {
    if (!is_prime(ring_size)) {
        throw std::invalid_argument("maglev: ring size " + std::to_string(ring_size) + " is not prime");
    }

    std::vector<const MaglevBackend*> by_name;
    by_name.reserve(backends.size());
    for (const MaglevBackend& backend : backends) {
        if (backend.index == kNoBackend) {
            throw std::invalid_argument("maglev: backend '" + backend.name +
                                        "' has index 0, which is reserved for kNoBackend");
        }
        by_name.push_back(&backend);
    }

    std::ranges::sort(by_name, {}, &MaglevBackend::name);
    const auto same_name = std::ranges::adjacent_find(
        by_name, [](const MaglevBackend* a, const MaglevBackend* b) { return a->name == b->name; });
    if (same_name != by_name.end()) {
        throw std::invalid_argument("maglev: duplicate backend name '" + (*same_name)->name + "'");
    }

    std::vector<const MaglevBackend*> by_index = by_name;
    std::ranges::sort(by_index, {}, &MaglevBackend::index);
    const auto same_index = std::ranges::adjacent_find(
        by_index, [](const MaglevBackend* a, const MaglevBackend* b) { return a->index == b->index; });
    if (same_index != by_index.end()) {
        throw std::invalid_argument("maglev: backends '" + (*same_index)->name + "' and '" +
                                    (*std::next(same_index))->name + "' share index " +
                                    std::to_string((*same_index)->index));
    }

    const auto weighted_count =
        static_cast<std::size_t>(std::ranges::count_if(by_name, [](const MaglevBackend* b) { return b->weight > 0; }));
    if (ring_size < weighted_count) {
        throw std::invalid_argument("maglev: ring size " + std::to_string(ring_size) + " is smaller than the " +
                                    std::to_string(weighted_count) + " backends with weight > 0");
    }
    return by_name;
}

std::vector<const MaglevBackend*> weighted_of(const std::vector<const MaglevBackend*>& by_name) {
    std::vector<const MaglevBackend*> weighted;
    std::ranges::copy_if(by_name, std::back_inserter(weighted), [](const MaglevBackend* b) { return b->weight > 0; });
    return weighted;
}

// The in-service backends by weight class, in weight order (see WeightClass).
std::vector<WeightClass> in_service_classes(const std::vector<const MaglevBackend*>& weighted, std::uint64_t seed) {
    std::vector<WeightClass> weight_classes;
    for (const MaglevBackend* backend : weighted) {
        if (!backend->in_service) {
            continue;
        }
        const auto weight = static_cast<double>(backend->weight);
        auto weight_class = std::ranges::find(weight_classes, weight, &WeightClass::weight);
        if (weight_class == weight_classes.end()) {
            weight_class = weight_classes.insert(weight_classes.end(), {.weight = weight, .members = {}});
        }
        weight_class->members.push_back({.key = derive(hash_name(backend->name, seed), 3), .index = backend->index});
    }
    std::ranges::sort(weight_classes, {}, &WeightClass::weight);
    return weight_classes;
}

// The base table: slot -> rank of its owner among `weighted` (weight > 0, name order),
// every weighted backend taking part whether in service or not.
std::vector<std::uint32_t> base_table(const std::vector<const MaglevBackend*>& weighted, std::uint32_t ring_size,
                                      std::uint64_t seed) {
    std::vector<PermutationCursor> cursors;
    std::vector<TurnQueueEntry> turn_queue;
    for (const MaglevBackend* backend : weighted) {
        const std::uint64_t identity = hash_name(backend->name, seed);
        const auto rank = static_cast<std::uint32_t>(cursors.size());
        cursors.push_back(
            {.position = derive(identity, 1) % ring_size, .skip = derive(identity, 2) % (ring_size - 1) + 1});
        turn_queue.push_back({.turns_taken = 0, .weight = backend->weight, .rank = rank});
    }
    std::vector<std::uint32_t> base(ring_size, kUnclaimedSlot);
    std::ranges::make_heap(turn_queue, due_later);
    for (std::uint32_t claimed = 0; claimed < ring_size; ++claimed) {
        std::ranges::pop_heap(turn_queue, due_later);
        TurnQueueEntry& next = turn_queue.back();
        claim_next_free_slot(cursors[next.rank], base, next.rank);
        ++next.turns_taken;
        std::ranges::push_heap(turn_queue, due_later);
    }
    return base;
}

// The effective ring from the base table: a slot keeps its base owner while that one is
// in service, else goes to the rendezvous winner. `ring` may be `base` itself.
template <typename Rank>
void resolve_owners(std::span<const Rank> base, const std::vector<const MaglevBackend*>& weighted,
                    std::span<const WeightClass> weight_classes, std::span<std::uint32_t> ring) {
    for (std::uint32_t slot = 0; slot < ring.size(); ++slot) {
        const MaglevBackend& base_owner = *weighted[base[slot]];
        ring[slot] = base_owner.in_service ? base_owner.index : rendezvous_owner(slot, weight_classes);
    }
}

}  // namespace

bool is_prime(std::uint32_t n) {
    if (n < 4) {
        return n >= 2;
    }
    if (n % 2 == 0 || n % 3 == 0) {
        return false;
    }
    // 64-bit divisor so divisor * divisor cannot overflow near 2^32.
    for (std::uint64_t divisor = 5; divisor * divisor <= n; divisor += 6) {
        if (n % divisor == 0 || n % (divisor + 2) == 0) {
            return false;
        }
    }
    return true;
}

std::vector<std::uint32_t> build_maglev_ring(std::span<const MaglevBackend> backends, std::uint32_t ring_size,
                                             std::uint64_t seed) {
    // Name order is the canonical rank: it breaks ties, so input order cannot matter.
    const std::vector<const MaglevBackend*> weighted = weighted_of(validated_in_name_order(backends, ring_size));
    const std::vector<WeightClass> weight_classes = in_service_classes(weighted, seed);
    if (weight_classes.empty()) {
        return std::vector<std::uint32_t>(ring_size, kNoBackend);
    }
    // The ring first holds the base table as backend ranks and is then rewritten in place
    // to backend indexes, so a build allocates the ring only once.
    std::vector<std::uint32_t> ring = base_table(weighted, ring_size, seed);
    resolve_owners<std::uint32_t>(ring, weighted, weight_classes, ring);
    return ring;
}

std::optional<std::vector<std::uint32_t>> MaglevRing::update(std::span<const MaglevBackend> backends,
                                                             std::uint32_t ring_size, std::uint64_t seed) {
    const std::vector<const MaglevBackend*> by_name = validated_in_name_order(backends, ring_size);
    std::vector<Member> members;
    members.reserve(by_name.size());
    for (const MaglevBackend* backend : by_name) {
        members.push_back({backend->name, backend->index, backend->weight, backend->in_service});
    }
    const bool same_inputs = built_ && ring_size == ring_size_ && seed == seed_;
    if (same_inputs && members == members_) {
        return std::nullopt;
    }
    const bool same_base = same_inputs && !base_ranks_.empty() &&
                           std::ranges::equal(members, members_, [](const Member& a, const Member& b) {
                               return a.name == b.name && a.weight == b.weight;
                           });

    const std::vector<const MaglevBackend*> weighted = weighted_of(by_name);
    const std::vector<WeightClass> weight_classes = in_service_classes(weighted, seed);
    std::vector<std::uint32_t> ring;
    if (weight_classes.empty()) {
        ring.assign(ring_size, kNoBackend);
        if (!same_base) {
            base_ranks_.clear();
        }
    } else if (same_base) {
        ring.resize(ring_size);
        resolve_owners<std::uint16_t>(base_ranks_, weighted, weight_classes, ring);
    } else {
        ring = base_table(weighted, ring_size, seed);
        if (weighted.size() < std::numeric_limits<std::uint16_t>::max()) {
            base_ranks_.assign(ring.begin(), ring.end());
        } else {
            base_ranks_.clear();
        }
        resolve_owners<std::uint32_t>(ring, weighted, weight_classes, ring);
    }
    members_ = std::move(members);
    ring_size_ = ring_size;
    seed_ = seed;
    built_ = true;
    return ring;
}

}  // namespace stickylb

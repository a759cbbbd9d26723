// SPDX-License-Identifier: Apache-2.0
// The membership view (session/membership_view.h): stickylbd writes it, every
// agent parses whatever is stored under its key in memcached. Invariants:
// - parse_view on arbitrary bytes returns a view or nullopt with a reason,
//   never throws;
// - an accepted view has only valid names, and encode_view of it parses back to
//   the same view (what an agent read, a daemon can write again unchanged);
// - any view with valid names and counters within kMaxViewCounter, built from
//   the same bytes, survives encode -> parse unchanged, and its encoding is
//   stable; a counter past that limit is refused, never wrapped or rounded.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_check.h"
#include "session/membership_view.h"

namespace {

using namespace stickylb::session;

void check_round_trip(const MembershipView& view) {
    std::string encoded = encode_view(view);
    std::string error;
    auto parsed = parse_view(encoded, &error);
    FUZZ_CHECK(parsed.has_value(), "an encoded view parses");
    FUZZ_CHECK(*parsed == view, "encode then parse gives the same view");
    FUZZ_CHECK(encode_view(*parsed) == encoded, "the encoding is stable");
    FUZZ_CHECK(members_key(view.cluster) == std::string(kMembersKeyPrefix) + view.cluster,
               "the key is prefix + cluster");
}

void fuzz_parse(std::string_view text) {
    std::string error;
    auto view = parse_view(text, &error);
    if (!view) {
        FUZZ_CHECK(!error.empty(), "a refused view says why");
        return;
    }
    FUZZ_CHECK(!name_problem(view->cluster), "an accepted cluster name is valid");
    for (const auto& [name, member] : view->backends) {
        FUZZ_CHECK(!name_problem(name), "an accepted backend name is valid");
        FUZZ_CHECK(parse_member_state(to_string(member.state)) == member.state, "states read back");
    }
    check_round_trip(*view);
}

std::uint64_t consume_counter(FuzzedDataProvider& provider) {
    std::uint64_t value = provider.ConsumeIntegral<std::uint64_t>();
    // Half in range, so the round trip is exercised; the rest tests the limit.
    if (provider.ConsumeBool())
        value %= kMaxViewCounter + 1;
    return value;
}

bool counters_within_limit(const MembershipView& view) {
    if (view.epoch > kMaxViewCounter)
        return false;
    for (const auto& [name, member] : view.backends)
        if (member.incarnation > kMaxViewCounter)
            return false;
    return true;
}

void fuzz_build(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider provider(data, size);
    MembershipView view;
    view.cluster = provider.ConsumeRandomLengthString(210);
    view.epoch = consume_counter(provider);
    view.written_ms = provider.ConsumeIntegral<std::int64_t>();
    bool names_valid = !name_problem(view.cluster);
    for (int i = 0; i < 8 && provider.remaining_bytes() > 0; ++i) {
        std::string name = provider.ConsumeRandomLengthString(210);
        names_valid = names_valid && !name_problem(name);
        view.backends[name] =
            Member{provider.PickValueInArray({MemberState::up, MemberState::draining, MemberState::down}),
                   consume_counter(provider)};
    }
    if (!names_valid)
        return;
    if (counters_within_limit(view)) {
        check_round_trip(view);
        return;
    }
    std::string error;
    FUZZ_CHECK(!parse_view(encode_view(view), &error).has_value(), "a counter above 2^53 is refused");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz_parse(std::string_view(reinterpret_cast<const char*>(data), size));
    fuzz_build(data, size);
    return 0;
}

// SPDX-License-Identifier: Apache-2.0
#include "agent/placement.h"

#include <algorithm>
#include <numeric>

namespace stickylb::agent {

std::uint64_t placement_score(std::string_view server, std::string_view key) {
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    auto mix_in = [&](std::string_view text) {
        for (unsigned char c : text) {
            hash ^= c;
            hash *= 0x100000001b3ULL;
        }
    };
    mix_in(server);
    hash ^= 0xff;  // separator: ("ab","c") and ("a","bc") differ
    hash *= 0x100000001b3ULL;
    mix_in(key);
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdULL;
    hash ^= hash >> 33;
    hash *= 0xc4ceb9fe1a85ec53ULL;
    hash ^= hash >> 33;
    return hash;
}

std::vector<std::size_t> rank_servers(const std::vector<std::string_view>& servers, std::string_view key) {
    std::vector<std::uint64_t> scores(servers.size());
    for (std::size_t i = 0; i < servers.size(); ++i)
        scores[i] = placement_score(servers[i], key);
    std::vector<std::size_t> order(servers.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        if (scores[a] != scores[b])
            return scores[a] > scores[b];
        return servers[a] < servers[b];
    });
    return order;
}

}  // namespace stickylb::agent

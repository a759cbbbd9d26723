// SPDX-License-Identifier: Apache-2.0
#include "control/flow_exceptions.h"

#include <netinet/in.h>

#include <algorithm>
#include <chrono>

#include "control/fleet_health.h"
#include "control/ring_pick.h"
#include "stickylb/flow_hash.h"

namespace stickylb {

RingView ring_view(const DesiredState& desired, std::uint32_t hash_seed,
                   const std::function<std::vector<std::uint32_t>(std::uint32_t vip_index)>& read_ring) {
    RingView view;
    view.hash_seed = hash_seed;
    for (const DesiredVip& vip : desired.vips) {
        view.vips[vip.settings.index] = {vip.key, vip.settings, read_ring(vip.settings.index)};
        for (const DesiredBackend& backend : vip.backends)
            view.backends[backend.index] = {vip.settings.index, observation_key(vip.key, backend.id.second),
                                            backend.state};
    }
    return view;
}

std::uint32_t ring_pick(const RingView::Vip& vip, std::uint32_t hash_seed, const FlowRecord& flow) {
    if (vip.ring.empty())
        return STICKYLB_NO_BACKEND;
    if (vip.settings.persistent || vip.settings.hash_source) {
        const unsigned prefix = flow.client.family() == STICKYLB_FAMILY_IPV4 ? vip.settings.client_prefix_v4
                                                                             : vip.settings.client_prefix_v6;
        return ring_pick(vip.ring, hash_seed, flow.client.masked(prefix));
    }
    const stickylb_addr client = flow.client.to_abi();
    const stickylb_addr address = flow.vip.to_abi();
    const std::uint32_t hash = stickylb_hash_flow(hash_seed, client.v6, address.v6, htons(flow.client_port),
                                                  htons(flow.vip_port), flow.protocol, flow.client.family());
    return vip.ring[hash % vip.ring.size()];
}

std::int64_t affinity_seen_step(std::uint32_t affinity_timeout_s) {
    return std::clamp<std::int64_t>(affinity_timeout_s / 10, 1, 30);
}

namespace {

// Nearest, not up: a peer's copy published back rounds to the same step.
std::int64_t round_to_step(std::int64_t seconds, std::int64_t step) { return (seconds + step / 2) / step * step; }

struct ClientKey {
    std::uint32_t vip_index;
    IpAddress client;
    auto operator<=>(const ClientKey&) const = default;
};

}  // namespace

std::vector<FlowException> find_flow_exceptions(std::span<const FlowRecord> flows, const RingView& view) {
    std::vector<FlowException> exceptions;
    for (const FlowRecord& flow : flows) {
        const auto backend = view.backends.find(flow.backend_index);
        if (backend == view.backends.end() || backend->second.state == BackendState::down ||
            backend->second.vip_index != flow.vip_index)
            continue;
        const auto vip = view.vips.find(flow.vip_index);
        if (vip == view.vips.end() || vip->second.key.address != flow.vip || vip->second.key.port != flow.vip_port ||
            vip->second.key.protocol != flow.protocol)
            continue;
        if (ring_pick(vip->second, view.hash_seed, flow) != flow.backend_index)
            exceptions.push_back({backend->second.key, flow.client, flow.client_port});
    }
    std::sort(exceptions.begin(), exceptions.end());
    exceptions.erase(std::unique(exceptions.begin(), exceptions.end()), exceptions.end());
    return exceptions;
}

std::vector<FlowException> find_affinity_exceptions(std::span<const AffinityRecord> affinities, const RingView& view,
                                                    std::int64_t now_s) {
    std::vector<FlowException> exceptions;
    for (const AffinityRecord& affinity : affinities) {
        const auto vip = view.vips.find(affinity.vip_index);
        if (vip == view.vips.end() || !vip->second.settings.persistent)
            continue;
        const auto age_s = std::chrono::duration_cast<std::chrono::seconds>(affinity.age).count();
        if (age_s >= vip->second.settings.affinity_timeout_s)
            continue;
        const auto backend = view.backends.find(affinity.backend_index);
        if (backend == view.backends.end() || backend->second.state == BackendState::down ||
            backend->second.vip_index != affinity.vip_index)
            continue;
        if (ring_pick(vip->second.ring, view.hash_seed, affinity.client) == affinity.backend_index)
            continue;
        exceptions.push_back(
            {.backend = backend->second.key,
             .client = affinity.client,
             .client_port = 0,
             .kind = ExceptionKind::affinity,
             .seen_s = round_to_step(now_s - age_s, affinity_seen_step(vip->second.settings.affinity_timeout_s))});
    }
    std::sort(exceptions.begin(), exceptions.end());
    return exceptions;
}

LocalPeerFlows to_local_flows(std::span<const FlowException> exceptions, const RingView& view) {
    std::map<std::string, std::uint32_t> index_of;
    for (const auto& [index, backend] : view.backends)
        index_of[backend.key] = index;
    LocalPeerFlows local;
    for (const FlowException& exception : exceptions) {
        const auto index = index_of.find(exception.backend);
        if (index == index_of.end()) {
            ++local.unknown;
            continue;
        }
        const RingView::Vip& vip = view.vips.at(view.backends.at(index->second).vip_index);
        if (exception.client.family() != vip.key.address.family()) {
            ++local.unknown;
            continue;
        }
        if (exception.kind == ExceptionKind::affinity) {
            if (!vip.settings.persistent) {
                ++local.unknown;
                continue;
            }
            local.affinities.push_back({vip.settings.index, exception.client, index->second, exception.seen_s});
            continue;
        }
        FlowRecord flow;
        flow.client = exception.client;
        flow.client_port = exception.client_port;
        flow.vip = vip.key.address;
        flow.vip_port = vip.key.port;
        flow.protocol = vip.key.protocol;
        flow.backend_index = index->second;
        flow.vip_index = static_cast<std::uint16_t>(vip.settings.index);
        local.flows.push_back(flow);
    }
    return local;
}

std::vector<AffinityWrite> affinity_writes(std::span<const PeerAffinity> peers, std::span<const AffinityRecord> local,
                                           const RingView& view, std::int64_t now_s, std::uint64_t clock_ns) {
    std::map<ClientKey, const PeerAffinity*> latest;
    for (const PeerAffinity& peer : peers) {
        const PeerAffinity*& kept = latest[{peer.vip_index, peer.client}];
        if (!kept || peer.seen_s > kept->seen_s)
            kept = &peer;
    }
    std::map<ClientKey, const AffinityRecord*> held;
    for (const AffinityRecord& record : local)
        if (latest.contains({record.vip_index, record.client}))
            held[{record.vip_index, record.client}] = &record;
    std::vector<AffinityWrite> writes;
    for (const auto& [key, peer] : latest) {
        const auto vip = view.vips.find(key.vip_index);
        if (vip == view.vips.end())
            continue;
        const std::int64_t age_s = std::max<std::int64_t>(0, now_s - peer->seen_s);
        if (age_s >= vip->second.settings.affinity_timeout_s)
            continue;
        if (const auto mine = held.find(key); mine != held.end()) {
            const AffinityRecord& record = *mine->second;
            const std::int64_t my_age_s = std::chrono::duration_cast<std::chrono::seconds>(record.age).count();
            const bool expired = my_age_s >= vip->second.settings.affinity_timeout_s;
            const bool on_ring = ring_pick(vip->second.ring, view.hash_seed, key.client) == record.backend_index;
            if (!expired && record.backend_index == peer->backend_index &&
                my_age_s - age_s < affinity_seen_step(vip->second.settings.affinity_timeout_s))
                continue;
            if (!expired && record.backend_index != peer->backend_index && !on_ring && my_age_s <= age_s)
                continue;
        }
        const auto age_ns = static_cast<std::uint64_t>(age_s) * 1'000'000'000ull;
        writes.push_back({key.vip_index, key.client, peer->backend_index, clock_ns > age_ns ? clock_ns - age_ns : 1});
    }
    return writes;
}

}  // namespace stickylb

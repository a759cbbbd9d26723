// SPDX-License-Identifier: Apache-2.0
#include "control/flow_exceptions.h"

#include <netinet/in.h>

#include <algorithm>

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

}  // namespace stickylb

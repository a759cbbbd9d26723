// SPDX-License-Identifier: Apache-2.0
#pragma once
// Exceptions: the flows an LB host carries on a backend that today's ring no longer
// picks for them (the backend they were on is still there, but a returned backend, a
// drain or a weight change moved the ring). They are the only flows in which LB hosts
// with equal rings disagree: should the router move one to another LB, that LB picks
// by the ring and the connection breaks. Every host publishes its exceptions
// (session/flow_exception_chunks.h); its peers write them into their peer-flow table,
// which the XDP program reads only when a packet under way finds no flow entry.
//
// Backends are named as the fleet roster names them (observation_key: protocol, VIP
// address and port, backend name), since backend indexes are each host's own.
#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "base/address.h"
#include "base/backend_state.h"
#include "control/reconciler.h"
#include "dataplane/maps.h"

namespace stickylb {

struct FlowException {
    std::string backend;  // observation_key, "6/10.89.0.10/80/be1": names the VIP too
    IpAddress client;
    std::uint16_t client_port = 0;  // host order
    auto operator<=>(const FlowException&) const = default;
};

// What this host's rings send where, by its own indexes.
struct RingView {
    struct Vip {
        VipKey key;
        VipSettings settings;
        std::vector<std::uint32_t> ring;  // as the data plane holds it
    };
    struct Backend {
        std::uint32_t vip_index = 0;
        std::string key;  // observation_key
        BackendState state = BackendState::up;
    };
    std::uint32_t hash_seed = 0;
    std::map<std::uint32_t, Vip> vips;          // by VIP index
    std::map<std::uint32_t, Backend> backends;  // by backend index
};

// The desired state's VIPs and backends with the rings read_ring gives.
RingView ring_view(const DesiredState& desired, std::uint32_t hash_seed,
                   const std::function<std::vector<std::uint32_t>(std::uint32_t vip_index)>& read_ring);

// The backend the XDP program's ring gives a new flow like this one.
std::uint32_t ring_pick(const RingView::Vip& vip, std::uint32_t hash_seed, const FlowRecord& flow);

// The flows whose backend is not their ring's pick and not down (a down backend's
// flows are re-picked by every host alike), sorted. Flows of VIPs or backends the
// view does not know are left out.
std::vector<FlowException> find_flow_exceptions(std::span<const FlowRecord> flows, const RingView& view);

// Peers' exceptions as this host's peer-flow entries; those naming a backend this
// host does not have are counted, not written.
struct LocalPeerFlows {
    std::vector<FlowRecord> flows;
    std::size_t unknown = 0;
};
LocalPeerFlows to_local_flows(std::span<const FlowException> exceptions, const RingView& view);

}  // namespace stickylb

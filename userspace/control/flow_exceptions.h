// SPDX-License-Identifier: Apache-2.0
#pragma once
// Exceptions: the flows an LB host carries on a backend that today's ring no longer
// picks for them (the backend they were on is still there, but a returned backend, a
// drain or a weight change moved the ring), and, for persistent VIPs, the clients its
// affinity table keeps on such a backend. They are the only state in which LB hosts
// with equal rings disagree: should the router move a flow to another LB, that LB
// picks by the ring and the connection breaks; should it give a client's next
// connection to another LB, the client loses its backend. Every host publishes its
// exceptions (session/flow_exception_chunks.h). Its peers write the flows into their
// peer-flow table, which the XDP program reads only when a packet under way finds no
// flow entry, and the clients into their own affinity table, so that every LB sends a
// client's new connections to the same backend.
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

enum class ExceptionKind : std::uint8_t { flow, affinity };

// One exception: a flow (client and port) or a client's affinity (the client masked to
// the VIP's client prefix, with when it was last seen).
struct FlowException {
    std::string backend;  // observation_key, "6/10.89.0.10/80/be1": names the VIP too
    IpAddress client;
    std::uint16_t client_port = 0;  // host order; flows only
    ExceptionKind kind = ExceptionKind::flow;
    // Affinities: last seen, wall-clock seconds rounded to the VIP's affinity_seen_step,
    // so that a client's list entry changes once a step, not with every refresh.
    std::int64_t seen_s = 0;
    auto operator<=>(const FlowException&) const = default;
};

// The step an affinity's last-seen time is published in: a tenth of the VIP's
// affinity timeout, from 1 to 30 s.
std::int64_t affinity_seen_step(std::uint32_t affinity_timeout_s);

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

// The affinities of persistent VIPs, not yet timed out, whose backend is not their
// client's ring pick and not down, sorted. now_s: the wall clock, seconds.
std::vector<FlowException> find_affinity_exceptions(std::span<const AffinityRecord> affinities, const RingView& view,
                                                    std::int64_t now_s);

// A peer's affinity exception in this host's indexes.
struct PeerAffinity {
    std::uint32_t vip_index = 0;
    IpAddress client;  // masked
    std::uint32_t backend_index = 0;
    std::int64_t seen_s = 0;
};

// Peers' exceptions as this host's peer-flow entries and affinities; those naming a
// backend this host does not have (or a VIP it does not keep clients on) are
// counted, not written.
struct LocalPeerFlows {
    std::vector<FlowRecord> flows;
    std::vector<PeerAffinity> affinities;
    std::size_t unknown = 0;
};
LocalPeerFlows to_local_flows(std::span<const FlowException> exceptions, const RingView& view);

// What to write into this host's affinity table (local: what it holds) so that its
// clients go where the peers' affinities say. A peer's entry not yet timed out is
// written where this host has none, where this host's entry is the ring's pick (an
// exception is older than the ring change that made it one), where this host keeps
// the client on a third backend but saw it longer ago, and where this host agrees
// but saw the client a step or more longer ago. Of several peers' entries for one
// client the latest seen counts. now_s: wall clock; clock_ns: affinity_clock_ns().
std::vector<AffinityWrite> affinity_writes(std::span<const PeerAffinity> peers, std::span<const AffinityRecord> local,
                                           const RingView& view, std::int64_t now_s, std::uint64_t clock_ns);

}  // namespace stickylb

// SPDX-License-Identifier: Apache-2.0
#pragma once
// The membership views stickylbd publishes, and the rules that keep their
// numbers honest (pure: no I/O, unit-tested):
//
//  - a cluster is the VIPs naming it (`cluster:`, default the VIP's own name); a
//    backend listed by several of its VIPs (same backend name) is down in the view
//    only if it is down in every one of them, draining if draining in any, else up;
//  - epoch grows by one on every change of a view's content (a backend's state or
//    incarnation, a backend added or removed); re-publishing the same content
//    keeps it;
//  - a backend's incarnation starts at 1 and grows by one each time it leaves
//    down (to up or to draining): its agent's older session locks are then
//    recognisably stale. up <-> draining changes nothing;
//  - neither ever goes backwards: the book is kept in the state file, views read
//    back from memcached raise it (recover), and a backend or cluster that leaves
//    the config keeps its numbers in case it comes back.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/config.h"
#include "control/reconciler.h"
#include "session/membership_view.h"

namespace stickylb {

// cluster -> backend name -> merged state
using ClusterStates = std::map<std::string, std::map<std::string, session::MemberState>>;

session::MemberState member_state(BackendState state);

// The VIP's cluster: `cluster:`, or its own name.
inline const std::string& cluster_name(const VipConfig& vip) { return vip.cluster.empty() ? vip.name : vip.cluster; }

// Every cluster of the config (also one whose VIPs' backends are all gone from
// desired), with its backends merged as above.
ClusterStates cluster_states(const DaemonConfig& config, const DesiredState& desired);

class MembershipBook {
public:
    // Makes the given clusters' views match `states` (clusters not given stop
    // being active: their views are no longer published). Returns the clusters
    // whose view changed, i.e. got a new epoch.
    std::vector<std::string> update(const ClusterStates& states);

    // The active clusters' views (written_ms 0: the writer stamps it).
    std::vector<session::MembershipView> views() const;
    // nullptr for a cluster never seen.
    const session::MembershipView* find(const std::string& cluster) const;

    // A view read back from memcached: when it is newer (higher epoch) than what
    // the book holds, its content becomes the last published one; either way no
    // epoch or incarnation stays below it.
    void recover(const session::MembershipView& seen);
    // The view another writer left: recover(seen), and a fresh epoch if the book
    // now holds other content under an epoch the agents may have seen with seen's.
    void take_over(const session::MembershipView& seen);

    // {"<cluster>":{"epoch":N,"backends":{"<name>":{"state":"up","incarnation":N}},"retired":{"<name>":N}}}
    nlohmann::json to_json() const;
    // Replaces the book; throws std::runtime_error naming what is malformed.
    void load_json(const nlohmann::json& saved);

private:
    struct Cluster {
        session::MembershipView view;
        std::map<std::string, std::uint64_t> retired;  // backends gone from the view: last incarnation
        bool active = false;
    };
    std::map<std::string, Cluster> clusters_;
};

}  // namespace stickylb

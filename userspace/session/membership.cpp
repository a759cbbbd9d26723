// SPDX-License-Identifier: Apache-2.0
#include "session/membership.h"

#include <algorithm>
#include <stdexcept>

namespace stickylb {

using session::Member;
using session::MembershipView;
using session::MemberState;

MemberState member_state(BackendState state) {
    switch (state) {
    case BackendState::up: return MemberState::up;
    case BackendState::draining: return MemberState::draining;
    case BackendState::down: return MemberState::down;
    }
    return MemberState::down;
}

ClusterStates cluster_states(const DaemonConfig& config, const DesiredState& desired) {
    std::map<std::string, std::string> cluster_of;  // VIP name -> cluster
    ClusterStates result;
    for (const VipConfig& vip : config.vips) {
        const std::string& cluster = cluster_name(vip);
        cluster_of[vip.name] = cluster;
        result[cluster];
    }
    struct Seen {
        bool all_down = true, any_draining = false;
    };
    std::map<std::string, std::map<std::string, Seen>> seen;
    for (const DesiredVip& vip : desired.vips) {
        const auto cluster = cluster_of.find(vip.name);
        if (cluster == cluster_of.end())
            continue;
        for (const DesiredBackend& backend : vip.backends) {
            Seen& entry = seen[cluster->second][backend.id.second];
            entry.all_down = entry.all_down && backend.state == BackendState::down;
            entry.any_draining = entry.any_draining || backend.state == BackendState::draining;
        }
    }
    for (const auto& [cluster, backends] : seen)
        for (const auto& [name, entry] : backends)
            result[cluster][name] = entry.all_down       ? MemberState::down
                                    : entry.any_draining ? MemberState::draining
                                                         : MemberState::up;
    return result;
}

std::vector<std::string> MembershipBook::update(const ClusterStates& states) {
    std::vector<std::string> changed;
    for (auto& [name, cluster] : clusters_)
        cluster.active = states.count(name) > 0;
    for (const auto& [name, backends] : states) {
        Cluster& cluster = clusters_[name];
        cluster.active = true;
        MembershipView next;
        next.cluster = name;
        for (const auto& [backend, state] : backends) {
            Member member{state, 1};
            if (const Member* previous = cluster.view.find(backend)) {
                member.incarnation = previous->incarnation;
                if (previous->state == MemberState::down && state != MemberState::down)
                    member.incarnation = session::next_counter(member.incarnation);
            } else if (const auto retired = cluster.retired.find(backend); retired != cluster.retired.end()) {
                member.incarnation = session::next_counter(retired->second);  // it left: back as a new life
                cluster.retired.erase(retired);
            }
            next.backends[backend] = member;
        }
        for (const auto& [backend, member] : cluster.view.backends)
            if (!next.backends.count(backend))
                cluster.retired[backend] = member.incarnation;
        if (cluster.view.epoch != 0 && next.backends == cluster.view.backends)
            continue;
        next.epoch = session::next_counter(cluster.view.epoch);
        cluster.view = std::move(next);
        changed.push_back(name);
    }
    return changed;
}

std::vector<MembershipView> MembershipBook::views() const {
    std::vector<MembershipView> result;
    for (const auto& [name, cluster] : clusters_)
        if (cluster.active && cluster.view.epoch != 0)
            result.push_back(cluster.view);
    return result;
}

const MembershipView* MembershipBook::find(const std::string& cluster) const {
    const auto found = clusters_.find(cluster);
    return found == clusters_.end() ? nullptr : &found->second.view;
}

void MembershipBook::recover(const MembershipView& seen) {
    Cluster& cluster = clusters_[seen.cluster];
    cluster.view.cluster = seen.cluster;
    const auto known_incarnation = [&](const std::string& backend) -> std::uint64_t {
        if (const Member* member = cluster.view.find(backend))
            return member->incarnation;
        const auto retired = cluster.retired.find(backend);
        return retired == cluster.retired.end() ? 0 : retired->second;
    };
    if (seen.epoch > cluster.view.epoch) {
        std::map<std::string, Member> adopted;
        for (const auto& [backend, member] : seen.backends) {
            adopted[backend] = Member{member.state, std::max(member.incarnation, known_incarnation(backend))};
            cluster.retired.erase(backend);
        }
        for (const auto& [backend, member] : cluster.view.backends)
            if (!adopted.count(backend))
                cluster.retired[backend] = std::max(cluster.retired[backend], member.incarnation);
        cluster.view.backends = std::move(adopted);
        cluster.view.epoch = seen.epoch;
        return;
    }
    for (const auto& [backend, member] : seen.backends) {
        if (auto ours = cluster.view.backends.find(backend); ours != cluster.view.backends.end())
            ours->second.incarnation = std::max(ours->second.incarnation, member.incarnation);
        else
            cluster.retired[backend] = std::max(cluster.retired[backend], member.incarnation);
    }
}

void MembershipBook::take_over(const MembershipView& seen) {
    recover(seen);
    MembershipView& view = clusters_[seen.cluster].view;
    if (view.epoch <= seen.epoch && view.backends != seen.backends)
        view.epoch = session::next_counter(seen.epoch);
}

nlohmann::json MembershipBook::to_json() const {
    nlohmann::json saved = nlohmann::json::object();
    for (const auto& [name, cluster] : clusters_) {
        nlohmann::json backends = nlohmann::json::object();
        for (const auto& [backend, member] : cluster.view.backends)
            backends[backend] = {{"state", std::string(session::to_string(member.state))},
                                 {"incarnation", member.incarnation}};
        nlohmann::json retired = nlohmann::json::object();
        for (const auto& [backend, incarnation] : cluster.retired)
            retired[backend] = incarnation;
        saved[name] = {{"epoch", cluster.view.epoch}, {"backends", backends}, {"retired", retired}};
    }
    return saved;
}

namespace {

std::uint64_t count_of(const nlohmann::json& value, const std::string& what) {
    if (!value.is_number_unsigned())
        throw std::runtime_error(what + " is not an unsigned integer");
    if (value.get<std::uint64_t>() > session::kMaxViewCounter)
        throw std::runtime_error(what + " is above 2^53");
    return value.get<std::uint64_t>();
}

}  // namespace

void MembershipBook::load_json(const nlohmann::json& saved) {
    std::map<std::string, Cluster> loaded;
    if (!saved.is_object())
        throw std::runtime_error("membership: not an object");
    for (const auto& [name, entry] : saved.items()) {
        const std::string where = "membership of cluster '" + name + "': ";
        try {
            Cluster cluster;
            cluster.view.cluster = name;
            cluster.view.epoch = count_of(entry.at("epoch"), "epoch");
            for (const auto& [backend, member] : entry.at("backends").items()) {
                const auto state = session::parse_member_state(member.at("state").get<std::string>());
                if (!state)
                    throw std::runtime_error("backend '" + backend + "': unknown state");
                cluster.view.backends[backend] =
                    Member{*state, count_of(member.at("incarnation"), "incarnation of '" + backend + "'")};
            }
            if (entry.contains("retired"))
                for (const auto& [backend, incarnation] : entry["retired"].items())
                    cluster.retired[backend] = count_of(incarnation, "incarnation of '" + backend + "'");
            loaded[name] = std::move(cluster);
        } catch (const nlohmann::json::exception& error) {
            throw std::runtime_error(where + error.what());
        } catch (const std::runtime_error& error) {
            throw std::runtime_error(where + error.what());
        }
    }
    clusters_ = std::move(loaded);
}

}  // namespace stickylb

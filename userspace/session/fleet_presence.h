// SPDX-License-Identifier: Apache-2.0
#pragma once
// This LB host in its fleet's roster (fleet_roster.h): every heartbeat it writes
// its entry to every memcached server (read, modify, compare-and-swap, through
// each server's link) and judges, from what the servers hold, whether its config
// fingerprint is the fleet's. The announcer asks standing() before announcing.
//
// Each entry also says what this host's own checks see (fleet_roster.h); between two
// heartbeats it reads the roster every settings.poll, so a peer's failed backend
// reaches this host's ring within a poll, and it writes its own at once when they change.
//
// Runs on the io_context; memcached I/O on the links' threads. A server that does
// not answer delays only itself: the verdict is taken again on every answer, over
// the rosters of the servers heard from within the freshness window.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it.
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/fleet_health.h"
#include "control/fleet_standing.h"
#include "control/metrics.h"
#include "session/fleet_roster.h"
#include "session/memcached_link.h"
#include "session/signed_value.h"

namespace stickylb {

struct FleetSettings {
    std::string fleet;
    std::string host;
    std::chrono::milliseconds heartbeat{1000};
    std::chrono::milliseconds poll{100};  // reads between heartbeats (>= heartbeat: none)
    // An entry, and a server's answer, count this long after they were written.
    std::chrono::milliseconds freshness() const { return 3 * heartbeat; }
};

class FleetPresence {
public:
    using Changed = std::function<void()>;  // the standing or the verdict's reason changed (io_context)

    // key: signs the roster (nullptr: unsigned); it must outlive this object.
    // peers_changed: what the peers sharing this host's config say of its backends changed.
    FleetPresence(boost::asio::io_context& io, std::vector<std::shared_ptr<MemcachedLink>> links,
                  FleetSettings settings, ConfigFingerprint fingerprint, const session::SigningKey* key,
                  Changed changed, Changed peers_changed = {});
    ~FleetPresence();
    FleetPresence(const FleetPresence&) = delete;
    FleetPresence& operator=(const FleetPresence&) = delete;

    void start();  // a heartbeat now, then every settings.heartbeat
    void stop();
    // A reload: a new fingerprint starts its own since_ms; written at once.
    void set_fingerprint(ConfigFingerprint fingerprint);

    // What this host's own checks say, by observation_key (control/fleet_health.h);
    // a change is written at once (before start(): with the first heartbeat).
    void set_own_health(std::set<std::string> down, std::set<std::string> unchecked);
    // What the fresh peers that run this host's config say of one backend (self not
    // counted); no votes while this host does not agree with the fleet.
    HealthVotes peer_votes(const std::string& observation_key) const;
    const std::vector<fleet::Member>& sharing_peers() const { return sharing_peers_; }
    // This host's flow exceptions as published (session/flow_exception_exchange.h),
    // written at once; changed: the version a sharing peer names changed, or the
    // sharing peers did.
    void set_flow_exceptions(std::uint64_t version, std::uint32_t chunks);
    void on_peer_exceptions_change(Changed changed) { peer_exceptions_changed_ = std::move(changed); }

    // The operators' drains and weights, shared by the fleet (fleet_roster.h). An
    // operator's change here takes the next version and is written at once; a higher
    // version read from a server replaces what is held (changed: called then).
    void set_overrides(std::map<std::string, fleet::SharedOverride> backends);
    const fleet::SharedOverrides& overrides() const { return overrides_; }
    void on_overrides_change(Changed changed) { overrides_changed_ = std::move(changed); }

    FleetStanding standing() const { return standing_; }
    const fleet::Verdict& verdict() const { return verdict_; }
    // What `stickylb cluster show` prints of the fleet (the daemon adds the VIPs).
    nlohmann::json show() const;
    struct Counters {
        std::uint64_t heartbeats = 0;        // roster writes that succeeded, all servers
        std::uint64_t write_failures = 0;    // a server's error or lost compare-and-swap race
        std::uint64_t rejected_rosters = 0;  // a stored roster refused (MAC, parse): overwritten
        std::uint64_t reads = 0;             // polls between heartbeats that read a roster
    };
    const Counters& counters() const { return counters_; }
    void fill_metrics(metrics::FleetSample& sample) const;

private:
    struct ServerState {
        std::shared_ptr<MemcachedLink> link;
        std::optional<fleet::Roster> roster;  // as this host last wrote or read it
        std::chrono::steady_clock::time_point answered{};
        std::int64_t answered_ms = 0;
        std::string error;
        bool in_flight = false, write_again = false, reading = false;
    };
    void beat();
    void write(ServerState& server);
    void read(ServerState& server);
    void schedule();
    void schedule_poll();
    void answered(const std::string& server, std::optional<fleet::Roster> roster, bool rejected,
                  const std::string& error);
    void read_answered(const std::string& name, std::optional<fleet::Roster> roster, const std::string& error);
    void judge();
    fleet::Member self(std::int64_t now_ms) const;

    boost::asio::io_context& io_;
    std::vector<std::shared_ptr<MemcachedLink>> links_;
    const FleetSettings settings_;
    ConfigFingerprint fingerprint_;
    std::int64_t since_ms_;
    std::uint64_t sequence_ = 0;
    const session::SigningKey* key_;
    Changed changed_, peers_changed_, peer_exceptions_changed_, overrides_changed_;
    fleet::SharedOverrides overrides_;  // the highest version this host wrote or read
    std::set<std::string> own_down_, own_unchecked_;
    std::uint64_t flows_version_ = 0;
    std::uint32_t flows_chunks_ = 0;
    bool started_ = false;
    boost::asio::steady_timer timer_, poll_timer_;
    std::map<std::string, ServerState> servers_;
    FleetStanding standing_ = FleetStanding::pending;
    fleet::Verdict verdict_;
    fleet::Roster combined_;
    std::vector<fleet::Member> sharing_peers_;  // fresh, this host's config, self excluded
    Counters counters_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace stickylb

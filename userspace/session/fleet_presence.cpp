// SPDX-License-Identifier: Apache-2.0
#include "session/fleet_presence.h"

#include <boost/asio/post.hpp>

#include <algorithm>

namespace stickylb {
namespace {

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Attempts at one server per heartbeat before its write counts as failed: each lost
// race means another host wrote in between, so a few suffice for any fleet size.
constexpr int kCasAttempts = 4;
constexpr std::chrono::seconds kMinimumRosterLifetime{10};

}  // namespace

FleetPresence::FleetPresence(boost::asio::io_context& io, std::vector<std::shared_ptr<MemcachedLink>> links,
                             FleetSettings settings, ConfigFingerprint fingerprint, const session::SigningKey* key,
                             Changed changed, Changed peers_changed)
    : io_(io),
      links_(std::move(links)),
      settings_(std::move(settings)),
      fingerprint_(std::move(fingerprint)),
      since_ms_(wall_ms()),
      key_(key),
      changed_(std::move(changed)),
      peers_changed_(std::move(peers_changed)),
      timer_(io),
      poll_timer_(io) {
    for (const auto& link : links_)
        servers_[link->server()].link = link;
}

FleetPresence::~FleetPresence() { *alive_ = false; }

void FleetPresence::start() {
    started_ = true;
    beat();
    schedule();
    if (settings_.poll < settings_.heartbeat)
        schedule_poll();
}

void FleetPresence::stop() {
    timer_.cancel();
    poll_timer_.cancel();
}

void FleetPresence::schedule_poll() {
    poll_timer_.expires_after(settings_.poll);
    poll_timer_.async_wait([this](const boost::system::error_code& error) {
        if (error)
            return;
        for (auto& [name, server] : servers_)
            read(server);
        schedule_poll();
    });
}

void FleetPresence::set_own_health(std::set<std::string> down, std::set<std::string> unchecked) {
    if (down == own_down_ && unchecked == own_unchecked_)
        return;
    own_down_ = std::move(down);
    own_unchecked_ = std::move(unchecked);
    if (!started_)
        return;  // the first heartbeat carries them
    for (auto& [name, server] : servers_)
        write(server);
}

void FleetPresence::set_flow_exceptions(std::uint64_t version, std::uint32_t chunks) {
    if (version == flows_version_ && chunks == flows_chunks_)
        return;
    flows_version_ = version;
    flows_chunks_ = chunks;
    if (!started_)
        return;
    for (auto& [name, server] : servers_)
        write(server);
}

HealthVotes FleetPresence::peer_votes(const std::string& observation_key) const {
    HealthVotes votes;
    for (const fleet::Member& peer : sharing_peers_) {
        if (peer.backends_down.count(observation_key))
            ++votes.down;
        else if (!peer.backends_unchecked.count(observation_key))
            ++votes.up;
    }
    return votes;
}

void FleetPresence::schedule() {
    timer_.expires_after(settings_.heartbeat);
    timer_.async_wait([this](const boost::system::error_code& error) {
        if (error)
            return;
        beat();
        schedule();
    });
}

void FleetPresence::set_fingerprint(ConfigFingerprint fingerprint) {
    if (fingerprint.digest == fingerprint_.digest)
        return;
    fingerprint_ = std::move(fingerprint);
    since_ms_ = wall_ms();
    judge();
    beat();
}

fleet::Member FleetPresence::self(std::int64_t now_ms) const {
    return fleet::Member{settings_.host, fingerprint_,   since_ms_,      now_ms,       sequence_,
                         own_down_,      own_unchecked_, flows_version_, flows_chunks_};
}

void FleetPresence::beat() {
    judge();  // servers silent for too long stop counting even when nothing answers
    for (auto& [name, server] : servers_)
        write(server);
}

void FleetPresence::write(ServerState& server) {
    if (server.in_flight) {
        server.write_again = true;  // what this host says changed since that write began
        return;
    }
    server.in_flight = true;
    server.write_again = false;
    const std::string key_name = fleet::roster_key(settings_.fleet);
    // Entries expire by their heartbeat, not by the key: a key gone between two writes
    // would start an empty roster, in which a host with another config is alone and
    // agrees with itself. memcached counts expiry in whole seconds, so the key outlives
    // freshness many times over and goes only with the last host of the fleet.
    const auto ttl = std::max<std::chrono::seconds>(
        kMinimumRosterLifetime, std::chrono::ceil<std::chrono::seconds>(10 * settings_.freshness()));
    ++sequence_;
    struct Result {
        std::optional<fleet::Roster> roster;
        bool rejected = false;
    };
    auto result = std::make_shared<Result>();
    const fleet::Member me = self(wall_ms());
    const auto freshness = settings_.freshness();
    const session::SigningKey* signing = key_;
    server.link->publish(
        key_name,
        [result, me, overrides = overrides_, key_name, ttl, freshness, signing](MemcachedClient& client) {
            for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
                const auto stored = client.gets(key_name);
                fleet::Roster roster;
                if (stored) {
                    const session::OpenedValue opened = session::open_value(signing, key_name, stored->value);
                    try {
                        if (opened.rejected)
                            throw fleet::RosterError("refused");
                        roster = fleet::decode(opened.payload);
                    } catch (const fleet::RosterError&) {
                        result->rejected = true;  // overwritten: every host rewrites its entry
                        roster = {};
                    }
                }
                fleet::Member entry = me;
                // A restarted host that runs the same config keeps its standing in ties.
                for (const fleet::Member& old : roster.members)
                    if (old.host == me.host && old.fingerprint.digest == me.fingerprint.digest)
                        entry.since_ms = std::min(entry.since_ms, old.since_ms);
                roster = fleet::with_member(std::move(roster), entry, wall_ms(), freshness);
                if (overrides.version > roster.overrides.version)
                    roster.overrides = overrides;
                const std::string value = session::sign_value(signing, key_name, fleet::encode(roster));
                const bool written = stored ? client.compare_and_swap(key_name, value, ttl, stored->cas)
                                            : client.add(key_name, value, ttl);
                if (written) {
                    result->roster = std::move(roster);
                    return;
                }
            }
            throw MemcachedError("memcached " + client.server() + ": " + key_name + ": changed by other hosts " +
                                 std::to_string(kCasAttempts) + " times in a row");
        },
        // On the link's thread, maybe after this object is gone: io and alive only.
        [this, &io = io_, alive = alive_, name = server.link->server(), result](const std::string& error) {
            boost::asio::post(io, [this, alive, name, result, error] {
                if (*alive)
                    answered(name, result->roster, result->rejected, error);
            });
        });
}

// A read of its own (its own publish key), so that it never waits behind a write of
// this host's or replaces one.
void FleetPresence::read(ServerState& server) {
    if (server.reading || server.in_flight)
        return;
    server.reading = true;
    const std::string key_name = fleet::roster_key(settings_.fleet);
    auto roster = std::make_shared<std::optional<fleet::Roster>>();
    const session::SigningKey* signing = key_;
    server.link->publish(
        key_name + " read",
        [roster, key_name, signing](MemcachedClient& client) {
            const auto stored = client.get(key_name);
            if (!stored)
                return;
            const session::OpenedValue opened = session::open_value(signing, key_name, *stored);
            if (opened.rejected)
                return;  // the next heartbeat counts and overwrites it
            try {
                *roster = fleet::decode(opened.payload);
            } catch (const fleet::RosterError&) {
                roster->reset();  // as above
            }
        },
        [this, &io = io_, alive = alive_, name = server.link->server(), roster](const std::string& error) {
            boost::asio::post(io, [this, alive, name, roster, error] {
                if (*alive)
                    read_answered(name, std::move(*roster), error);
            });
        });
}

void FleetPresence::read_answered(const std::string& name, std::optional<fleet::Roster> roster,
                                  const std::string& error) {
    ServerState& server = servers_[name];
    server.reading = false;
    // A failed read is not the server's verdict: the heartbeat's write is.
    if (!error.empty() || !roster || server.in_flight)
        return;
    ++counters_.reads;
    server.roster = std::move(roster);
    server.answered = std::chrono::steady_clock::now();
    server.answered_ms = wall_ms();
    judge();
}

void FleetPresence::answered(const std::string& server, std::optional<fleet::Roster> roster, bool rejected,
                             const std::string& error) {
    ServerState& state = servers_[server];
    state.in_flight = false;
    if (state.write_again)
        write(state);
    counters_.rejected_rosters += rejected;
    if (!error.empty() || !roster) {
        ++counters_.write_failures;
        state.error = error.empty() ? "no roster written" : error;
    } else {
        ++counters_.heartbeats;
        state.error.clear();
        state.roster = std::move(roster);
        state.answered = std::chrono::steady_clock::now();
        state.answered_ms = wall_ms();
        for (const fleet::Member& member : state.roster->members)
            if (member.host == settings_.host && member.fingerprint.digest == fingerprint_.digest)
                since_ms_ = std::min(since_ms_, member.since_ms);
    }
    if (state.answered_ms == 0 && state.error.empty())
        return;
    judge();
}

void FleetPresence::judge() {
    const auto now = std::chrono::steady_clock::now();
    std::vector<fleet::Roster> fresh;
    bool any_answer = false;
    for (const auto& [server, state] : servers_) {
        any_answer |= state.answered_ms != 0 || !state.error.empty();
        if (state.roster && now - state.answered <= settings_.freshness())
            fresh.push_back(*state.roster);
    }
    const FleetStanding previous_standing = standing_;
    const fleet::Verdict previous = verdict_;
    const std::vector<fleet::Member> previous_peers = std::move(sharing_peers_);
    sharing_peers_.clear();
    if (fresh.empty()) {
        standing_ = any_answer ? FleetStanding::alone : FleetStanding::pending;
        verdict_ = fleet::Verdict{};
        verdict_.agreeing = {settings_.host};
        verdict_.fleet_digest = fingerprint_.digest;
        combined_ = {};
    } else {
        combined_ = fleet::combine(fresh);
        const std::int64_t now_ms = wall_ms();
        // A server's roster holds the hosts as of this host's last write to it: those
        // that have not written since are gone by now (judge() ignores them too).
        std::erase_if(combined_.members, [&](const fleet::Member& member) {
            return member.host != settings_.host && !fleet::fresh(member, now_ms, settings_.freshness());
        });
        verdict_ = fleet::judge(combined_, self(now_ms), now_ms, settings_.freshness());
        standing_ = verdict_.agrees ? FleetStanding::agrees : FleetStanding::differs;
        if (standing_ == FleetStanding::agrees)
            for (const fleet::Member& member : combined_.members)
                if (member.host != settings_.host && member.fingerprint.digest == fingerprint_.digest)
                    sharing_peers_.push_back(member);
    }
    const auto same_observations = [](const std::vector<fleet::Member>& a, const std::vector<fleet::Member>& b) {
        return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const fleet::Member& x, const fleet::Member& y) {
            return x.host == y.host && x.backends_down == y.backends_down &&
                   x.backends_unchecked == y.backends_unchecked;
        });
    };
    if (!same_observations(previous_peers, sharing_peers_) && peers_changed_)
        peers_changed_();
    const auto same_exceptions = [](const std::vector<fleet::Member>& a, const std::vector<fleet::Member>& b) {
        return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const fleet::Member& x, const fleet::Member& y) {
            return x.host == y.host && x.flows_version == y.flows_version && x.flows_chunks == y.flows_chunks;
        });
    };
    if (!same_exceptions(previous_peers, sharing_peers_) && peer_exceptions_changed_)
        peer_exceptions_changed_();
    // Equal versions with other content: another host's change took the version first;
    // the roster's wins, so that every host applies the same overrides.
    if (combined_.overrides.version > overrides_.version ||
        (combined_.overrides.version == overrides_.version && combined_.overrides != overrides_)) {
        overrides_ = combined_.overrides;
        if (overrides_changed_)
            overrides_changed_();
    }
    if (standing_ != previous_standing || verdict_.reason != previous.reason ||
        verdict_.agreeing != previous.agreeing || verdict_.differing != previous.differing)
        if (changed_)
            changed_();
}

void FleetPresence::set_overrides(std::map<std::string, fleet::SharedOverride> backends) {
    overrides_.version = std::max(overrides_.version, combined_.overrides.version) + 1;
    overrides_.by = settings_.host;
    overrides_.backends = std::move(backends);
    if (!started_)
        return;  // the first heartbeat carries them
    for (auto& [name, server] : servers_)
        write(server);
}

void FleetPresence::fill_metrics(metrics::FleetSample& sample) const {
    sample.standing = standing_;
    sample.hosts_agreeing = verdict_.agreeing.size();
    sample.hosts_differing = verdict_.differing.size();
    sample.heartbeats = counters_.heartbeats;
    sample.write_failures = counters_.write_failures;
    sample.rejected_rosters = counters_.rejected_rosters;
    sample.reads = counters_.reads;
    sample.hosts_sharing_checks = 1 + sharing_peers_.size();
}

nlohmann::json FleetPresence::show() const {
    const std::int64_t now_ms = wall_ms();
    nlohmann::json hosts = nlohmann::json::array();
    for (const fleet::Member& member : combined_.members) {
        const bool is_self = member.host == settings_.host;
        const fleet::Member shown = is_self ? self(member.heartbeat_ms) : member;
        hosts.push_back({{"host", shown.host},
                         {"self", is_self},
                         {"config_sha256", shown.fingerprint.digest},
                         {"fleet_config", shown.fingerprint.digest == verdict_.fleet_digest},
                         {"since_unix_ms", shown.since_ms},
                         {"heartbeat_age_ms", std::max<std::int64_t>(0, now_ms - member.heartbeat_ms)},
                         {"parts", shown.fingerprint.parts},
                         {"backends_down", shown.backends_down},
                         {"backends_unchecked", shown.backends_unchecked},
                         {"flow_exceptions_version", shown.flows_version},
                         {"flow_exception_chunks", shown.flows_chunks}});
    }
    nlohmann::json servers = nlohmann::json::array();
    for (const auto& [server, state] : servers_)
        servers.push_back({{"server", server},
                           {"last_write_age_ms", state.answered_ms == 0 ? nlohmann::json(nullptr)
                                                                        : nlohmann::json(std::max<std::int64_t>(
                                                                              0, now_ms - state.answered_ms))},
                           {"error", state.error}});
    return {{"fleet", settings_.fleet},
            {"host", settings_.host},
            {"standing", to_string(standing_)},
            {"standing_text", description(standing_)},
            {"reason", verdict_.reason},
            {"differing_parts", verdict_.parts},
            {"config_sha256", fingerprint_.digest},
            {"fleet_config_sha256", verdict_.fleet_digest},
            {"parts", fingerprint_.parts},
            {"heartbeat_ms", settings_.heartbeat.count()},
            {"poll_ms", settings_.poll.count()},
            {"freshness_ms", settings_.freshness().count()},
            {"hosts", hosts},
            {"servers", servers},
            {"overrides",
             {{"version", overrides_.version}, {"by", overrides_.by}, {"backends", overrides_.backends.size()}}},
            {"heartbeats", counters_.heartbeats},
            {"write_failures", counters_.write_failures},
            {"rejected_rosters", counters_.rejected_rosters},
            {"reads", counters_.reads}};
}

}  // namespace stickylb

// SPDX-License-Identifier: Apache-2.0
#include "daemon/control_plane.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "base/protocol.h"
#include "control/config_fingerprint.h"
#include "control/reload_rules.h"
#include "control/ring_fingerprint.h"
#include "control/ring_pick.h"
#include "dataplane/forwarding_mode.h"

#ifndef STICKYLB_VERSION
#define STICKYLB_VERSION "0.0.0"
#endif

namespace stickylb {
namespace {

constexpr auto kTableCountPeriod = std::chrono::seconds(10);

ProbeSpec probe_for(const VipConfig& vip, const BackendConfig& backend) {
    ProbeSpec spec;
    spec.kind = vip.health.kind;
    spec.address = backend.address;
    spec.port = vip.health.port ? vip.health.port : vip.port;
    spec.interval = vip.health.interval;
    spec.timeout = vip.health.timeout;
    spec.rise = vip.health.rise;
    spec.fall = vip.health.fall;
    spec.http_path = vip.health.http_path;
    spec.expected_status = vip.health.expected_status;
    spec.http_host = vip.health.http_host;
    return spec;
}

std::string_view cause_name(ReconcileCause cause) {
    switch (cause) {
    case ReconcileCause::start: return "start";
    case ReconcileCause::refresh: return "refresh";
    case ReconcileCause::reload: return "reload";
    case ReconcileCause::health: return "health";
    case ReconcileCause::admin: return "admin";
    }
    return "?";
}

bool filtered_out(const nlohmann::json& args, const char* key, const std::string& value) {
    return args.contains(key) && args[key] != value;
}

// What flow and affinity entries refer to by index, named as the desired state names
// them: copied for a table walk on the worker.
struct TableNames {
    std::map<std::uint32_t, std::string> vips, backends;
    explicit TableNames(const DesiredState& desired) {
        for (const DesiredVip& vip : desired.vips) {
            vips[vip.settings.index] = vip.name;
            for (const DesiredBackend& backend : vip.backends)
                backends[backend.index] = backend.id.second;
        }
    }
    static std::string name(const std::map<std::uint32_t, std::string>& names, std::uint32_t index) {
        const auto found = names.find(index);
        return found == names.end() ? "#" + std::to_string(index) : found->second;
    }
    std::string vip(std::uint32_t index) const { return name(vips, index); }
    std::string backend(std::uint32_t index) const { return name(backends, index); }
};

}  // namespace

ControlPlane::ControlPlane(boost::asio::io_context& io, std::string config_path, DaemonConfig config, ServiceMaps& maps,
                           ClientTables& tables, const EgressInterface& egress, Reconciler::MacResolver resolve_mac,
                           std::optional<AnnounceHooks> announce)
    : io_(io),
      config_path_(std::move(config_path)),
      config_(std::move(config)),
      maps_(maps),
      tables_(tables),
      indexes_(config_.max_vips, config_.max_backends),
      reconciler_(maps_, config_.hash_seed, egress, std::move(resolve_mac)),
      checker_(
          io_, [this](const HealthChange& change) { on_health_change(change); },
          [this](const std::string& key, const ProbeResult& result) { on_probe(key, result); }),
      announce_timer_(io_) {
    if (config_.announce.enabled) {
        if (!announce)
            throw std::invalid_argument("the config announces VIPs but this host gave no routes to announce them");
        announcer_.emplace(announce->routes, announce->self_test);
        announce_alive_ = std::move(announce->alive);
    }
    if (config_.session_enabled())
        session_ = std::make_unique<SessionCoordinator>(io_, config_, tables_, worker_,
                                                        [this] { return affinity_layout(desired_); });
    if (session_ && announcer_)
        fleet_ = std::make_unique<FleetPresence>(
            io_, session_->links(),
            FleetSettings{config_.announce.fleet, host_id(config_.announce), config_.announce.peer_heartbeat,
                          config_.announce.peer_poll},
            config_fingerprint(config_), session_->signing_key(), [this] { on_fleet_change(); },
            [this] { on_fleet_checks_change(); });
    // Until the roster says which host writes the views, this one writes none.
    if (fleet_) {
        session_->set_view_writer(false);
        fleet_->on_overrides_change([this] { on_fleet_overrides_change(); });
    }
    if (fleet_ && config_.announce.share_exceptions)
        exceptions_ = std::make_unique<ExceptionSync>(
            io_, worker_, tables_, *fleet_, session_->links(),
            ExceptionExchangeSettings{config_.announce.fleet, host_id(config_.announce)}, session_->signing_key(),
            [this] { return current_rings(); }, STICKYLB_DEFAULT_PEER_FLOW_ENTRIES);
}

RingView ControlPlane::current_rings() const {
    return ring_view(desired_, config_.hash_seed,
                     [this](std::uint32_t vip_index) { return maps_.read_ring(vip_index); });
}

// Threads first: their jobs refer to the tables and to this object.
ControlPlane::~ControlPlane() {
    exceptions_.reset();
    fleet_.reset();
    if (session_)
        session_->stop();
    worker_.stop();
}

void ControlPlane::start(bool tables_were_empty) {
    load_state();
    std::map<std::string, session::MembershipView> recovered;
    if (session_)
        recovered = session_->recover_views(config_);
    maps_.set_runtime_config(runtime_config());

    // Adopt what a previous daemon left in the maps: backend states seed the health
    // checks, so nothing flaps while the first probes run.
    std::vector<std::uint32_t> adopted;
    std::map<BackendId, BackendState> adopted_states;
    for (const auto& [id, index] : indexes_.backends()) {
        adopted.push_back(index);
        if (auto entry = maps_.read_backend(index))
            adopted_states[id] = entry->state;
    }
    reconciler_.adopt(adopted);
    if (!adopted.empty())
        spdlog::info("adopted pinned state from {}: {} VIPs, {} backends", config_.pin_dir, maps_.vips().size(),
                     adopted.size());

    for (const VipConfig& vip : config_.vips)
        for (const BackendConfig& backend : vip.backends) {
            const BackendId id{vip.name, backend.name};
            Health initial = Health::unknown;
            if (auto found = adopted_states.find(id); found != adopted_states.end()) {
                initial = found->second == BackendState::down ? Health::down : Health::up;
            } else if (auto view = recovered.find(cluster_name(vip)); view != recovered.end()) {
                // Nothing pinned for it: the last view published (by this host before
                // it lost its pins, or by another) is the best guess until checks say.
                if (const session::Member* member = view->second.find(backend.name))
                    initial = member->state == session::MemberState::down ? Health::down : Health::up;
            }
            checker_.add_or_update(to_string(id), probe_for(vip, backend), initial);
        }

    reconcile(ReconcileCause::start);
    if (session_ && tables_were_empty)
        session_->restore_at_start();
}

void ControlPlane::begin_service() {
    if (announcer_) {
        spdlog::info("announcing VIPs through routing table {}: checked every {} ms, held {} ms past a stop",
                     config_.announce.routing_table, config_.announce.check_interval.count(),
                     config_.announce.hold.count());
        if (fleet_) {
            spdlog::info(
                "fleet {}: this host is {}, config fingerprint {}; comparing with its peers every {} ms through "
                "memcached, their health checks read every {} ms",
                config_.announce.fleet, host_id(config_.announce), config_fingerprint(config_).digest,
                config_.announce.peer_heartbeat.count(), config_.announce.peer_poll.count());
            publish_own_health();
            fleet_->start();
            if (exceptions_)
                exceptions_->start();
        }
        announce();
        schedule_announce();
    }
    if (!session_)
        return;
    session_->start();
    spdlog::info("session coordination with {} memcached servers: views every {} ms, affinity snapshots {}",
                 config_.memcached_servers.size(), config_.session.view_refresh_interval.count(),
                 config_.session.affinity_save_interval.count() > 0
                     ? "every " + std::to_string(config_.session.affinity_save_interval.count()) + " ms"
                     : std::string("off"));
}

void ControlPlane::refresh() {
    reconcile(ReconcileCause::refresh);
    count_table_entries();
}

void ControlPlane::stop(std::function<void()> done) {
    checker_.stop();
    // The routes stay: the announce guard withdraws them if no stickylbd follows in time.
    announce_timer_.cancel();
    if (exceptions_)
        exceptions_->stop();
    if (fleet_)
        fleet_->stop();
    if (session_)
        session_->shutdown(std::move(done));
    else
        boost::asio::post(io_, std::move(done));
}

void ControlPlane::schedule_announce() {
    announce_timer_.expires_after(config_.announce.check_interval);
    announce_timer_.async_wait([this](const boost::system::error_code& error) {
        if (error)
            return;
        announce();
        if (announce_alive_)
            announce_alive_();
        schedule_announce();
    });
}

void ControlPlane::announce() {
    if (!announcer_)
        return;
    std::vector<VipReadiness> vips;
    for (const DesiredVip& vip : desired_.vips) {
        VipReadiness readiness{vip.name, vip.key.address, vip.key.port, vip.key.protocol};
        // A drained backend still serves its users: passing its checks is what counts,
        // this host's own (it forwards to the backend), and in the ring.
        for (const DesiredBackend& backend : vip.backends) {
            const HealthVerdict own = own_verdict(backend.id);
            readiness.backend_passing |= own == HealthVerdict::up && verdict(backend.id) == HealthVerdict::up;
            readiness.backends_checked |= own != HealthVerdict::unknown;
        }
        vips.push_back(std::move(readiness));
    }
    const std::string previous_error = announcer_->route_error();
    const bool peers_loaded = !exceptions_ || exceptions_->joined();
    for (const VipAnnouncement& change : announcer_->apply(vips, fleet_standing(), peers_loaded)) {
        if (change.announced())
            spdlog::info("VIP {} ({}): announced", change.vip, change.address.to_string());
        else
            spdlog::warn("VIP {} ({}): {}: {}", change.vip, change.address.to_string(),
                         change.route_present ? "route kept" : "withdrawn", description(change.reason));
    }
    if (!announcer_->route_error().empty() && announcer_->route_error() != previous_error)
        spdlog::error("announcement routes (table {}): {}", config_.announce.routing_table, announcer_->route_error());
}

FleetStanding ControlPlane::fleet_standing() const { return fleet_ ? fleet_->standing() : FleetStanding::agrees; }

void ControlPlane::on_fleet_change() {
    const fleet::Verdict& verdict = fleet_->verdict();
    switch (fleet_->standing()) {
    case FleetStanding::differs:
        spdlog::error("fleet {}: {}; withdrawing every VIP", config_.announce.fleet, verdict.reason);
        break;
    case FleetStanding::alone:
        spdlog::warn("fleet {}: {}", config_.announce.fleet, description(FleetStanding::alone));
        break;
    case FleetStanding::agrees: {
        std::string hosts;
        for (const std::string& host : verdict.agreeing)
            hosts += (hosts.empty() ? "" : ", ") + host;
        spdlog::info("fleet {}: config fingerprint {} shared by {}", config_.announce.fleet, verdict.fleet_digest,
                     hosts);
    } break;
    case FleetStanding::pending: break;
    }
    choose_membership_view_writer();
    // A fleet whose roster holds no overrides yet starts from this host's.
    if (fleet_->standing() == FleetStanding::agrees && fleet_->overrides().version == 0 && !overrides_.empty())
        fleet_->set_overrides(shared_overrides());
    announce();
}

std::map<std::string, fleet::SharedOverride> ControlPlane::shared_overrides() const {
    std::map<std::string, fleet::SharedOverride> shared;
    for (const auto& [id, override_of] : overrides_)
        shared[observation_key(find_vip(id.first), id.second)] = {override_of.drained, override_of.weight};
    return shared;
}

void ControlPlane::on_fleet_overrides_change() {
    const fleet::SharedOverrides& fleet_overrides = fleet_->overrides();
    AdminOverrides applied;
    for (const VipConfig& vip : config_.vips)
        for (const BackendConfig& backend : vip.backends) {
            const auto found = fleet_overrides.backends.find(observation_key(vip, backend.name));
            if (found != fleet_overrides.backends.end())
                applied[{vip.name, backend.name}] = {found->second.drained, found->second.weight};
        }
    if (applied == overrides_)
        return;
    spdlog::info("fleet {}: overrides version {} by {}: {} backends drained or reweighted", config_.announce.fleet,
                 fleet_overrides.version, fleet_overrides.by, applied.size());
    overrides_ = std::move(applied);
    reconcile(ReconcileCause::admin, "the fleet's overrides");
    save_state();
}

void ControlPlane::on_fleet_checks_change() {
    reconcile(ReconcileCause::health, "fleet peers' checks");
    choose_membership_view_writer();
    announce();
}

std::optional<std::string> ControlPlane::membership_view_writer() const {
    const std::string self = host_id(config_.announce);
    if (!fleet_)
        return self;
    switch (fleet_->standing()) {
    case FleetStanding::alone: return self;
    case FleetStanding::pending:
    case FleetStanding::differs: return std::nullopt;
    case FleetStanding::agrees: break;
    }
    std::string lowest = self;
    for (const fleet::Member& peer : fleet_->sharing_peers())
        lowest = std::min(lowest, peer.host);
    return lowest;
}

void ControlPlane::choose_membership_view_writer() {
    const std::optional<std::string> writer = membership_view_writer();
    session_->set_view_writer(writer && *writer == host_id(config_.announce));
}

RuntimeConfig ControlPlane::runtime_config() const {
    RuntimeConfig runtime;
    runtime.hash_seed = config_.hash_seed;
    runtime.new_flow_limit = config_.new_flow_limit_per_cpu;
    return runtime;
}

bool ControlPlane::reload() {
    DaemonConfig next;
    try {
        next = load_config(config_path_);
    } catch (const ConfigError& error) {
        for (const std::string& problem : error.problems())
            spdlog::error("reload rejected: {}", problem);
        spdlog::warn("reload rejected: keeping the running configuration");
        return false;
    } catch (const std::exception& error) {
        spdlog::error("reload rejected: {}; keeping the running configuration", error.what());
        return false;
    }
    if (const auto changed = restart_only_changes(config_, next); !changed.empty()) {
        std::string keys;
        for (const std::string_view key : changed)
            keys += (keys.empty() ? "" : ", ") + std::string(key);
        spdlog::warn(
            "reload: {} take{} effect on restart (map sizes: after stickylbd --detach); running with the "
            "current values",
            keys, changed.size() == 1 ? "s" : "");
    }
    // The running map sizes bound the new VIPs and backends; every other restart-only
    // key is kept too.
    keep_restart_only_keys(next, config_);
    if (const auto problems = capacity_problems(next); !problems.empty()) {
        for (const std::string& problem : problems)
            spdlog::error(
                "reload rejected: {} (the running map size; sizes change on restart); keeping the running "
                "configuration",
                problem);
        return false;
    }
    // A weight the file changes outranks the operator's earlier override.
    for (auto& [backend_id, override_of] : overrides_) {
        // A named copy: lambdas may not capture structured bindings before clang 16.
        const BackendId& id = backend_id;
        const auto weight_in = [&](const DaemonConfig& config) -> std::optional<std::uint32_t> {
            for (const auto& vip : config.vips)
                for (const auto& backend : vip.backends)
                    if (vip.name == id.first && backend.name == id.second)
                        return backend.weight;
            return std::nullopt;
        };
        if (override_of.weight && weight_in(next) != weight_in(config_))
            override_of.weight.reset();
    }
    const bool runtime_changed = next.new_flow_limit_per_cpu != config_.new_flow_limit_per_cpu;
    config_ = std::move(next);
    if (runtime_changed)
        maps_.set_runtime_config(runtime_config());
    update_health_targets();
    if (fleet_) {
        fleet_->set_fingerprint(config_fingerprint(config_));
        publish_own_health();
    }
    reconcile(ReconcileCause::reload);
    save_state();
    spdlog::info("reloaded {}", config_path_);
    return true;
}

void ControlPlane::update_health_targets() {
    std::set<std::string> wanted;
    for (const VipConfig& vip : config_.vips)
        for (const BackendConfig& backend : vip.backends) {
            const std::string key = to_string(BackendId{vip.name, backend.name});
            wanted.insert(key);
            checker_.add_or_update(key, probe_for(vip, backend), checker_.health(key));
        }
    for (auto it = health_detail_.begin(); it != health_detail_.end();) {
        if (wanted.count(it->first)) {
            ++it;
            continue;
        }
        checker_.remove(it->first);
        it = health_detail_.erase(it);
    }
    std::erase_if(overrides_, [&](const auto& entry) { return !wanted.count(to_string(entry.first)); });
}

HealthVerdict ControlPlane::own_verdict(const BackendId& id) const {
    switch (checker_.health(to_string(id))) {
    case Health::up: return HealthVerdict::up;
    case Health::down: return HealthVerdict::down;
    case Health::unknown: return HealthVerdict::unknown;
    }
    return HealthVerdict::unknown;
}

void ControlPlane::publish_own_health() {
    if (!fleet_)
        return;
    std::set<std::string> down, unchecked;
    for (const VipConfig& vip : config_.vips)
        for (const BackendConfig& backend : vip.backends) {
            const HealthVerdict own = own_verdict({vip.name, backend.name});
            if (own == HealthVerdict::down)
                down.insert(observation_key(vip, backend.name));
            else if (own == HealthVerdict::unknown)
                unchecked.insert(observation_key(vip, backend.name));
        }
    fleet_->set_own_health(std::move(down), std::move(unchecked));
}

std::optional<HealthVotes> ControlPlane::fleet_votes(const BackendId& id) const {
    if (!fleet_ || fleet_->sharing_peers().empty())
        return std::nullopt;
    return with_vote(fleet_->peer_votes(observation_key(find_vip(id.first), id.second)), own_verdict(id));
}

HealthVerdict ControlPlane::verdict(const BackendId& id) const {
    const auto votes = fleet_votes(id);
    return votes ? fleet_health(*votes) : own_verdict(id);
}

void ControlPlane::reconcile(ReconcileCause cause, std::string_view detail) {
    ++reconciles_;
    const std::string why =
        detail.empty() ? std::string(cause_name(cause)) : std::string(cause_name(cause)) + " " + std::string(detail);
    try {
        std::map<BackendId, BackendState> before;
        for (const DesiredVip& vip : desired_.vips)
            for (const DesiredBackend& backend : vip.backends)
                before[backend.id] = backend.state;
        desired_ = desired_state(
            config_, overrides_, [this](const BackendId& id) { return verdict(id); }, indexes_);
        const ReconcileStats stats = reconciler_.apply(desired_);
        const double now_seconds =
            std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
        for (const auto& [vip, slots] : stats.ring_slots_written_by_vip) {
            RingWrites& writes = ring_writes_[vip];
            ++writes.rewrites;
            writes.slots += slots;
            writes.applied_timestamp_seconds = now_seconds;
        }
        if (exceptions_ && !stats.ring_slots_written_by_vip.empty())
            exceptions_->rings_changed();
        if (stats.changed())
            spdlog::info("reconcile ({}): {} VIPs written, {} removed; {} backends written, {} removed; {} ring slots",
                         why, stats.vips_written, stats.vips_removed, stats.backends_written, stats.backends_removed,
                         stats.ring_slots_written);
        // The data plane has moved: the agents hear of it in the same reconcile.
        const bool book_changed = session_ && session_->update(config_, desired_, failovers_);
        std::erase_if(failovers_, [this](const auto& entry) {
            const BackendId& id = entry.first;
            if (own_verdict(id) != HealthVerdict::down)
                return true;
            for (const DesiredVip& vip : desired_.vips)
                for (const DesiredBackend& backend : vip.backends)
                    if (backend.id == id)
                        return backend.state == BackendState::down;
            return true;
        });
        if ((cause != ReconcileCause::refresh && stats.changed()) || book_changed)
            save_state();
        std::vector<DesiredBackend> gone_down;
        for (const DesiredVip& vip : desired_.vips)
            for (const DesiredBackend& backend : vip.backends)
                if (auto was = before.find(backend.id); vip.settings.persistent && was != before.end() &&
                                                        was->second != BackendState::down &&
                                                        backend.state == BackendState::down)
                    gone_down.push_back(backend);
        if (!gone_down.empty())
            count_moved_clients(gone_down);
    } catch (const std::exception& error) {
        ++reconcile_errors_;
        spdlog::error("reconcile ({}) failed: {}", why, error.what());
    }
}

void ControlPlane::count_moved_clients(const std::vector<DesiredBackend>& gone_down) {
    struct Watched {
        BackendId id;
        std::uint32_t index;
        std::chrono::seconds timeout;
    };
    std::vector<Watched> watched;
    watched.reserve(gone_down.size());
    for (const DesiredBackend& backend : gone_down)
        watched.push_back(
            {backend.id, backend.index, std::chrono::seconds(find_vip(backend.id.first).persistence.timeout_s)});
    worker_.post([this, watched] {
        std::map<std::uint32_t, std::uint64_t> counts;
        try {
            for (const AffinityRecord& record : tables_.affinities())
                for (const Watched& backend : watched)
                    if (record.backend_index == backend.index && record.age < backend.timeout)
                        ++counts[backend.index];
        } catch (const std::exception& error) {
            spdlog::warn("counting the affinity clients of backends gone down: {}", error.what());
            return;
        }
        boost::asio::post(io_, [this, watched, counts] {
            for (const Watched& backend : watched) {
                const auto found = counts.find(backend.index);
                const std::uint64_t moved = found == counts.end() ? 0 : found->second;
                clients_moved_[backend.id] += moved;
                spdlog::info("backend {} down: {} affinity clients move to other backends", to_string(backend.id),
                             moved);
            }
        });
    });
}

void ControlPlane::count_table_entries() {
    const auto now = std::chrono::steady_clock::now();
    if (now - tables_counted_at_ < kTableCountPeriod)
        return;
    tables_counted_at_ = now;
    worker_.post([this] {
        try {
            const std::uint64_t flows = tables_.flows().size(), affinities = tables_.affinities().size();
            boost::asio::post(io_, [this, flows, affinities] {
                flow_entries_ = flows;
                affinity_entries_ = affinities;
            });
        } catch (const std::exception& error) {
            spdlog::warn("counting the flow and affinity tables: {}", error.what());
        }
    });
}

void ControlPlane::on_health_change(const HealthChange& change) {
    auto& detail = health_detail_[change.key];
    ++detail.transitions;
    spdlog::warn("backend {}: health {} -> {} ({})", change.key, to_string(change.from), to_string(change.to),
                 change.last.detail);
    if (change.from == Health::up && change.to == Health::down) {
        const BackendId id = parse_backend_id(change.key);
        failovers_[id] = change.streak_started;
        last_failover_seconds_[id] =
            std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    }
    publish_own_health();
    reconcile(ReconcileCause::health, change.key);
    announce();  // a VIP's last backend going (or the first coming back) moves the route now
}

void ControlPlane::on_probe(const std::string& key, const ProbeResult& result) {
    auto& detail = health_detail_[key];
    detail.last = result;
    detail.latency_seconds.observe(std::chrono::duration<double>(result.latency).count());
}

const VipConfig& ControlPlane::find_vip(const std::string& name) const {
    for (const VipConfig& vip : config_.vips)
        if (vip.name == name)
            return vip;
    throw std::invalid_argument("no VIP named '" + name + "'");
}

BackendId ControlPlane::find_backend(const nlohmann::json& args) const {
    const std::string vip = args.at("vip").get<std::string>();
    const std::string name = args.at("name").get<std::string>();
    for (const BackendConfig& backend : find_vip(vip).backends)
        if (backend.name == name)
            return {vip, name};
    throw std::invalid_argument("VIP '" + vip + "' has no backend named '" + name + "'");
}

// ---- The control socket's commands ----

const std::vector<ControlPlane::HandlerEntry>& ControlPlane::handler_table() {
    static const std::vector<HandlerEntry> table{
        {{"version", "show"}, &ControlPlane::show_version},
        {{"session", "show"}, &ControlPlane::show_session},
        {{"vip", "show"}, &ControlPlane::show_vips},
        {{"backend", "show"}, &ControlPlane::show_backends},
        {{"backend", "drain"}, &ControlPlane::drain_backend},
        {{"backend", "enable"}, &ControlPlane::enable_backend},
        {{"backend", "set"}, &ControlPlane::set_backend},
        {{"flow", "show"}, &ControlPlane::show_flows},
        {{"flow", "flush"}, &ControlPlane::flush_flows},
        {{"affinity", "show"}, &ControlPlane::show_affinities},
        {{"affinity", "flush"}, &ControlPlane::flush_affinities},
        {{"affinity", "save"}, &ControlPlane::save_affinities},
        {{"affinity", "restore"}, &ControlPlane::restore_affinities},
        {{"stats", "show"}, &ControlPlane::show_stats},
        {{"health", "show"}, &ControlPlane::show_health},
        {{"cluster", "show"}, &ControlPlane::show_cluster},
    };
    return table;
}

std::vector<ControlPlane::Command> ControlPlane::commands() {
    std::vector<Command> list;
    for (const HandlerEntry& entry : handler_table())
        list.push_back(entry.command);
    return list;
}

void ControlPlane::handle(const std::string& object, const std::string& verb, const nlohmann::json& args,
                          ControlServer::Reply reply) {
    try {
        for (const HandlerEntry& entry : handler_table())
            if (entry.command.object == object && entry.command.verb == verb) {
                (this->*entry.handler)(args, reply);
                return;
            }
        throw std::invalid_argument("unknown command '" + object + " " + verb + "'");
    } catch (const std::exception& error) {
        reply(nullptr, error.what());
    }
}

void ControlPlane::show_version(const nlohmann::json&, ControlServer::Reply reply) {
    reply({{"version", STICKYLB_VERSION}}, "");
}

void ControlPlane::show_session(const nlohmann::json&, ControlServer::Reply reply) {
    if (session_)
        reply(session_->show(), "");
    else
        reply({{"enabled", false}, {"reason", "no memcached_servers in the configuration"}}, "");
}

void ControlPlane::show_vips(const nlohmann::json& args, ControlServer::Reply reply) {
    if (args.contains("vip"))
        find_vip(args["vip"].get<std::string>());  // an unknown VIP is an error, not an empty list
    nlohmann::json list = nlohmann::json::array();
    for (const DesiredVip& vip : desired_.vips) {
        if (filtered_out(args, "vip", vip.name))
            continue;
        list.push_back({{"name", vip.name},
                        {"address", vip.key.address.to_string()},
                        {"port", vip.key.port},
                        {"protocol", protocol_name(vip.key.protocol)},
                        {"index", vip.settings.index},
                        {"forwarding", forwarding_mode_name(vip.settings.forwarding)},
                        {"persistent", vip.settings.persistent},
                        {"affinity_timeout_seconds", vip.settings.affinity_timeout_s},
                        {"backends", vip.backends.size()},
                        {"ring_sha256", vip_ring_fingerprint(vip)},
                        {"ring_applied_timestamp_seconds", ring_writes(vip.name).applied_timestamp_seconds}});
        if (nlohmann::json announce = announce_json(vip.name); !announce.is_null())
            list.back()["announce"] = std::move(announce);
    }
    reply(list, "");
}

nlohmann::json ControlPlane::announce_json(const std::string& vip) const {
    if (announcer_)
        for (const VipAnnouncement& announcement : announcer_->state())
            if (announcement.vip == vip)
                return {{"state", announcement.route_present ? "announced" : "withdrawn"},
                        {"reason", to_string(announcement.reason)},
                        {"reason_text", description(announcement.reason)},
                        {"changes", announcement.changes},
                        {"since_timestamp_seconds",
                         std::chrono::duration<double>(announcement.since.time_since_epoch()).count()}};
    return nullptr;
}

void ControlPlane::show_cluster(const nlohmann::json&, ControlServer::Reply reply) {
    nlohmann::json result;
    if (fleet_) {
        result = fleet_->show();
        result["flow_exceptions"] = exceptions_ ? exceptions_->show() : nlohmann::json(nullptr);
        const std::optional<std::string> writer = membership_view_writer();
        result["membership_view_writer"] = writer ? nlohmann::json(*writer) : nlohmann::json(nullptr);
    } else {
        result = {{"fleet", nullptr},
                  {"host", host_id(config_.announce)},
                  {"standing", to_string(FleetStanding::agrees)},
                  {"standing_text", !config_.announce.enabled ? "no announce section: this host announces nothing"
                                                              : "no memcached_servers: this host has no peers to "
                                                                "compare its config with"},
                  {"config_sha256", config_fingerprint(config_).digest},
                  {"hosts", nlohmann::json::array()}};
    }
    nlohmann::json vips = nlohmann::json::array();
    for (const DesiredVip& vip : desired_.vips)
        vips.push_back({{"name", vip.name},
                        {"address", vip.key.address.to_string()},
                        {"ring_sha256", vip_ring_fingerprint(vip)},
                        {"ring_applied_timestamp_seconds", ring_writes(vip.name).applied_timestamp_seconds},
                        {"announce", announce_json(vip.name)}});
    result["vips"] = std::move(vips);
    reply(result, "");
}

ControlPlane::RingWrites ControlPlane::ring_writes(const std::string& vip) const {
    const auto found = ring_writes_.find(vip);
    return found == ring_writes_.end() ? RingWrites{} : found->second;
}

std::string ControlPlane::vip_ring_fingerprint(const DesiredVip& vip) const {
    std::map<std::uint32_t, IpAddress> addresses;
    for (const DesiredBackend& backend : vip.backends)
        addresses.emplace(backend.index, backend.address);
    return ring_fingerprint(maps_.read_ring(vip.settings.index), addresses);
}

nlohmann::json ControlPlane::backends_json(const nlohmann::json& args) const {
    nlohmann::json list = nlohmann::json::array();
    for (const DesiredVip& vip : desired_.vips) {
        if (filtered_out(args, "vip", vip.name))
            continue;
        for (const DesiredBackend& backend : vip.backends) {
            if (filtered_out(args, "name", backend.id.second))
                continue;
            const auto override_of = overrides_.find(backend.id);
            const auto stats = maps_.backend_stats(backend.index);
            list.push_back({{"vip", vip.name},
                            {"name", backend.id.second},
                            {"address", backend.address.to_string()},
                            {"index", backend.index},
                            {"weight", backend.weight},
                            {"state", to_string(backend.state)},
                            {"health", to_string(checker_.health(to_string(backend.id)))},
                            {"admin_drained", override_of != overrides_.end() && override_of->second.drained},
                            {"packets", stats.packets},
                            {"bytes", stats.bytes}});
        }
    }
    return list;
}

void ControlPlane::show_backends(const nlohmann::json& args, ControlServer::Reply reply) {
    if (args.contains("vip"))
        find_vip(args["vip"].get<std::string>());
    reply(backends_json(args), "");
}

nlohmann::json ControlPlane::apply_override(const BackendId& id, const AdminOverride& override_of,
                                            std::string_view what) {
    if (override_of == AdminOverride{})
        overrides_.erase(id);
    else
        overrides_[id] = override_of;
    if (fleet_)
        fleet_->set_overrides(shared_overrides());
    reconcile(ReconcileCause::admin, std::string(what) + " " + to_string(id));
    save_state();
    return backends_json(nlohmann::json{{"vip", id.first}, {"name", id.second}});
}

namespace {
AdminOverride current_override(const AdminOverrides& overrides, const BackendId& id) {
    const auto found = overrides.find(id);
    return found == overrides.end() ? AdminOverride{} : found->second;
}
}  // namespace

void ControlPlane::drain_backend(const nlohmann::json& args, ControlServer::Reply reply) {
    const BackendId id = find_backend(args);
    if (args.value("force", false)) {
        force_drain(id, std::move(reply));
        return;
    }
    AdminOverride override_of = current_override(overrides_, id);
    override_of.drained = true;
    reply(apply_override(id, override_of, "drain"), "");
}

void ControlPlane::enable_backend(const nlohmann::json& args, ControlServer::Reply reply) {
    const BackendId id = find_backend(args);
    AdminOverride override_of = current_override(overrides_, id);
    override_of.drained = false;
    reply(apply_override(id, override_of, "enable"), "");
}

void ControlPlane::set_backend(const nlohmann::json& args, ControlServer::Reply reply) {
    const BackendId id = find_backend(args);
    AdminOverride override_of = current_override(overrides_, id);
    override_of.weight = args.at("weight").get<std::uint32_t>();
    reply(apply_override(id, override_of, "set"), "");
}

// Its clients' affinities are pointed at the backend today's ring gives them
// (rather than deleted): a connection still open to the drained backend would
// otherwise re-create its client's affinity on its next refresh. Open connections
// finish where they are; the next connection of each client goes to its new backend.
void ControlPlane::force_drain(const BackendId& id, ControlServer::Reply reply) {
    AdminOverride override_of = current_override(overrides_, id);
    override_of.drained = true;
    const nlohmann::json row = apply_override(id, override_of, "drain force").at(0);
    const VipConfig& vip_config = find_vip(id.first);
    std::optional<DesiredBackend> backend;
    std::uint32_t vip_index = 0;
    for (const DesiredVip& vip : desired_.vips)
        for (const DesiredBackend& candidate : vip.backends)
            if (candidate.id == id) {
                backend = candidate;
                vip_index = vip.settings.index;
            }
    if (!backend)
        throw std::runtime_error("backend " + to_string(id) + " is not in the desired state");
    const bool persistent = vip_config.persistence.enabled;
    auto move = [this, id, reply, row, persistent, vip_index, from = backend->index, ring = maps_.read_ring(vip_index),
                 seed = config_.hash_seed,
                 timeout = std::chrono::seconds(vip_config.persistence.timeout_s)](nlohmann::json view) {
        if (!persistent) {
            nlohmann::json result = row;
            result["clients_moved"] = 0;
            result["view"] = std::move(view);
            reply(result, "");
            return;
        }
        worker_.post([this, id, reply, row, view = std::move(view), vip_index, from, ring, seed, timeout] {
            std::size_t moved = 0;
            std::string error;
            try {
                moved = tables_.reassign_affinities([&](const AffinityRecord& record) -> std::optional<std::uint32_t> {
                    if (record.vip_index != vip_index || record.backend_index != from || record.age >= timeout)
                        return std::nullopt;
                    return ring_pick(ring, seed, record.client);
                });
            } catch (const std::exception& failure) {
                error = std::string("moving the affinity clients: ") + failure.what();
            }
            boost::asio::post(io_, [this, id, reply, row, view, moved, error] {
                clients_moved_[id] += moved;
                if (!error.empty()) {
                    reply(nullptr, error);
                    return;
                }
                spdlog::info("backend {} drained with force: {} affinity clients moved", to_string(id), moved);
                nlohmann::json result = row;
                result["clients_moved"] = moved;
                result["view"] = view;
                reply(result, "");
            });
        });
    };
    if (!session_) {
        move(nullptr);
        return;
    }
    // The agents learn of the drain before its clients start arriving elsewhere.
    const auto limit = config_.session.memcached_connect_timeout + 2 * config_.session.memcached_timeout +
                       std::chrono::milliseconds(500);
    session_->publish_now(limit, [move](const MembershipPublisher::Outcome& outcome, bool timed_out) {
        move({{"servers", outcome.servers},
              {"written", outcome.written},
              {"errors", outcome.errors},
              {"timed_out", timed_out}});
    });
}

void ControlPlane::show_flows(const nlohmann::json& args, ControlServer::Reply reply) {
    table_command("flow", "show", args, std::move(reply));
}
void ControlPlane::flush_flows(const nlohmann::json& args, ControlServer::Reply reply) {
    table_command("flow", "flush", args, std::move(reply));
}
void ControlPlane::show_affinities(const nlohmann::json& args, ControlServer::Reply reply) {
    table_command("affinity", "show", args, std::move(reply));
}
void ControlPlane::flush_affinities(const nlohmann::json& args, ControlServer::Reply reply) {
    table_command("affinity", "flush", args, std::move(reply));
}

void ControlPlane::table_command(const std::string& object, const std::string& verb, const nlohmann::json& args,
                                 ControlServer::Reply reply) {
    const std::optional<std::string> vip =
        args.contains("vip") ? std::optional(args["vip"].get<std::string>()) : std::nullopt;
    const std::optional<std::string> backend =
        args.contains("backend") ? std::optional(args["backend"].get<std::string>()) : std::nullopt;
    const std::optional<IpAddress> client =
        args.contains("client") ? std::optional(IpAddress::parse(args["client"].get<std::string>())) : std::nullopt;
    if (vip)
        find_vip(*vip);  // an unknown VIP is an error, not an empty list
    worker_.post([this, object, verb, vip, backend, client, names = TableNames(desired_), reply] {
        const auto selected = [&](std::uint32_t vip_index, std::uint32_t backend_index, const IpAddress& address) {
            return (!vip || names.vip(vip_index) == *vip) && (!backend || names.backend(backend_index) == *backend) &&
                   (!client || address == *client);
        };
        nlohmann::json result;
        std::string error;
        try {
            if (verb == "flush") {
                const std::size_t removed = object == "flow"
                                                ? tables_.delete_flows([&](const FlowRecord& f) {
                                                      return selected(f.vip_index, f.backend_index, f.client);
                                                  })
                                                : tables_.delete_affinities([&](const AffinityRecord& a) {
                                                      return selected(a.vip_index, a.backend_index, a.client);
                                                  });
                spdlog::info("{} flush: {} entries removed", object, removed);
                result = {{"removed", removed}};
            } else if (object == "flow") {
                result = nlohmann::json::array();
                for (const FlowRecord& f : tables_.flows())
                    if (selected(f.vip_index, f.backend_index, f.client))
                        result.push_back({{"vip", names.vip(f.vip_index)},
                                          {"client", f.client.to_string()},
                                          {"client_port", f.client_port},
                                          {"vip_address", f.vip.to_string()},
                                          {"vip_port", f.vip_port},
                                          {"protocol", protocol_name(f.protocol)},
                                          {"backend", names.backend(f.backend_index)}});
            } else {
                result = nlohmann::json::array();
                for (const AffinityRecord& a : tables_.affinities())
                    if (selected(a.vip_index, a.backend_index, a.client))
                        result.push_back({{"vip", names.vip(a.vip_index)},
                                          {"client", a.client.to_string()},
                                          {"backend", names.backend(a.backend_index)},
                                          {"age_seconds", std::chrono::duration<double>(a.age).count()}});
            }
        } catch (const std::exception& failure) {
            error = object + " " + verb + ": " + failure.what();
            result = nullptr;
        }
        boost::asio::post(io_, [reply, result = std::move(result), error] { reply(result, error); });
    });
}

void ControlPlane::save_affinities(const nlohmann::json&, ControlServer::Reply reply) {
    if (!session_)
        throw std::invalid_argument(
            "affinity save: snapshots live in memcached, and no memcached_servers are "
            "configured");
    session_->save_affinities(std::move(reply));
}

void ControlPlane::restore_affinities(const nlohmann::json&, ControlServer::Reply reply) {
    if (!session_)
        throw std::invalid_argument(
            "affinity restore: snapshots live in memcached, and no memcached_servers are "
            "configured");
    session_->restore_affinities(std::move(reply));
}

nlohmann::json ControlPlane::backend_counters(const DesiredVip& vip) const {
    nlohmann::json backends = nlohmann::json::array();
    for (const DesiredBackend& backend : vip.backends) {
        const auto stats = maps_.backend_stats(backend.index);
        backends.push_back({{"name", backend.id.second},
                            {"state", to_string(backend.state)},
                            {"packets", stats.packets},
                            {"bytes", stats.bytes}});
    }
    return backends;
}

void ControlPlane::show_stats(const nlohmann::json& args, ControlServer::Reply reply) {
    if (args.contains("vip"))
        find_vip(args["vip"].get<std::string>());
    const auto global = maps_.global_stats();
    nlohmann::json result = nlohmann::json::object();
    for (const GlobalCounter& counter : kGlobalCounters)
        result[counter.name] = global.*counter.field;
    nlohmann::json vips = nlohmann::json::array();
    for (const DesiredVip& vip : desired_.vips) {
        if (filtered_out(args, "vip", vip.name))
            continue;
        const auto stats = maps_.vip_stats(vip.settings.index);
        vips.push_back({{"vip", vip.name},
                        {"packets", stats.packets},
                        {"bytes", stats.bytes},
                        {"new_flows", stats.new_flows},
                        {"affinity_hits", stats.affinity_hits},
                        {"affinity_misses", stats.affinity_misses},
                        {"backends", backend_counters(vip)}});
    }
    result["vips"] = vips;
    reply(result, "");
}

void ControlPlane::show_health(const nlohmann::json& args, ControlServer::Reply reply) {
    if (args.contains("vip"))
        find_vip(args["vip"].get<std::string>());
    nlohmann::json list = nlohmann::json::array();
    for (const VipConfig& vip : config_.vips) {
        if (filtered_out(args, "vip", vip.name))
            continue;
        for (const BackendConfig& backend : vip.backends) {
            const BackendId id{vip.name, backend.name};
            const std::string key = to_string(id);
            const auto votes = fleet_votes(id);
            nlohmann::json row{{"vip", vip.name},
                               {"name", backend.name},
                               {"health", to_string(checker_.health(key))},
                               {"verdict", to_string(verdict(id))},
                               {"view", votes ? "fleet" : "own_checks"},
                               {"votes_up", votes ? votes->up : unsigned{own_verdict(id) == HealthVerdict::up}},
                               {"votes_down", votes ? votes->down : unsigned{own_verdict(id) == HealthVerdict::down}}};
            if (auto found = health_detail_.find(key); found != health_detail_.end() && found->second.last) {
                row["last_result"] = found->second.last->success ? "ok" : found->second.last->detail;
                row["last_latency_seconds"] = std::chrono::duration<double>(found->second.last->latency).count();
                row["transitions"] = found->second.transitions;
            }
            list.push_back(row);
        }
    }
    reply(list, "");
}

// ---- State file and metrics ----

void ControlPlane::load_state() {
    if (!std::filesystem::exists(config_.state_file))
        return;
    std::ifstream file(config_.state_file);
    const nlohmann::json state = nlohmann::json::parse(file, nullptr, /*allow_exceptions=*/false);
    if (state.is_discarded()) {
        spdlog::warn("state file {} is not JSON: starting without saved overrides", config_.state_file);
        return;
    }
    indexes_.load_json(state.at("indexes"));
    if (session_ && state.contains("membership"))
        session_->load_state(state["membership"]);
    const nlohmann::json saved_overrides = state.contains("overrides") ? state["overrides"] : nlohmann::json::object();
    for (const auto& [name, saved] : saved_overrides.items()) {
        AdminOverride override_of;
        override_of.drained = saved.value("drained", false);
        if (saved.contains("weight"))
            override_of.weight = saved["weight"].get<std::uint32_t>();
        overrides_[parse_backend_id(name)] = override_of;
    }
}

// Written to a temporary file and renamed: a crash never leaves half a state file.
void ControlPlane::save_state() const {
    nlohmann::json state{{"indexes", indexes_.to_json()}, {"overrides", nlohmann::json::object()}};
    if (session_)
        state["membership"] = session_->state();
    for (const auto& [id, override_of] : overrides_) {
        nlohmann::json saved{{"drained", override_of.drained}};
        if (override_of.weight)
            saved["weight"] = *override_of.weight;
        state["overrides"][to_string(id)] = saved;
    }
    const std::filesystem::path path(config_.state_file);
    std::filesystem::create_directories(path.parent_path());
    const std::filesystem::path temporary = path.string() + ".tmp";
    {
        std::ofstream file(temporary);
        file << state.dump(2) << "\n";
        if (!file)
            throw std::runtime_error("cannot write state file " + temporary.string());
    }
    std::filesystem::rename(temporary, path);
}

std::string ControlPlane::metrics_text() const {
    metrics::MetricsSnapshot snapshot;
    snapshot.global = maps_.global_stats();
    for (const DesiredVip& vip : desired_.vips) {
        const RingWrites writes = ring_writes(vip.name);
        metrics::VipSample vip_sample;
        vip_sample.vip = vip.name;
        vip_sample.stats = maps_.vip_stats(vip.settings.index);
        vip_sample.ring_rewrites = writes.rewrites;
        vip_sample.ring_slots_written = writes.slots;
        vip_sample.ring_applied_timestamp_seconds = writes.applied_timestamp_seconds;
        if (announcer_)
            for (const VipAnnouncement& announcement : announcer_->state())
                if (announcement.vip == vip.name) {
                    vip_sample.announce_reason = announcement.reason;
                    vip_sample.announced = announcement.route_present;
                    vip_sample.announce_changes = announcement.changes;
                }
        snapshot.vips.push_back(std::move(vip_sample));
        for (const DesiredBackend& backend : vip.backends) {
            metrics::BackendSample sample;
            sample.vip = vip.name;
            sample.backend = backend.id.second;
            sample.stats = maps_.backend_stats(backend.index);
            sample.state = static_cast<int>(backend.state);
            sample.health_ok = checker_.health(to_string(backend.id)) == Health::up;
            sample.fleet_votes = fleet_votes(backend.id);
            if (auto found = health_detail_.find(to_string(backend.id)); found != health_detail_.end()) {
                sample.transitions = found->second.transitions;
                sample.check_latency_seconds = &found->second.latency_seconds;
            }
            if (auto moved = clients_moved_.find(backend.id); moved != clients_moved_.end())
                sample.affinity_clients_moved = moved->second;
            if (auto failover = last_failover_seconds_.find(backend.id); failover != last_failover_seconds_.end())
                sample.last_failover_timestamp_seconds = failover->second;
            snapshot.backends.push_back(sample);
        }
    }
    if (session_)
        session_->fill_metrics(snapshot.session);
    if (fleet_)
        fleet_->fill_metrics(snapshot.fleet);
    if (exceptions_)
        exceptions_->fill_metrics(snapshot.fleet);
    snapshot.reconciles = reconciles_;
    snapshot.reconcile_errors = reconcile_errors_;
    snapshot.version = STICKYLB_VERSION;
    snapshot.flow_entries = flow_entries_;
    snapshot.affinity_entries = affinity_entries_;
    snapshot.flow_capacity = maps_.options().flow_entries;
    snapshot.affinity_capacity = maps_.options().affinity_entries;
    return metrics::render_metrics(snapshot);
}

}  // namespace stickylb

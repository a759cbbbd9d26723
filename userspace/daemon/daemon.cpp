// SPDX-License-Identifier: Apache-2.0
#include "daemon/daemon.h"

#include <net/if.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "base/protocol.h"
#include "control/reload_rules.h"
#include "base/errors.h"
#include "session/affinity_snapshot.h"
#include "control/ring_pick.h"
#include "session/signed_value.h"

#ifndef STICKYLB_VERSION
#define STICKYLB_VERSION "0.0.0"
#endif

namespace stickylb {
namespace {

constexpr auto kRefreshPeriod = std::chrono::seconds(1);  // next-hop MACs, periodic reconcile

LoadOptions load_options_for(const DaemonConfig& config) {
    LoadOptions options;
    options.pin_dir = config.pin_dir;
    options.ring_size = config.ring_size;
    options.max_vips = config.max_vips;
    options.max_backends = config.max_backends;
    options.flow_entries = config.flow_table_size;
    options.affinity_entries = config.affinity_table_size;
    return options;
}

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

}  // namespace

Daemon::Daemon(boost::asio::io_context& io, std::string config_path)
    : io_(io), config_path_(std::move(config_path)), signals_(io), refresh_timer_(io) {}

// Threads first: their jobs refer to the tables and to the session coordinator.
Daemon::~Daemon() {
    if (session_)
        session_->stop();
    if (worker_)
        worker_->stop();
}

void Daemon::start() {
    config_ = load_config(config_path_);
    ifindex_ = if_nametoindex(config_.interface.c_str());
    if (ifindex_ == 0)
        throw std::runtime_error("interface '" + config_.interface + "' does not exist");

    // No affinity table pinned: a new or rebooted LB host, whose clients the
    // last affinity snapshot brings back before XDP forwards anything.
    const bool fresh_tables = !std::filesystem::exists(config_.pin_dir + "/affinity");
    plane_.emplace(DataPlane::load(load_options_for(config_)));
    tables_.emplace(PinnedMaps::open(config_.pin_dir));
    worker_ = std::make_unique<BackgroundWorker>("slb-tables");
    if (config_.session_enabled())
        session_ = std::make_unique<SessionCoordinator>(io_, config_, *tables_, *worker_,
                                                        [this] { return affinity_layout(desired_); });
    indexes_.emplace(config_.max_vips, config_.max_backends);
    load_state();
    std::map<std::string, session::MembershipView> recovered;
    if (session_)
        recovered = session_->recover_views(config_);

    plane_->set_runtime_config(runtime_config());

    neighbours_ = std::make_unique<NeighbourTable>();
    reconciler_.emplace(
        *plane_, config_.hash_seed, EgressInterface{MacAddress::of_interface(config_.interface), ifindex_},
        [this](const DesiredBackend& backend, ForwardingMode mode) { return resolve_mac(backend, mode); });

    // Adopt what a previous daemon left pinned: backend states seed the health checks,
    // so nothing flaps while the first probes run.
    std::vector<std::uint32_t> adopted;
    std::map<BackendId, BackendState> adopted_states;
    for (const auto& [id, index] : indexes_->backends()) {
        adopted.push_back(index);
        if (auto entry = plane_->read_backend(index))
            adopted_states[id] = entry->state;
    }
    reconciler_->adopt(adopted);
    if (!adopted.empty())
        spdlog::info("adopted pinned state from {}: {} VIPs, {} backends", config_.pin_dir, plane_->vips().size(),
                     adopted.size());

    checker_ = std::make_unique<HealthChecker>(
        io_, [this](const HealthChange& change) { on_health_change(change); },
        [this](const std::string& key, const ProbeResult& result) { on_probe(key, result); });
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
            checker_->add_or_update(to_string(id), probe_for(vip, backend), initial);
        }

    reconcile("start");
    if (session_ && fresh_tables)
        session_->restore_at_start();
    const AttachResult attached = plane_->attach(config_.interface, config_.attach_mode);
    spdlog::info("XDP on {}: {} mode, {}", config_.interface, to_string(attached.mode),
                 attached.replaced ? "program replaced in place" : "attached");

    ControlOptions control_options;
    if (!config_.control_group.empty())
        control_options.group = control_group_id(config_.control_group);
    control_ = std::make_unique<ControlServer>(
        io_, config_.control_socket,
        [this](const std::string& object, const std::string& verb, const nlohmann::json& args,
               ControlServer::Reply reply) { handle_async(object, verb, args, std::move(reply)); },
        control_options);
    metrics_ = std::make_unique<metrics::MetricsServer>(io_, config_.metrics_listen, [this] { return metrics_text(); });
    spdlog::info("control socket {}, metrics on http://{}/metrics", config_.control_socket, config_.metrics_listen);
    if (session_) {
        session_->start();
        spdlog::info("session coordination with {} memcached servers: views every {} ms, affinity snapshots {}",
                     config_.memcached_servers.size(), config_.session.view_refresh_interval.count(),
                     config_.session.affinity_save_interval.count() > 0
                         ? "every " + std::to_string(config_.session.affinity_save_interval.count()) + " ms"
                         : std::string("off"));
    }
    watch_signals();
    schedule_refresh();
}

void Daemon::watch_signals() {
    signals_.add(SIGHUP);
    signals_.add(SIGTERM);
    signals_.add(SIGINT);
    signals_.async_wait([this](const boost::system::error_code& error, int signal) {
        if (error)
            return;
        if (signal == SIGHUP) {
            reload();
            signals_.clear();
            watch_signals();
            return;
        }
        stop(signal);
    });
}

void Daemon::stop(int signal) {
    spdlog::info("signal {}: stopping; the data plane keeps forwarding", signal);
    refresh_timer_.cancel();
    if (checker_)
        checker_->stop();
    if (control_)
        control_->stop();
    if (metrics_)
        metrics_->stop();
    signals_.clear();
    // A last affinity snapshot (bounded); the io_context runs until it is done.
    if (session_)
        session_->shutdown([] {});
}

void Daemon::schedule_refresh() {
    refresh_timer_.expires_after(kRefreshPeriod);
    refresh_timer_.async_wait([this](const boost::system::error_code& error) {
        if (error)
            return;
        reconcile("refresh");
        schedule_refresh();
    });
}

RuntimeConfig Daemon::runtime_config() const {
    RuntimeConfig runtime;
    runtime.hash_seed = config_.hash_seed;
    runtime.new_flow_limit = config_.new_flow_limit_per_cpu;
    return runtime;
}

void Daemon::reload() {
    DaemonConfig next;
    try {
        next = load_config(config_path_);
    } catch (const ConfigError& error) {
        for (const std::string& problem : error.problems())
            spdlog::error("reload rejected: {}", problem);
        spdlog::warn("reload rejected: keeping the running configuration");
        return;
    } catch (const std::exception& error) {
        spdlog::error("reload rejected: {}; keeping the running configuration", error.what());
        return;
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
        return;
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
        plane_->set_runtime_config(runtime_config());
    update_health_targets();
    reconcile("reload");
    save_state();
    spdlog::info("reloaded {}", config_path_);
}

void Daemon::update_health_targets() {
    std::set<std::string> wanted;
    for (const VipConfig& vip : config_.vips)
        for (const BackendConfig& backend : vip.backends) {
            const std::string key = to_string(BackendId{vip.name, backend.name});
            wanted.insert(key);
            checker_->add_or_update(key, probe_for(vip, backend), checker_->health(key));
        }
    for (auto it = health_detail_.begin(); it != health_detail_.end();) {
        if (wanted.count(it->first)) {
            ++it;
            continue;
        }
        checker_->remove(it->first);
        it = health_detail_.erase(it);
    }
    std::erase_if(overrides_, [&](const auto& entry) { return !wanted.count(to_string(entry.first)); });
}

HealthVerdict Daemon::verdict(const BackendId& id) const {
    if (!checker_)
        return HealthVerdict::unknown;
    switch (checker_->health(to_string(id))) {
    case Health::up: return HealthVerdict::up;
    case Health::down: return HealthVerdict::down;
    case Health::unknown: return HealthVerdict::unknown;
    }
    return HealthVerdict::unknown;
}

void Daemon::reconcile(const std::string& why) {
    ++reconciles_;
    try {
        std::map<BackendId, BackendState> before;
        for (const DesiredVip& vip : desired_.vips)
            for (const DesiredBackend& backend : vip.backends)
                before[backend.id] = backend.state;
        desired_ = desired_state(
            config_, overrides_, [this](const BackendId& id) { return verdict(id); }, *indexes_);
        const ReconcileStats stats = reconciler_->apply(desired_);
        for (const auto& [vip, slots] : stats.ring_slots_written_by_vip) {
            ++ring_writes_[vip].rewrites;
            ring_writes_[vip].slots += slots;
        }
        if (stats.changed())
            spdlog::info("reconcile ({}): {} VIPs written, {} removed; {} backends written, {} removed; {} ring slots",
                         why, stats.vips_written, stats.vips_removed, stats.backends_written, stats.backends_removed,
                         stats.ring_slots_written);
        // The data plane has moved: the agents hear of it in the same reconcile.
        const bool book_changed = session_ && session_->update(config_, desired_, failovers_);
        failovers_.clear();
        if ((why != "refresh" && stats.changed()) || book_changed)
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

void Daemon::count_moved_clients(const std::vector<DesiredBackend>& gone_down) {
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
    worker_->post([this, watched] {
        std::map<std::uint32_t, std::uint64_t> counts;
        try {
            for (const AffinityRecord& record : tables_->affinities())
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

void Daemon::on_health_change(const HealthChange& change) {
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
    reconcile("health " + change.key);
}

void Daemon::on_probe(const std::string& key, const ProbeResult& result) {
    auto& detail = health_detail_[key];
    detail.last = result;
    detail.latency_seconds.observe(std::chrono::duration<double>(result.latency).count());
}

std::optional<MacAddress> Daemon::resolve_mac(const DesiredBackend& backend, ForwardingMode mode) {
    try {
        IpAddress next_hop = backend.next_hop.value_or(backend.address);
        std::uint32_t ifindex = ifindex_;
        if (mode == ForwardingMode::ipip && !backend.next_hop)
            std::tie(next_hop, ifindex) = neighbours_->next_hop(backend.address);
        if (auto mac = neighbours_->lookup(ifindex, next_hop))
            return mac;
        neighbours_->ensure_resolving(ifindex, next_hop);
    } catch (const std::exception& error) {
        spdlog::warn("next hop of backend {}: {}", to_string(backend.id), error.what());
    }
    return std::nullopt;  // the tc slow path forwards meanwhile
}

const VipConfig& Daemon::find_vip(const std::string& name) const {
    for (const VipConfig& vip : config_.vips)
        if (vip.name == name)
            return vip;
    throw std::invalid_argument("no VIP named '" + name + "'");
}

BackendId Daemon::find_backend(const nlohmann::json& args) const {
    const std::string vip = args.at("vip").get<std::string>();
    const std::string name = args.at("name").get<std::string>();
    for (const BackendConfig& backend : find_vip(vip).backends)
        if (backend.name == name)
            return {vip, name};
    throw std::invalid_argument("VIP '" + vip + "' has no backend named '" + name + "'");
}

nlohmann::json Daemon::backends_json(const nlohmann::json& args) const {
    nlohmann::json list = nlohmann::json::array();
    for (const DesiredVip& vip : desired_.vips) {
        if (args.contains("vip") && args["vip"] != vip.name)
            continue;
        for (const DesiredBackend& backend : vip.backends) {
            if (args.contains("name") && args["name"] != backend.id.second)
                continue;
            const auto override_of = overrides_.find(backend.id);
            const auto stats = plane_->backend_stats(backend.index);
            list.push_back({{"vip", vip.name},
                            {"name", backend.id.second},
                            {"address", backend.address.to_string()},
                            {"index", backend.index},
                            {"weight", backend.weight},
                            {"state", to_string(backend.state)},
                            {"health", to_string(checker_->health(to_string(backend.id)))},
                            {"admin_drained", override_of != overrides_.end() && override_of->second.drained},
                            {"packets", stats.packets},
                            {"bytes", stats.bytes}});
        }
    }
    return list;
}

void Daemon::handle_async(const std::string& object, const std::string& verb, const nlohmann::json& args,
                          ControlServer::Reply reply) {
    try {
        if (object == "backend" && verb == "drain" && args.value("force", false)) {
            force_drain(find_backend(args), std::move(reply));
            return;
        }
        if (object == "affinity" && (verb == "save" || verb == "restore")) {
            if (!session_)
                throw std::invalid_argument("affinity " + verb +
                                            ": snapshots live in memcached, and no "
                                            "memcached_servers are configured");
            if (verb == "save")
                session_->save_affinities(std::move(reply));
            else
                session_->restore_affinities(std::move(reply));
            return;
        }
        reply(handle(object, verb, args), "");
    } catch (const std::exception& error) {
        reply(nullptr, error.what());
    }
}

// Its clients' affinities are pointed at the backend today's ring gives them
// (rather than deleted): a connection still open to the drained backend would
// otherwise re-create its client's affinity on its next refresh. Open connections
// finish where they are; the next connection of each client goes to its new backend.
void Daemon::force_drain(const BackendId& id, ControlServer::Reply reply) {
    overrides_[id].drained = true;
    reconcile("admin drain force " + to_string(id));
    save_state();
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
    const nlohmann::json row = backends_json(nlohmann::json{{"vip", id.first}, {"name", id.second}}).at(0);
    const bool persistent = vip_config.persistence.enabled;
    auto move = [this, id, reply, row, persistent, vip_index, from = backend->index,
                 ring = plane_->read_ring(vip_index), seed = config_.hash_seed,
                 timeout = std::chrono::seconds(vip_config.persistence.timeout_s)](nlohmann::json view) {
        if (!persistent) {
            nlohmann::json result = row;
            result["clients_moved"] = 0;
            result["view"] = std::move(view);
            reply(result, "");
            return;
        }
        worker_->post([this, id, reply, row, view = std::move(view), vip_index, from, ring, seed, timeout] {
            std::size_t moved = 0;
            std::string error;
            try {
                moved = tables_->reassign_affinities([&](const AffinityRecord& record) -> std::optional<std::uint32_t> {
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

nlohmann::json Daemon::handle(const std::string& object, const std::string& verb, const nlohmann::json& args) {
    if (object == "version")
        return {{"version", STICKYLB_VERSION}};
    if (object == "session" && verb == "show") {
        if (session_)
            return session_->show();
        return {{"enabled", false}, {"reason", "no memcached_servers in the configuration"}};
    }
    if (object == "vip" && verb == "show") {
        nlohmann::json list = nlohmann::json::array();
        for (const DesiredVip& vip : desired_.vips) {
            if (args.contains("vip") && args["vip"] != vip.name)
                continue;
            list.push_back({{"name", vip.name},
                            {"address", vip.key.address.to_string()},
                            {"port", vip.key.port},
                            {"protocol", protocol_name(vip.key.protocol)},
                            {"index", vip.settings.index},
                            {"forwarding", vip.settings.forwarding == ForwardingMode::ipip ? "ipip" : "l2"},
                            {"persistent", vip.settings.persistent},
                            {"affinity_timeout_seconds", vip.settings.affinity_timeout_s},
                            {"backends", vip.backends.size()}});
        }
        return list;
    }
    if (object == "backend" && verb == "show")
        return backends_json(args);
    if (object == "backend" && (verb == "drain" || verb == "enable" || verb == "set")) {
        const BackendId id = find_backend(args);
        AdminOverride& override_of = overrides_[id];
        if (verb == "drain") {
            override_of.drained = true;
        } else if (verb == "enable") {
            override_of.drained = false;
        } else {
            override_of.weight = args.at("weight").get<std::uint32_t>();
        }
        if (override_of == AdminOverride{})
            overrides_.erase(id);
        reconcile("admin " + verb + " " + to_string(id));
        save_state();
        nlohmann::json selector{{"vip", id.first}, {"name", id.second}};
        return backends_json(selector);
    }
    if (object == "flow" || object == "affinity")
        return table_command(object, verb, args);
    if (object == "health" && verb == "show") {
        nlohmann::json list = nlohmann::json::array();
        for (const VipConfig& vip : config_.vips) {
            if (args.contains("vip") && args["vip"] != vip.name)
                continue;
            for (const BackendConfig& backend : vip.backends) {
                const std::string key = to_string(BackendId{vip.name, backend.name});
                nlohmann::json row{
                    {"vip", vip.name}, {"name", backend.name}, {"health", to_string(checker_->health(key))}};
                if (auto found = health_detail_.find(key); found != health_detail_.end() && found->second.last) {
                    row["last_result"] = found->second.last->success ? "ok" : found->second.last->detail;
                    row["last_latency_seconds"] = std::chrono::duration<double>(found->second.last->latency).count();
                    row["transitions"] = found->second.transitions;
                }
                list.push_back(row);
            }
        }
        return list;
    }
    if (object == "stats" && verb == "show") {
        const auto global = plane_->global_stats();
        nlohmann::json result = nlohmann::json::object();
        for (const GlobalCounter& counter : kGlobalCounters)
            result[counter.name] = global.*counter.field;
        nlohmann::json vips = nlohmann::json::array();
        for (const DesiredVip& vip : desired_.vips) {
            if (args.contains("vip") && args["vip"] != vip.name)
                continue;
            const auto stats = plane_->vip_stats(vip.settings.index);
            vips.push_back({{"vip", vip.name},
                            {"packets", stats.packets},
                            {"bytes", stats.bytes},
                            {"new_flows", stats.new_flows},
                            {"affinity_hits", stats.affinity_hits},
                            {"affinity_misses", stats.affinity_misses},
                            {"backends", backend_counters(vip)}});
        }
        result["vips"] = vips;
        return result;
    }
    throw std::invalid_argument("unknown command '" + object + " " + verb + "'");
}

nlohmann::json Daemon::backend_counters(const DesiredVip& vip) const {
    nlohmann::json backends = nlohmann::json::array();
    for (const DesiredBackend& backend : vip.backends) {
        const auto stats = plane_->backend_stats(backend.index);
        backends.push_back({{"name", backend.id.second},
                            {"state", to_string(backend.state)},
                            {"packets", stats.packets},
                            {"bytes", stats.bytes}});
    }
    return backends;
}

std::string Daemon::vip_name(std::uint32_t vip_index) const {
    for (const DesiredVip& vip : desired_.vips)
        if (vip.settings.index == vip_index)
            return vip.name;
    return "#" + std::to_string(vip_index);
}

std::string Daemon::backend_name(std::uint32_t backend_index) const {
    for (const DesiredVip& vip : desired_.vips)
        for (const DesiredBackend& backend : vip.backends)
            if (backend.index == backend_index)
                return backend.id.second;
    return "#" + std::to_string(backend_index);
}

// flow|affinity show|flush [vip VIP] [backend NAME] [client ADDR], straight from the pinned tables.
nlohmann::json Daemon::table_command(const std::string& object, const std::string& verb, const nlohmann::json& args) {
    const std::optional<std::string> vip =
        args.contains("vip") ? std::optional(args["vip"].get<std::string>()) : std::nullopt;
    const std::optional<std::string> backend =
        args.contains("backend") ? std::optional(args["backend"].get<std::string>()) : std::nullopt;
    const std::optional<IpAddress> client =
        args.contains("client") ? std::optional(IpAddress::parse(args["client"].get<std::string>())) : std::nullopt;
    if (vip)
        find_vip(*vip);  // an unknown VIP is an error, not an empty list
    const auto selected = [&](std::uint32_t vip_index, std::uint32_t backend_index, const IpAddress& address) {
        return (!vip || vip_name(vip_index) == *vip) && (!backend || backend_name(backend_index) == *backend) &&
               (!client || address == *client);
    };
    if (verb == "flush") {
        const std::size_t removed = object == "flow" ? tables_->delete_flows([&](const FlowRecord& f) {
            return selected(f.vip_index, f.backend_index, f.client);
        })
                                                     : tables_->delete_affinities([&](const AffinityRecord& a) {
                                                           return selected(a.vip_index, a.backend_index, a.client);
                                                       });
        spdlog::info("{} flush: {} entries removed", object, removed);
        return {{"removed", removed}};
    }
    if (verb != "show")
        throw std::invalid_argument("unknown command '" + object + " " + verb + "'");
    nlohmann::json list = nlohmann::json::array();
    if (object == "flow") {
        for (const FlowRecord& f : tables_->flows())
            if (selected(f.vip_index, f.backend_index, f.client))
                list.push_back({{"vip", vip_name(f.vip_index)},
                                {"client", f.client.to_string()},
                                {"client_port", f.client_port},
                                {"vip_address", f.vip.to_string()},
                                {"vip_port", f.vip_port},
                                {"protocol", protocol_name(f.protocol)},
                                {"backend", backend_name(f.backend_index)}});
    } else {
        for (const AffinityRecord& a : tables_->affinities())
            if (selected(a.vip_index, a.backend_index, a.client))
                list.push_back({{"vip", vip_name(a.vip_index)},
                                {"client", a.client.to_string()},
                                {"backend", backend_name(a.backend_index)},
                                {"age_seconds", std::chrono::duration<double>(a.age).count()}});
    }
    return list;
}

void Daemon::load_state() {
    if (!std::filesystem::exists(config_.state_file))
        return;
    std::ifstream file(config_.state_file);
    const nlohmann::json state = nlohmann::json::parse(file, nullptr, /*allow_exceptions=*/false);
    if (state.is_discarded()) {
        spdlog::warn("state file {} is not JSON: starting without saved overrides", config_.state_file);
        return;
    }
    indexes_->load_json(state.at("indexes"));
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
void Daemon::save_state() const {
    nlohmann::json state{{"indexes", indexes_->to_json()}, {"overrides", nlohmann::json::object()}};
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

std::string Daemon::metrics_text() const {
    metrics::MetricsSnapshot snapshot;
    snapshot.global = plane_->global_stats();
    for (const DesiredVip& vip : desired_.vips) {
        const auto ring = ring_writes_.find(vip.name);
        const RingWrites writes = ring == ring_writes_.end() ? RingWrites{} : ring->second;
        snapshot.vips.push_back({vip.name, plane_->vip_stats(vip.settings.index), writes.rewrites, writes.slots});
        for (const DesiredBackend& backend : vip.backends) {
            metrics::BackendSample sample;
            sample.vip = vip.name;
            sample.backend = backend.id.second;
            sample.stats = plane_->backend_stats(backend.index);
            sample.state = static_cast<int>(backend.state);
            sample.health_ok = checker_->health(to_string(backend.id)) == Health::up;
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
    snapshot.reconciles = reconciles_;
    snapshot.reconcile_errors = reconcile_errors_;
    snapshot.version = STICKYLB_VERSION;
    // Counting a table walks it (a million entries: most of a second): at most
    // every 10 s whatever the scrape rate, and on the worker, never here.
    const auto now = std::chrono::steady_clock::now();
    if (now - tables_counted_at_ > std::chrono::seconds(10)) {
        tables_counted_at_ = now;
        worker_->post([this] {
            try {
                const std::uint64_t flows = tables_->flows().size(), affinities = tables_->affinities().size();
                boost::asio::post(io_, [this, flows, affinities] {
                    flow_entries_ = flows;
                    affinity_entries_ = affinities;
                });
            } catch (const std::exception& error) {
                spdlog::warn("counting the flow and affinity tables: {}", error.what());
            }
        });
    }
    snapshot.flow_entries = flow_entries_;
    snapshot.affinity_entries = affinity_entries_;
    snapshot.flow_capacity = plane_->options().flow_entries;
    snapshot.affinity_capacity = plane_->options().affinity_entries;
    return metrics::render_metrics(snapshot);
}

int check_config(const std::string& path) {
    try {
        const DaemonConfig config = load_config(path);
        if (config.session_enabled() && !config.session.key_file.empty())
            session::SigningKey::load(config.session.key_file);  // throws what is wrong with it
        std::size_t backends = 0;
        for (const auto& vip : config.vips)
            backends += vip.backends.size();
        std::printf("%s: valid (%zu VIPs, %zu backends)\n", path.c_str(), config.vips.size(), backends);
        return 0;
    } catch (const ConfigError& error) {
        for (const std::string& problem : error.problems())
            std::fprintf(stderr, "Error: %s\n", problem.c_str());
    } catch (const std::exception& error) {
        std::fprintf(stderr, "Error: %s\n", error.what());
    }
    return 1;
}

int detach_data_plane(const std::string& config_path) {
    const DaemonConfig config = load_config(config_path);
    DataPlane plane = DataPlane::load(load_options_for(config));
    plane.detach(config.interface);
    plane.unpin_maps();
    std::filesystem::remove(config.state_file);
    std::printf("detached from %s; maps unpinned from %s\n", config.interface.c_str(), config.pin_dir.c_str());
    return 0;
}

}  // namespace stickylb

// SPDX-License-Identifier: Apache-2.0
#include "session/session_coordinator.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include <algorithm>

namespace stickylb {
namespace {

using Clock = std::chrono::steady_clock;
namespace asio = boost::asio;

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Long enough for a million entries to a healthy server; each step is bounded
// by the memcached timeouts anyway, and a failing server is dropped at once.
constexpr std::chrono::seconds kSnapshotWaitLimit{60};
// What a last snapshot may add to a SIGTERM.
constexpr std::chrono::seconds kShutdownSaveLimit{20};

std::string join(const std::vector<std::string>& parts) {
    std::string text;
    for (const std::string& part : parts)
        text += (text.empty() ? "" : "; ") + part;
    return text;
}

}  // namespace

SessionCoordinator::SessionCoordinator(asio::io_context& io, const DaemonConfig& config, ClientTables& tables,
                                       BackgroundWorker& worker, Layout layout)
    : io_(io),
      settings_(config.session),
      view_ttl_(std::chrono::duration_cast<std::chrono::seconds>(config.session.view_ttl)),
      tables_(tables),
      worker_(worker),
      layout_(std::move(layout)),
      refresh_timer_(io),
      save_timer_(io) {
    if (!settings_.key_file.empty()) {
        key_.emplace(session::SigningKey::load(settings_.key_file));
        spdlog::info("memcached data (membership views, affinity snapshots) signed and checked with the key in {}",
                     settings_.key_file);
    } else {
        spdlog::warn(
            "memcached data (membership views, affinity snapshots) is not authenticated: anyone who can "
            "write to memcached can forge it; set session.key_file (docs/security.md)");
    }
    MemcachedLinkOptions options;
    options.timeouts = {settings_.memcached_connect_timeout, settings_.memcached_timeout};
    for (const std::string& server : config.memcached_servers)
        links_.push_back(std::make_shared<MemcachedLink>(server, options));
    const session::SigningKey* key = key_ ? &*key_ : nullptr;
    publisher_ = std::make_unique<MembershipPublisher>(io_, links_, view_ttl_, key);
    SnapshotLimits limits;
    limits.max_entries = config.affinity_table_size;
    store_ = std::make_unique<AffinityStore>(links_, kSnapshotWaitLimit, kDefaultChunkBytes, key, limits);
}

SessionCoordinator::~SessionCoordinator() { stop(); }

void SessionCoordinator::stop() {
    *alive_ = false;
    refresh_timer_.cancel();
    save_timer_.cancel();
    for (const auto& link : links_)
        link->stop();
    shutdown_guard_.reset();
}

void SessionCoordinator::load_state(const nlohmann::json& saved) {
    try {
        book_.load_json(saved);
    } catch (const std::exception& error) {
        spdlog::warn("state file: {}: epochs and incarnations come from memcached alone", error.what());
    }
}

nlohmann::json SessionCoordinator::state() const { return book_.to_json(); }

std::map<std::string, session::MembershipView> SessionCoordinator::recover_views(const DaemonConfig& config) {
    std::vector<std::string> clusters;
    for (const VipConfig& vip : config.vips)
        if (std::find(clusters.begin(), clusters.end(), cluster_name(vip)) == clusters.end())
            clusters.push_back(cluster_name(vip));
    const ViewsRead read =
        read_views(links_, clusters,
                   settings_.memcached_connect_timeout + 2 * settings_.memcached_timeout + std::chrono::seconds(1),
                   key_ ? &*key_ : nullptr, session::kViewFreshnessTtls * settings_.view_ttl);
    for (const std::string& problem : read.problems)
        spdlog::warn("reading the membership views: {}", problem);
    count_rejections(read.rejected);
    std::map<std::string, session::MembershipView> newest;
    for (const session::MembershipView& view : read.views) {
        book_.recover(view);
        auto [kept, inserted] = newest.try_emplace(view.cluster, view);
        if (!inserted && view.epoch > kept->second.epoch)
            kept->second = view;
    }
    for (const auto& [cluster, view] : newest)
        spdlog::info("membership view of {} found in memcached: epoch {}", cluster, view.epoch);
    return newest;
}

bool SessionCoordinator::update(const DaemonConfig& config, const DesiredState& desired,
                                const std::map<BackendId, Clock::time_point>& failovers) {
    longest_affinity_timeout_s_ = 0;
    for (const VipConfig& vip : config.vips)
        if (vip.persistence.enabled)
            longest_affinity_timeout_s_ = std::max(longest_affinity_timeout_s_, vip.persistence.timeout_s);
    last_states_ = cluster_states(config, desired);
    const std::vector<std::string> changed = book_.update(last_states_);
    if (changed.empty())
        return false;
    std::vector<session::MembershipView> views;
    for (const std::string& cluster : changed) {
        const session::MembershipView* view = book_.find(cluster);
        views.push_back(*view);
        std::string states;
        for (const auto& [name, member] : view->backends)
            states += " " + name + "=" + std::string(session::to_string(member.state)) + "/" +
                      std::to_string(member.incarnation);
        spdlog::info("membership view {} epoch {}:{}", cluster, view->epoch, states);
    }
    for (const auto& [id, first_failure] : failovers) {
        for (const VipConfig& vip : config.vips) {
            if (vip.name != id.first)
                continue;
            const std::string& cluster = cluster_name(vip);
            const session::MembershipView* view = book_.find(cluster);
            const session::Member* member = view ? view->find(id.second) : nullptr;
            if (std::find(changed.begin(), changed.end(), cluster) != changed.end() && member &&
                member->state == session::MemberState::down)
                publisher_->expect_failover(cluster, view->epoch, first_failure);
        }
    }
    publish(views);
    return true;
}

void SessionCoordinator::publish_now(std::chrono::milliseconds limit,
                                     std::function<void(const MembershipPublisher::Outcome&, bool)> done) {
    struct Once {
        std::function<void(const MembershipPublisher::Outcome&, bool)> done;
        asio::steady_timer timer;
        bool finished = false;
    };
    auto once = std::make_shared<Once>(Once{std::move(done), asio::steady_timer(io_), false});
    once->timer.expires_after(limit);
    once->timer.async_wait([once](const boost::system::error_code& error) {
        if (error || once->finished)
            return;
        once->finished = true;
        once->done(MembershipPublisher::Outcome{}, true);
    });
    publish(book_.views(), [once](const MembershipPublisher::Outcome& outcome) {
        if (once->finished)
            return;
        once->finished = true;
        once->timer.cancel();
        once->done(outcome, false);
    });
}

void SessionCoordinator::start() {
    schedule_refresh();
    if (settings_.affinity_save_interval.count() > 0)
        schedule_save();
}

void SessionCoordinator::schedule_refresh() {
    refresh_timer_.expires_after(settings_.view_refresh_interval);
    refresh_timer_.async_wait([this](const boost::system::error_code& error) {
        if (error)
            return;
        publish(book_.views());
        schedule_refresh();
    });
}

void SessionCoordinator::publish(const std::vector<session::MembershipView>& views,
                                 std::function<void(const MembershipPublisher::Outcome&)> done) {
    if (view_writer()) {
        publisher_->publish(views, std::move(done));
    } else if (done) {
        done(MembershipPublisher::Outcome{});
    }
}

void SessionCoordinator::set_view_writer(bool writer) {
    if (writer == writer_)
        return;
    writer_ = writer;
    if (!writer) {
        spdlog::info("membership views: another LB host of the fleet writes them");
        return;
    }
    if (taking_over_)
        return;  // the read under way serves
    taking_over_ = true;
    std::vector<std::string> clusters;
    for (const session::MembershipView& view : book_.views())
        clusters.push_back(view.cluster);
    // Only the io_context and what is captured are touched on the worker.
    worker_.post([this, &io = io_, alive = alive_, links = links_, clusters, key = key_,
                  limit = settings_.memcached_connect_timeout + 2 * settings_.memcached_timeout,
                  freshness = session::kViewFreshnessTtls * settings_.view_ttl] {
        auto read = std::make_shared<ViewsRead>(read_views(links, clusters, limit, key ? &*key : nullptr, freshness));
        boost::asio::post(io, [this, alive, read] {
            if (*alive)
                take_over(*read);
        });
    });
}

void SessionCoordinator::take_over(const ViewsRead& read) {
    taking_over_ = false;
    for (const std::string& problem : read.problems)
        spdlog::warn("membership views, taking over: {}", problem);
    count_rejections(read.rejected);
    for (const session::MembershipView& view : read.views)
        book_.take_over(view);
    if (!last_states_.empty())
        book_.update(last_states_);
    if (!writer_)
        return;
    std::string epochs;
    for (const session::MembershipView& view : book_.views())
        epochs += " " + view.cluster + "=" + std::to_string(view.epoch);
    spdlog::info("membership views: this host writes them now, from the {} found in memcached; epochs{}",
                 read.views.size(), epochs);
    publisher_->publish(book_.views());
}

void SessionCoordinator::schedule_save() {
    save_timer_.expires_after(settings_.affinity_save_interval);
    save_timer_.async_wait([this](const boost::system::error_code& error) {
        if (error)
            return;
        if (!saving_)
            save([](const SnapshotSaveResult&, const std::string&) {}, /*routine=*/true);
        schedule_save();
    });
}

std::chrono::seconds SessionCoordinator::snapshot_ttl() const {
    // An entry saved now is useful until its VIP's timeout has passed, and the
    // next snapshot replaces this one one interval later.
    return std::chrono::seconds(longest_affinity_timeout_s_) +
           std::chrono::ceil<std::chrono::seconds>(settings_.affinity_save_interval) + std::chrono::seconds(60);
}

void SessionCoordinator::save(std::function<void(const SnapshotSaveResult&, const std::string&)> done, bool routine) {
    saving_ = true;
    worker_.post([this, alive = alive_, layout = layout_(), ttl = snapshot_ttl(), done = std::move(done), routine] {
        SnapshotSaveResult result;
        std::string error;
        try {
            const AffinitySnapshot snapshot = snapshot_of(tables_.affinities(), layout, wall_ms());
            result = store_->save(snapshot, ttl);
            if (result.servers_written.empty())
                error = "no memcached server took the affinity snapshot: " + join(result.errors);
        } catch (const std::exception& failure) {
            error = std::string("affinity snapshot: ") + failure.what();
        }
        asio::post(io_, [this, alive, result, error, done, routine] {
            if (!*alive)
                return;
            saving_ = false;
            if (error.empty()) {
                ++save_stats_.saves;
                save_stats_.last_save_ms = wall_ms();
                save_stats_.last_entries = result.entries;
                save_stats_.last_duration_seconds = result.duration_seconds;
                save_stats_.last_error = join(result.errors);
                // Every interval is too often for the log, unless something is wrong.
                const auto level = routine && result.errors.empty() ? spdlog::level::debug : spdlog::level::info;
                spdlog::log(level,
                            "affinity snapshot saved: {} entries in {} chunks ({} bytes) to {} of {} servers in "
                            "{:.3f} s{}",
                            result.entries, result.chunks, result.bytes, result.servers_written.size(), links_.size(),
                            result.duration_seconds, result.errors.empty() ? "" : "; " + join(result.errors));
            } else {
                ++save_stats_.failures;
                save_stats_.last_error = error;
                spdlog::warn("{}", error);
            }
            done(result, error);
            for (const auto& waiter : std::exchange(after_save_, {}))
                waiter();
        });
    });
}

void SessionCoordinator::save_affinities(Reply reply) {
    if (saving_) {
        reply({}, "an affinity snapshot is being saved already: try again in a moment");
        return;
    }
    save([reply](const SnapshotSaveResult& result, const std::string& error) {
        if (!error.empty()) {
            reply({}, error);
            return;
        }
        reply({{"entries", result.entries},
               {"chunks", result.chunks},
               {"bytes", result.bytes},
               {"generation", fmt::format("{:016x}", result.generation)},  // as in the chunk keys
               {"servers_written", result.servers_written},
               {"errors", result.errors},
               {"duration_seconds", result.duration_seconds}},
              "");
    });
}

nlohmann::json SessionCoordinator::restore_json(const SnapshotLoadResult& loaded, const RestorePlan& plan,
                                                const AffinityWriteResult& written) const {
    return {{"restored", written.written},
            {"skipped_expired", plan.expired},
            {"skipped_unknown_vip", plan.unknown_vip},
            {"skipped_unknown_backend", plan.unknown_backend},
            {"skipped_backend_down", plan.backend_down},
            {"skipped_present", written.present},
            {"snapshot_entries", loaded.snapshot ? loaded.snapshot->entries.size() : 0},
            {"snapshot_written_ms", loaded.written_ms},
            {"server", loaded.server},
            {"errors", loaded.errors},
            {"duration_seconds", loaded.duration_seconds}};
}

void SessionCoordinator::count_rejections(const std::vector<session::Rejection>& rejected) {
    for (const session::Rejection reason : rejected)
        ++rejected_[static_cast<std::size_t>(reason)];
}

void SessionCoordinator::restore_at_start() {
    const auto start = Clock::now();
    try {
        const SnapshotLoadResult loaded = store_->load();
        count_rejections(loaded.rejected);
        if (!loaded.snapshot) {
            if (!loaded.rejected.empty())
                ++save_stats_.restore_failures;
            spdlog::warn("no affinity snapshot restored: {}; starting with an empty affinity table",
                         loaded.errors.empty() ? "none found" : join(loaded.errors));
            return;
        }
        const RestorePlan plan = plan_restore(*loaded.snapshot, layout_(), wall_ms(), affinity_clock_ns());
        const AffinityWriteResult written = tables_.write_affinities(plan.writes, /*overwrite=*/true);
        save_stats_.restored += written.written;
        spdlog::info(
            "affinity snapshot of {} ms ago from {}: {} clients restored in {:.3f} s ({}); skipped {} expired, "
            "{} of unknown VIPs, {} of unknown backends, {} of backends down",
            wall_ms() - loaded.written_ms, loaded.server, written.written,
            std::chrono::duration<double>(Clock::now() - start).count(), written.batched ? "batched" : "one by one",
            plan.expired, plan.unknown_vip, plan.unknown_backend, plan.backend_down);
    } catch (const std::exception& failure) {
        // Memory, a map write: whatever it was, the balancer starts; clients are placed by the ring.
        ++save_stats_.restore_failures;
        spdlog::error("affinity restore failed: {}; starting with an empty affinity table", failure.what());
    }
}

void SessionCoordinator::restore_affinities(Reply reply) {
    worker_.post([this, alive = alive_, layout = layout_(), reply] {
        nlohmann::json result;
        std::string error;
        std::uint64_t restored = 0;
        std::vector<session::Rejection> rejected;
        try {
            const SnapshotLoadResult loaded = store_->load();
            rejected = loaded.rejected;
            if (!loaded.snapshot) {
                error =
                    "no affinity snapshot to restore: " + (loaded.errors.empty() ? "none found" : join(loaded.errors));
            } else {
                const RestorePlan plan = plan_restore(*loaded.snapshot, layout, wall_ms(), affinity_clock_ns());
                // Live entries are newer than any snapshot: they stay.
                const AffinityWriteResult written = tables_.write_affinities(plan.writes, /*overwrite=*/false);
                restored = written.written;
                result = restore_json(loaded, plan, written);
            }
        } catch (const std::exception& failure) {
            error = std::string("affinity restore: ") + failure.what();
        }
        asio::post(io_, [this, alive, reply, result, error, restored, rejected] {
            if (!*alive)
                return;
            save_stats_.restored += restored;
            count_rejections(rejected);
            if (error.empty())
                spdlog::info("affinity restore: {}", result.dump());
            reply(result, error);
        });
    });
}

void SessionCoordinator::shutdown(std::function<void()> done) {
    refresh_timer_.cancel();
    save_timer_.cancel();
    if (settings_.affinity_save_interval.count() == 0) {
        stop();
        done();
        return;
    }
    // The save finishes on other threads: keep the io_context running for it.
    shutdown_guard_.emplace(io_.get_executor());
    auto finished = std::make_shared<bool>(false);
    auto deadline = std::make_shared<asio::steady_timer>(io_, kShutdownSaveLimit);
    const auto finish = [this, finished, deadline, done](const std::string& why) {
        if (*finished)
            return;
        *finished = true;
        deadline->cancel();
        if (!why.empty())
            spdlog::warn("{}", why);
        stop();
        done();
    };
    deadline->async_wait([finish](const boost::system::error_code& error) {
        if (!error)
            finish("affinity snapshot at shutdown: not done in time, stopping without it");
    });
    // A save under way is recent enough: it is the last one.
    if (saving_)
        after_save_.push_back([finish] { finish(""); });
    else
        save([finish](const SnapshotSaveResult&, const std::string&) { finish(""); });
}

nlohmann::json SessionCoordinator::show() const {
    nlohmann::json servers = nlohmann::json::array();
    for (const auto& link : links_) {
        const MemcachedLinkStatus status = link->status();
        const auto views = publisher_->servers().find(status.server);
        servers.push_back(
            {{"server", status.server},
             {"up", status.up},
             {"errors", status.errors},
             {"last_error", status.last_error},
             {"last_success_ms", status.last_success_ms},
             {"retry_in_seconds", std::chrono::duration<double>(status.retry_in).count()},
             {"view_writes", views == publisher_->servers().end() ? 0 : views->second.writes},
             {"last_view_write_ms", views == publisher_->servers().end() ? 0 : views->second.last_write_ms}});
    }
    nlohmann::json clusters = nlohmann::json::array();
    for (const session::MembershipView& view : book_.views()) {
        // Shaped like the view in memcached: backends by name.
        nlohmann::json backends = nlohmann::json::object();
        for (const auto& [name, member] : view.backends)
            backends[name] = {{"state", std::string(session::to_string(member.state))},
                              {"incarnation", member.incarnation}};
        const auto written = publisher_->clusters().find(view.cluster);
        const bool any = written != publisher_->clusters().end();
        clusters.push_back({{"cluster", view.cluster},
                            {"key", session::members_key(view.cluster)},
                            {"epoch", view.epoch},
                            {"written_epoch", any ? written->second.epoch : 0},
                            {"written_ms", any ? written->second.written_ms : 0},
                            {"backends", backends}});
    }
    return {{"enabled", true},
            {"view_writer", view_writer()},
            {"view_refresh_interval_seconds", std::chrono::duration<double>(settings_.view_refresh_interval).count()},
            {"view_ttl_seconds", view_ttl_.count()},
            {"servers", servers},
            {"clusters", clusters},
            {"affinity_snapshot",
             {{"save_interval_seconds", std::chrono::duration<double>(settings_.affinity_save_interval).count()},
              {"saves", save_stats_.saves},
              {"failures", save_stats_.failures},
              {"last_save_ms", save_stats_.last_save_ms},
              {"last_save_entries", save_stats_.last_entries},
              {"last_save_duration_seconds", save_stats_.last_duration_seconds},
              {"last_error", save_stats_.last_error},
              {"restored", save_stats_.restored},
              {"restore_failures", save_stats_.restore_failures}}},
            {"authenticated", key_.has_value()},
            {"rejected", rejected_json()}};
}

nlohmann::json SessionCoordinator::rejected_json() const {
    nlohmann::json rejected = nlohmann::json::object();
    for (std::size_t i = 0; i < session::kRejectionCount; ++i)
        rejected[std::string(session::to_string(static_cast<session::Rejection>(i)))] = rejected_[i];
    return rejected;
}

void SessionCoordinator::fill_metrics(metrics::SessionSample& sample) const {
    sample.enabled = true;
    sample.view_writer = view_writer();
    for (const auto& link : links_) {
        const MemcachedLinkStatus status = link->status();
        const auto views = publisher_->servers().find(status.server);
        sample.servers.push_back(
            {status.server, status.up, status.errors, views == publisher_->servers().end() ? 0 : views->second.writes});
    }
    sample.failover_to_view_seconds = &publisher_->failover_seconds();
    sample.snapshot_saves = save_stats_.saves;
    sample.snapshot_save_failures = save_stats_.failures;
    sample.snapshot_last_save_timestamp_seconds = static_cast<double>(save_stats_.last_save_ms) / 1000.0;
    sample.snapshot_last_save_entries = save_stats_.last_entries;
    sample.affinities_restored = save_stats_.restored;
    sample.affinity_restore_failures = save_stats_.restore_failures;
    sample.memcached_rejected = rejected_;
}

}  // namespace stickylb

// SPDX-License-Identifier: Apache-2.0
#pragma once
// stickylbd's side of session coordination, alive only when memcached_servers
// is configured: one MemcachedLink per server, the membership book and its
// publisher (a view at once on every change, and every view_refresh_interval),
// and the affinity snapshots (saved every affinity_save_interval and at
// shutdown, restored on a start with no pinned maps or when the operator asks).
//
// Runs on the daemon's io_context; memcached I/O happens on the links' threads,
// table walks and snapshot encoding on the background worker. Nothing here ever
// blocks the io_context, except recover_views() and restore_at_start(), which
// run before it does (bounded by the memcached timeouts).
// <utility> first: Boost 1.74 Asio uses std::exchange without including it.
#include <utility>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dataplane/maps.h"
#include "session/affinity_snapshot.h"
#include "session/affinity_store.h"
#include "base/background_worker.h"
#include "control/config.h"
#include "session/membership.h"
#include "session/membership_publisher.h"
#include "control/metrics.h"
#include "session/signed_value.h"

namespace stickylb {

class SessionCoordinator {
public:
    using Layout = std::function<AffinityLayout()>;  // what indexes mean now (io_context thread)
    using Reply = std::function<void(nlohmann::json result, std::string error)>;

    // Reads session.key_file when set (std::runtime_error naming the problem);
    // without one, logs once that memcached data is not authenticated.
    SessionCoordinator(boost::asio::io_context& io, const DaemonConfig& config, ClientTables& tables,
                       BackgroundWorker& worker, Layout layout);
    ~SessionCoordinator();  // stop()

    // --- membership
    void load_state(const nlohmann::json& saved);  // the state file's "membership" section
    nlohmann::json state() const;
    // Start only, blocking (bounded): reads every configured cluster's view from
    // every server, raises the book to them, returns the newest of each.
    std::map<std::string, session::MembershipView> recover_views(const DaemonConfig& config);
    // After every reconcile: views that changed are published at once. failovers:
    // backends marked down by their checks since the last call, with their first
    // failed check. Returns true when the book changed (save the state file).
    bool update(const DaemonConfig& config, const DesiredState& desired,
                const std::map<BackendId, std::chrono::steady_clock::time_point>& failovers);
    // Every view again; done (on the io_context) when every server has answered,
    // or at `limit`, whichever comes first (timed_out then says so).
    void publish_now(std::chrono::milliseconds limit,
                     std::function<void(const MembershipPublisher::Outcome&, bool timed_out)> done);

    // Timers: view refresh and periodic affinity saves.
    void start();

    // In a fleet one host writes the views (the daemon picks it from the roster); the
    // others keep their book and write nothing. A host that becomes the writer first
    // reads the views the servers hold (on the worker) and continues from them
    // (MembershipBook::take_over), so the agents see one epoch that only rises.
    void set_view_writer(bool writer);
    bool view_writer() const { return writer_ && !taking_over_; }

    // --- affinity snapshots
    // Start only, blocking: into an empty table, before XDP is attached. Never
    // throws: a snapshot that cannot be used is logged and counted, and the
    // table starts empty.
    void restore_at_start();
    // Operator commands; reply on the io_context.
    void save_affinities(Reply reply);
    void restore_affinities(Reply reply);

    // SIGTERM: a last snapshot (when saving is on), bounded, then the links stop.
    // done runs on the io_context.
    void shutdown(std::function<void()> done);
    void stop();

    nlohmann::json show() const;
    void fill_metrics(metrics::SessionSample& sample) const;

    // For others that keep state in the same memcached servers (the fleet roster):
    // the links, and the key that signs what is written (nullptr: unsigned).
    const std::vector<std::shared_ptr<MemcachedLink>>& links() const { return links_; }
    const session::SigningKey* signing_key() const { return key_ ? &*key_ : nullptr; }

private:
    struct SaveStats {
        std::uint64_t saves = 0, failures = 0;
        std::int64_t last_save_ms = 0;
        std::uint64_t last_entries = 0;
        double last_duration_seconds = 0;
        std::string last_error;
        std::uint64_t restored = 0;
        std::uint64_t restore_failures = 0;  // a restore that found snapshots and could use none, or failed
    };
    void count_rejections(const std::vector<session::Rejection>& rejected);
    nlohmann::json rejected_json() const;
    void schedule_refresh();
    void schedule_save();
    // Every view write goes here: nothing while this host is not the writer.
    void publish(const std::vector<session::MembershipView>& views,
                 std::function<void(const MembershipPublisher::Outcome&)> done = {});
    void take_over(const ViewsRead& read);
    // On the worker: walk, encode, write. done on the io_context.
    // routine: the periodic save, logged only when something went wrong.
    void save(std::function<void(const SnapshotSaveResult&, const std::string& error)> done, bool routine = false);
    nlohmann::json restore_json(const SnapshotLoadResult& loaded, const RestorePlan& plan,
                                const AffinityWriteResult& written) const;
    std::chrono::seconds snapshot_ttl() const;

    boost::asio::io_context& io_;
    const SessionConfig settings_;
    const std::chrono::seconds view_ttl_;
    ClientTables& tables_;
    BackgroundWorker& worker_;
    Layout layout_;
    std::optional<session::SigningKey> key_;
    std::array<std::uint64_t, session::kRejectionCount> rejected_{};  // by session::Rejection
    std::vector<std::shared_ptr<MemcachedLink>> links_;
    MembershipBook book_;
    ClusterStates last_states_;  // what the last update() saw
    bool writer_ = true, taking_over_ = false;
    std::unique_ptr<MembershipPublisher> publisher_;
    std::unique_ptr<AffinityStore> store_;
    std::uint32_t longest_affinity_timeout_s_ = 0;
    boost::asio::steady_timer refresh_timer_, save_timer_;
    bool saving_ = false;
    std::vector<std::function<void()>> after_save_;  // called once the save in flight is done
    SaveStats save_stats_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> shutdown_guard_;
};

}  // namespace stickylb

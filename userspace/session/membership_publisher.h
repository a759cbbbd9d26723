// SPDX-License-Identifier: Apache-2.0
#pragma once
// Writes membership views to every memcached server, each through its own link
// (so one dead server delays no other), stamping written_ms at the write. A
// newer view of a cluster replaces an older one still queued for a server.
// Everything here runs on the io_context: links report back by posting to it.
//
// It also keeps what the operator and the metrics want to know: per server the
// views written and the last write, per cluster the last epoch written, and the
// time from a backend's first failed check to the first server holding a view
// that says it is down.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it.
#include <utility>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/prometheus.h"
#include "session/memcached_link.h"
#include "session/membership_view.h"

namespace stickylb {

// Blocking (start-up recovery, never on the io_context): the views of these
// clusters on every server, read in parallel and waited for at most `limit`,
// taken as every reader takes them (session::read_stored_view: the MAC when a
// key is set, a strict parse, written within `freshness` of now).
// Problems (a server unreachable, a value refused) are returned, not thrown.
struct ViewsRead {
    std::vector<session::MembershipView> views;  // every one found, several per cluster possibly
    std::vector<std::string> problems;
    std::vector<session::Rejection> rejected;  // one per value refused
};
ViewsRead read_views(const std::vector<std::shared_ptr<MemcachedLink>>& links, const std::vector<std::string>& clusters,
                     std::chrono::milliseconds limit, const session::SigningKey* key,
                     std::chrono::milliseconds freshness);

class MembershipPublisher {
public:
    struct Outcome {
        std::size_t servers = 0;  // written to, or tried
        std::size_t written = 0;
        std::vector<std::string> errors;
    };
    struct ServerViews {
        std::uint64_t writes = 0;        // successful view writes
        std::int64_t last_write_ms = 0;  // wall clock; 0: never
    };
    struct ClusterWrite {
        std::uint64_t epoch = 0;  // of the last view a server accepted
        std::int64_t written_ms = 0;
    };

    // key: signs every view written (nullptr: unsigned). It must outlive the publisher.
    MembershipPublisher(boost::asio::io_context& io, std::vector<std::shared_ptr<MemcachedLink>> links,
                        std::chrono::seconds ttl, const session::SigningKey* key = nullptr);
    ~MembershipPublisher();

    // done (optional) runs on the io_context once every server has written each
    // view or failed; Outcome counts per (view, server) write.
    void publish(const std::vector<session::MembershipView>& views, std::function<void(const Outcome&)> done = {});

    // A backend of `cluster` failed its first check at `first_failure`; the first
    // server write of a view of that cluster with at least `epoch` observes the delay.
    void expect_failover(const std::string& cluster, std::uint64_t epoch,
                         std::chrono::steady_clock::time_point first_failure);

    const metrics::Histogram& failover_seconds() const { return failover_seconds_; }
    const std::map<std::string, ServerViews>& servers() const { return servers_; }
    const std::map<std::string, ClusterWrite>& clusters() const { return clusters_; }

private:
    void written(const std::string& server, const session::MembershipView& view, std::int64_t written_ms,
                 std::chrono::steady_clock::time_point at);

    boost::asio::io_context& io_;
    std::vector<std::shared_ptr<MemcachedLink>> links_;
    std::chrono::seconds ttl_;
    const session::SigningKey* key_;
    // Links may answer after this object is gone (the daemon stopping): their
    // posted handlers check this first.
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    std::map<std::string, ServerViews> servers_;
    std::map<std::string, ClusterWrite> clusters_;
    struct PendingFailover {
        std::string cluster;
        std::uint64_t epoch;
        std::chrono::steady_clock::time_point first_failure;
    };
    std::vector<PendingFailover> failovers_;
    metrics::Histogram failover_seconds_;
};

}  // namespace stickylb

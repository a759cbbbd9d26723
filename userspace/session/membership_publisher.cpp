// SPDX-License-Identifier: Apache-2.0
#include "session/membership_publisher.h"

#include <boost/asio/post.hpp>

#include <future>

namespace stickylb {
namespace {

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Detection plus publication: seconds to a minute.
std::vector<double> failover_bounds() { return {0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60}; }

}  // namespace

ViewsRead read_views(const std::vector<std::shared_ptr<MemcachedLink>>& links, const std::vector<std::string>& clusters,
                     std::chrono::milliseconds limit, const session::SigningKey* key,
                     std::chrono::milliseconds freshness) {
    std::vector<std::string> keys;
    keys.reserve(clusters.size());
    for (const std::string& cluster : clusters)
        keys.push_back(session::members_key(cluster));
    struct Read {
        std::promise<std::string> done;
        std::map<std::string, std::string> values;
    };
    std::vector<std::shared_ptr<Read>> reads;
    for (const auto& link : links) {
        auto read = std::make_shared<Read>();
        reads.push_back(read);
        link->submit([read, keys](MemcachedClient& client) { read->values = client.get_many(keys); },
                     [read](const std::string& error) { read->done.set_value(error); }, /*fail_fast=*/true);
    }
    const auto deadline = std::chrono::steady_clock::now() + limit;
    ViewsRead result;
    for (std::size_t i = 0; i < reads.size(); ++i) {
        auto answer = reads[i]->done.get_future();
        if (answer.wait_until(deadline) != std::future_status::ready) {
            result.problems.push_back("memcached " + links[i]->server() + ": no answer in time");
            continue;
        }
        if (std::string error = answer.get(); !error.empty()) {
            result.problems.push_back(std::move(error));
            continue;
        }
        for (const auto& [memcached_key, text] : reads[i]->values) {
            session::ViewReading reading = session::read_stored_view(key, memcached_key, text, wall_ms(), freshness);
            if (reading.view) {
                result.views.push_back(std::move(*reading.view));
                continue;
            }
            result.rejected.push_back(*reading.rejected);
            result.problems.push_back("memcached " + links[i]->server() + ": " + memcached_key + " refused (" +
                                      std::string(session::to_string(*reading.rejected)) + ": " + reading.why + ")");
        }
    }
    return result;
}

MembershipPublisher::MembershipPublisher(boost::asio::io_context& io, std::vector<std::shared_ptr<MemcachedLink>> links,
                                         std::chrono::seconds ttl, const session::SigningKey* key)
    : io_(io), links_(std::move(links)), ttl_(ttl), key_(key), failover_seconds_(failover_bounds()) {
    for (const auto& link : links_)
        servers_[link->server()];
}

MembershipPublisher::~MembershipPublisher() { *alive_ = false; }

void MembershipPublisher::publish(const std::vector<session::MembershipView>& views,
                                  std::function<void(const Outcome&)> done) {
    struct Tally {
        Outcome outcome;
        std::size_t pending = 0;
        std::function<void(const Outcome&)> done;
    };
    auto tally = std::make_shared<Tally>();
    tally->done = std::move(done);
    tally->pending = views.size() * links_.size();
    tally->outcome.servers = tally->pending;
    if (tally->pending == 0) {
        if (tally->done)
            boost::asio::post(io_, [tally] { tally->done(tally->outcome); });
        return;
    }
    for (const session::MembershipView& view : views) {
        const std::string key = session::members_key(view.cluster);
        for (const auto& link : links_) {
            auto stamped = std::make_shared<std::int64_t>(0);
            link->publish(
                key,
                [view = session::MembershipView(view), key, stamped, ttl = ttl_,
                 signing = key_](MemcachedClient& client) mutable {
                    view.written_ms = *stamped = wall_ms();
                    client.set(key, session::store_view(signing, view), ttl);
                },
                [this, alive = alive_, tally, view, stamped, server = link->server()](const std::string& error) {
                    const auto at = std::chrono::steady_clock::now();
                    boost::asio::post(io_, [this, alive, tally, view, stamped, server, error, at] {
                        if (!*alive)
                            return;
                        if (error.empty()) {
                            ++tally->outcome.written;
                            if (*stamped != 0)  // else replaced by a newer view, which reports itself
                                written(server, view, *stamped, at);
                        } else {
                            tally->outcome.errors.push_back(error);
                        }
                        if (--tally->pending == 0 && tally->done)
                            tally->done(tally->outcome);
                    });
                });
        }
    }
}

void MembershipPublisher::expect_failover(const std::string& cluster, std::uint64_t epoch,
                                          std::chrono::steady_clock::time_point first_failure) {
    constexpr std::size_t kMaxPending = 1024;  // memcached down for long: keep the newest
    if (failovers_.size() >= kMaxPending)
        failovers_.erase(failovers_.begin());
    failovers_.push_back({cluster, epoch, first_failure});
}

void MembershipPublisher::written(const std::string& server, const session::MembershipView& view,
                                  std::int64_t written_ms, std::chrono::steady_clock::time_point at) {
    ServerViews& counts = servers_[server];
    ++counts.writes;
    counts.last_write_ms = written_ms;
    ClusterWrite& cluster = clusters_[view.cluster];
    if (view.epoch >= cluster.epoch) {
        cluster.epoch = view.epoch;
        cluster.written_ms = written_ms;
    }
    std::erase_if(failovers_, [&](const PendingFailover& failover) {
        if (failover.cluster != view.cluster || view.epoch < failover.epoch)
            return false;
        failover_seconds_.observe(std::chrono::duration<double>(at - failover.first_failure).count());
        return true;
    });
}

}  // namespace stickylb

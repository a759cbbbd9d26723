// SPDX-License-Identifier: Apache-2.0
#pragma once
// Exception sync: what makes a flow the router moves to another LB host land on the
// backend it was on. This host's flows that are off today's ring (control/
// flow_exceptions.h) are found after every ring change and every scan period, and
// published through the fleet (session/flow_exception_exchange.h) whenever they
// changed; the peers' lists, in this host's indexes, are all its peer-flow table holds.
// For persistent VIPs the clients its affinity table keeps off the ring go out in the
// same lists, and the peers' are written into its affinity table
// (control/flow_exceptions.h, affinity_writes).
//
// Table walks and encoding run on the worker; everything else on the io_context.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it.
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/background_worker.h"
#include "control/flow_exceptions.h"
#include "control/metrics.h"
#include "dataplane/maps.h"
#include "session/fleet_presence.h"
#include "session/flow_exception_exchange.h"

namespace stickylb {

class ExceptionSync {
public:
    using ViewSource = std::function<RingView()>;  // the rings as the data plane holds them now

    // fleet, worker and tables must outlive it; peer_flow_capacity bounds what is loaded.
    ExceptionSync(boost::asio::io_context& io, BackgroundWorker& worker, ClientTables& tables, FleetPresence& fleet,
                  std::vector<std::shared_ptr<MemcachedLink>> links, ExceptionExchangeSettings settings,
                  const session::SigningKey* key, ViewSource view, std::size_t peer_flow_capacity,
                  std::chrono::milliseconds scan_period = std::chrono::seconds(5),
                  std::chrono::milliseconds join_wait = std::chrono::seconds(10));
    ~ExceptionSync();
    ExceptionSync(const ExceptionSync&) = delete;
    ExceptionSync& operator=(const ExceptionSync&) = delete;

    void start();  // a scan now, then every scan_period
    void stop();
    // Whether this host may announce: it holds every sharing peer's list in its
    // peer-flow table (or has no peers to hear from), or join_wait has passed since
    // start(). Once true it stays true: later lists are steady state, not a join.
    bool joined();

    // A ring was rewritten: scan now (after the one under way, if any); nothing
    // before start(), which scans anyway.
    void rings_changed();

    nlohmann::json show() const;
    void fill_metrics(metrics::FleetSample& sample) const;

private:
    void scan();
    void scanned();
    void load();
    struct LoadOutcome {
        std::size_t entries = 0, unplaced = 0, affinities_written = 0;
        std::string error;
    };
    void loaded(const LoadOutcome& outcome);
    void schedule();

    boost::asio::io_context& io_;
    BackgroundWorker& worker_;
    ClientTables& tables_;
    FleetPresence& fleet_;
    const std::string host_;
    FlowExceptionExchange exchange_;
    ViewSource view_;
    const std::size_t peer_flow_capacity_;
    const std::chrono::milliseconds scan_period_, join_wait_;
    std::chrono::steady_clock::time_point started_at_{};
    bool joined_ = false;
    boost::asio::steady_timer timer_;
    bool started_ = false;
    bool scanning_ = false, scan_again_ = false;
    bool loading_ = false, load_again_ = false;
    // The worker's own: the list last handed to the exchange, and its version.
    struct Published {
        std::vector<FlowException> exceptions;
        std::uint64_t version = 0;
    };
    std::shared_ptr<Published> published_ = std::make_shared<Published>();
    std::uint64_t scans_ = 0, scan_failures_ = 0, load_failures_ = 0;
    std::size_t peer_flows_ = 0, unplaced_ = 0, published_affinities_ = 0;
    std::uint64_t affinities_written_ = 0;
    std::string last_error_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace stickylb

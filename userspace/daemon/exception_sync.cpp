// SPDX-License-Identifier: Apache-2.0
#include "daemon/exception_sync.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include <algorithm>

#include "session/flow_exception_chunks.h"

namespace stickylb {
namespace {

std::uint64_t wall_ms() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
}

std::int64_t wall_seconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

ExceptionSync::ExceptionSync(boost::asio::io_context& io, BackgroundWorker& worker, ClientTables& tables,
                             FleetPresence& fleet, std::vector<std::shared_ptr<MemcachedLink>> links,
                             ExceptionExchangeSettings settings, const session::SigningKey* key, ViewSource view,
                             std::size_t peer_flow_capacity, std::chrono::milliseconds scan_period,
                             std::chrono::milliseconds join_wait)
    : io_(io),
      worker_(worker),
      tables_(tables),
      fleet_(fleet),
      host_(settings.host),
      exchange_(
          io, std::move(links), std::move(settings), key,
          [this](std::uint64_t version, std::uint32_t chunks) { fleet_.set_flow_exceptions(version, chunks); },
          [this] { load(); }),
      view_(std::move(view)),
      peer_flow_capacity_(peer_flow_capacity),
      scan_period_(scan_period),
      join_wait_(join_wait),
      timer_(io) {
    fleet_.on_peer_exceptions_change([this] { exchange_.track(fleet_.sharing_peers()); });
}

ExceptionSync::~ExceptionSync() {
    *alive_ = false;
    fleet_.on_peer_exceptions_change({});
}

void ExceptionSync::start() {
    started_ = true;
    started_at_ = std::chrono::steady_clock::now();
    scan();
    schedule();
}

void ExceptionSync::stop() {
    started_ = false;
    timer_.cancel();
}

void ExceptionSync::schedule() {
    timer_.expires_after(scan_period_);
    timer_.async_wait([this](const boost::system::error_code& error) {
        if (error)
            return;
        exchange_.tick();
        scan();
        schedule();
    });
}

bool ExceptionSync::joined() {
    if (joined_ || !started_)
        return joined_;
    const FleetStanding standing = fleet_.standing();
    const bool loaded =
        standing == FleetStanding::alone ||
        (standing == FleetStanding::agrees && exchange_.holds_every_list(fleet_.sharing_peers()) && !loading_);
    const auto waited = std::chrono::steady_clock::now() - started_at_;
    if (loaded) {
        spdlog::info("flow exceptions: every peer's list loaded ({} entries) {} ms after start", peer_flows_,
                     std::chrono::duration_cast<std::chrono::milliseconds>(waited).count());
    } else if (waited >= join_wait_) {
        spdlog::warn("flow exceptions: not every peer's list loaded after {} ms: announcing without them",
                     join_wait_.count());
    } else {
        return false;
    }
    joined_ = true;
    return true;
}

void ExceptionSync::rings_changed() {
    if (started_)
        scan();
}

void ExceptionSync::scan() {
    if (scanning_) {
        scan_again_ = true;
        return;
    }
    scanning_ = true;
    scan_again_ = false;
    const bool republish = exchange_.due_for_republish();
    worker_.post([this, &io = io_, alive = alive_, &tables = tables_, view = view_(), published = published_, republish,
                  host = host_] {
        struct Outcome {
            bool changed = false;
            std::uint64_t version = 0;
            std::vector<std::string> chunks;
            std::size_t exceptions = 0, affinities = 0, left_out = 0;
            std::string error;
        } outcome;
        try {
            std::vector<FlowException> found = find_flow_exceptions(tables.flows(), view);
            const std::size_t flows = found.size();
            if (std::any_of(view.vips.begin(), view.vips.end(),
                            [](const auto& vip) { return vip.second.settings.persistent; })) {
                std::vector<FlowException> affinities =
                    find_affinity_exceptions(tables.affinities(), view, wall_seconds());
                found.insert(found.end(), std::make_move_iterator(affinities.begin()),
                             std::make_move_iterator(affinities.end()));
                std::inplace_merge(found.begin(), found.begin() + static_cast<std::ptrdiff_t>(flows), found.end());
            }
            if (found != published->exceptions || republish) {
                outcome.changed = true;
                outcome.left_out = found.size() > fleet::kMaxExceptions ? found.size() - fleet::kMaxExceptions : 0;
                found.resize(std::min(found.size(), fleet::kMaxExceptions));
                // Wall clock: a restarted host's versions keep increasing.
                outcome.version = std::max(wall_ms(), published->version + 1);
                outcome.chunks = fleet::encode_exception_chunks(host, outcome.version, found);
                outcome.exceptions = found.size();
                outcome.affinities =
                    static_cast<std::size_t>(std::count_if(found.begin(), found.end(), [](const FlowException& e) {
                        return e.kind == ExceptionKind::affinity;
                    }));
                published->exceptions = std::move(found);
                published->version = outcome.version;
            }
        } catch (const std::exception& error) {
            outcome.error = error.what();
        }
        boost::asio::post(io, [this, alive, outcome = std::move(outcome)]() mutable {
            if (!*alive)
                return;
            ++scans_;
            if (!outcome.error.empty()) {
                ++scan_failures_;
                if (outcome.error != last_error_)
                    spdlog::warn("flow exceptions: scanning the flow table: {}", outcome.error);
                last_error_ = outcome.error;
            } else if (outcome.changed) {
                if (outcome.left_out > 0)
                    spdlog::warn("flow exceptions: {} left out, past the {} a host publishes", outcome.left_out,
                                 fleet::kMaxExceptions);
                published_affinities_ = outcome.affinities;
                exchange_.publish(outcome.version, std::move(outcome.chunks), outcome.exceptions);
            }
            scanning_ = false;
            if (scan_again_)
                scan();
        });
    });
}

void ExceptionSync::load() {
    if (loading_) {
        load_again_ = true;
        return;
    }
    loading_ = true;
    load_again_ = false;
    // Only the io_context, the tables and what is captured are touched on the worker:
    // this object may be gone by the time the job runs.
    worker_.post([this, &io = io_, alive = alive_, &tables = tables_, view = view_(),
                  exceptions = exchange_.peer_exceptions(), capacity = peer_flow_capacity_] {
        LoadOutcome outcome;
        try {
            LocalPeerFlows local = to_local_flows(exceptions, view);
            outcome.unplaced = local.unknown;
            if (local.flows.size() > capacity) {
                // The newest lists come last: what does not fit is the oldest.
                outcome.unplaced += local.flows.size() - capacity;
                local.flows.erase(local.flows.begin(), local.flows.end() - static_cast<std::ptrdiff_t>(capacity));
            }
            tables.replace_peer_flows(local.flows);
            outcome.entries = local.flows.size();
            if (!local.affinities.empty()) {
                const std::vector<AffinityWrite> writes =
                    affinity_writes(local.affinities, tables.affinities(), view, wall_seconds(), affinity_clock_ns());
                if (!writes.empty())
                    outcome.affinities_written = tables.write_affinities(writes, /*overwrite=*/true).written;
            }
        } catch (const std::exception& e) {
            outcome.error = e.what();
        }
        boost::asio::post(io, [this, alive, outcome = std::move(outcome)] {
            if (*alive)
                loaded(outcome);
        });
    });
}

void ExceptionSync::loaded(const LoadOutcome& outcome) {
    loading_ = false;
    if (!outcome.error.empty()) {
        ++load_failures_;
        spdlog::warn("flow exceptions: writing the peers' into the peer-flow and affinity tables: {}", outcome.error);
    } else {
        if (outcome.entries != peer_flows_ || outcome.unplaced != unplaced_)
            spdlog::info("flow exceptions: {} of the peers' in the peer-flow table{}", outcome.entries,
                         outcome.unplaced ? ", " + std::to_string(outcome.unplaced) +
                                                " naming backends (or persistent VIPs) this host does not have"
                                          : std::string());
        if (outcome.affinities_written > 0)
            spdlog::info("flow exceptions: {} of the peers' client affinities written to the affinity table",
                         outcome.affinities_written);
        peer_flows_ = outcome.entries;
        unplaced_ = outcome.unplaced;
        affinities_written_ += outcome.affinities_written;
    }
    if (load_again_)
        load();
}

nlohmann::json ExceptionSync::show() const {
    nlohmann::json shown = exchange_.show();
    shown["published_affinities"] = published_affinities_;
    shown["peer_flow_entries"] = peer_flows_;
    shown["peer_affinities_written"] = affinities_written_;
    shown["unplaced"] = unplaced_;
    shown["joined"] = joined_;
    shown["scans"] = scans_;
    shown["scan_failures"] = scan_failures_;
    shown["load_failures"] = load_failures_;
    return shown;
}

void ExceptionSync::fill_metrics(metrics::FleetSample& sample) const {
    const FlowExceptionExchange::Counters& counters = exchange_.counters();
    sample.exception_sync = true;
    sample.flow_exceptions_published = counters.published_exceptions - published_affinities_;
    sample.affinity_exceptions_published = published_affinities_;
    sample.peer_affinities_written = affinities_written_;
    sample.peer_flow_entries = peer_flows_;
    sample.peer_exceptions_unplaced = unplaced_;
    sample.exception_versions_published = counters.published_versions;
    sample.exception_publish_failures = counters.publish_failures;
    sample.exception_versions_loaded = counters.fetched_versions;
    sample.exception_fetch_failures = counters.fetch_failures;
    sample.exception_table_write_failures = load_failures_;
}

}  // namespace stickylb

// SPDX-License-Identifier: Apache-2.0
#pragma once
// The fleet's flow exceptions (control/flow_exceptions.h) through memcached: this
// host's list goes out in chunks (session/flow_exception_chunks.h) to every server,
// and the version it names in its roster entry (session/fleet_presence.h) changes
// only once one server holds every chunk, so a peer never reads half a version. The
// peers' lists come back the same way: each time a sharing peer names a new version,
// its chunks are read from the first server that holds them all.
//
// A peer that leaves the roster (its host died, or its config changed) is exactly
// the one whose flows the router moves to the others: its list is kept for
// settings.departed_keep, long enough for each of its flows to send a packet and be
// recorded by the host the router now gives it to (whose own list then carries it).
//
// Runs on the io_context; memcached I/O on the links' threads, one chunk per step so
// that roster writes go between them.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it.
#include <utility>

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/flow_exceptions.h"
#include "session/fleet_roster.h"
#include "session/memcached_link.h"
#include "session/signed_value.h"

namespace stickylb {

struct ExceptionExchangeSettings {
    std::string fleet;
    std::string host;
    // A version's chunks live this long in memcached unless replaced; a host
    // republishes its list when its version is half as old.
    std::chrono::seconds chunk_lifetime{3600};
    std::chrono::milliseconds departed_keep{std::chrono::minutes(5)};
};

class FlowExceptionExchange {
public:
    using Published = std::function<void(std::uint64_t version, std::uint32_t chunks)>;
    using Changed = std::function<void()>;

    // key: signs the chunks (nullptr: unsigned); it must outlive this object.
    // published: a version is whole on at least one server (0 chunks: none to read).
    // peers_changed: peer_exceptions() changed.
    FlowExceptionExchange(boost::asio::io_context& io, std::vector<std::shared_ptr<MemcachedLink>> links,
                          ExceptionExchangeSettings settings, const session::SigningKey* key, Published published,
                          Changed peers_changed);
    ~FlowExceptionExchange();
    FlowExceptionExchange(const FlowExceptionExchange&) = delete;
    FlowExceptionExchange& operator=(const FlowExceptionExchange&) = delete;

    // This host's list, encoded as `version` (greater than every version before; no
    // chunks: no exceptions). A newer publish supersedes one still being written; the
    // previous version's chunks are removed once the new one is whole.
    void publish(std::uint64_t version, std::vector<std::string> chunks, std::size_t exceptions);
    // Whether this host's list should be written again though unchanged: no server
    // took the last version whole, or its chunks near the end of their lifetime.
    bool due_for_republish() const;
    // The fleet's sharing peers as the roster has them: reads the lists that changed.
    void track(const std::vector<fleet::Member>& peers);
    // Drops departed peers' lists past departed_keep and retries failed reads.
    void tick();

    // Whether the list of every one of these peers is held at the version it names.
    bool holds_every_list(const std::vector<fleet::Member>& peers) const;
    // Every list held, oldest version first (a flow two peers list goes where the
    // newer list says).
    std::vector<FlowException> peer_exceptions() const;
    nlohmann::json show() const;
    struct Counters {
        std::uint64_t published_versions = 0, publish_failures = 0;
        std::uint64_t fetched_versions = 0, fetch_failures = 0;
        std::uint64_t published_exceptions = 0;  // this host's current list
        std::uint64_t peer_exceptions = 0;       // in every list held
    };
    const Counters& counters() const { return counters_; }

private:
    struct Peer {
        std::uint64_t wanted_version = 0, held_version = 0;
        std::uint32_t wanted_chunks = 0, held_chunks = 0;
        std::vector<FlowException> exceptions;
        bool fetching = false, failed = false;
        std::optional<std::chrono::steady_clock::time_point> departed;
    };
    void fetch(const std::string& host, std::size_t server);
    void fetched(const std::string& host, std::uint64_t version, std::uint32_t chunks,
                 const std::shared_ptr<std::vector<FlowException>>& exceptions, std::size_t server,
                 const std::string& error);
    void written(std::uint64_t version, std::uint32_t chunks, const std::string& error);
    void remove_version(std::uint64_t version, std::uint32_t chunks);
    void recount();

    boost::asio::io_context& io_;
    std::vector<std::shared_ptr<MemcachedLink>> links_;
    const ExceptionExchangeSettings settings_;
    const session::SigningKey* key_;
    Published published_;
    Changed peers_changed_;
    // The version being written: a link's steps stop when it is no longer this one.
    std::shared_ptr<std::atomic<std::uint64_t>> writing_ = std::make_shared<std::atomic<std::uint64_t>>(0);
    std::uint64_t published_version_ = 0;
    std::uint32_t published_chunks_ = 0;
    std::chrono::steady_clock::time_point published_at_{};
    bool version_whole_ = false;  // the version being written is whole somewhere
    std::size_t servers_writing_ = 0;
    std::map<std::string, Peer> peers_;
    Counters counters_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace stickylb

// SPDX-License-Identifier: Apache-2.0
#include "session/flow_exception_exchange.h"

#include <boost/asio/post.hpp>

#include <algorithm>

#include "session/flow_exception_chunks.h"

namespace stickylb {

FlowExceptionExchange::FlowExceptionExchange(boost::asio::io_context& io,
                                             std::vector<std::shared_ptr<MemcachedLink>> links,
                                             ExceptionExchangeSettings settings, const session::SigningKey* key,
                                             Published published, Changed peers_changed)
    : io_(io),
      links_(std::move(links)),
      settings_(std::move(settings)),
      key_(key),
      published_(std::move(published)),
      peers_changed_(std::move(peers_changed)) {}

FlowExceptionExchange::~FlowExceptionExchange() {
    *alive_ = false;
    *writing_ = 0;  // steps still queued on a link stop at their next chunk
}

void FlowExceptionExchange::publish(std::uint64_t version, std::vector<std::string> chunks, std::size_t exceptions) {
    *writing_ = version;
    version_whole_ = false;
    servers_writing_ = chunks.empty() ? 0 : links_.size();
    counters_.published_exceptions = exceptions;
    const auto count = static_cast<std::uint32_t>(chunks.size());
    if (chunks.empty()) {
        written(version, 0, "");
        return;
    }
    auto shared = std::make_shared<const std::vector<std::string>>(std::move(chunks));
    for (const auto& link : links_) {
        auto next = std::make_shared<std::size_t>(0);
        link->submit_steps(
            [shared, next, version, writing = writing_, fleet = settings_.fleet, host = settings_.host,
             ttl = settings_.chunk_lifetime, signing = key_](MemcachedClient& client) {
                if (*writing != version)
                    return false;  // superseded: its chunks expire unread
                const std::string key = fleet::exception_chunk_key(fleet, host, version, *next);
                client.set(key, session::sign_value(signing, key, (*shared)[*next]), ttl);
                return ++*next < shared->size();
            },
            // On the link's thread, maybe after this object is gone: io and alive only.
            [this, &io = io_, alive = alive_, version, count, next, total = shared->size()](const std::string& error) {
                const std::string outcome = error.empty() && *next < total ? "superseded" : error;
                boost::asio::post(io, [this, alive, version, count, outcome] {
                    if (*alive)
                        written(version, count, outcome);
                });
            },
            false);
    }
}

void FlowExceptionExchange::written(std::uint64_t version, std::uint32_t chunks, const std::string& error) {
    if (version != *writing_)
        return;  // superseded
    if (servers_writing_ > 0)
        --servers_writing_;
    if (!error.empty()) {
        ++counters_.publish_failures;
        return;
    }
    if (version_whole_)
        return;  // whole on another server already
    version_whole_ = true;
    ++counters_.published_versions;
    const std::uint64_t previous = published_version_;
    const std::uint32_t previous_chunks = published_chunks_;
    published_version_ = version;
    published_chunks_ = chunks;
    published_at_ = std::chrono::steady_clock::now();
    if (published_)
        published_(version, chunks);
    // Peers reading the previous version now find a chunk gone and read the new one.
    remove_version(previous, previous_chunks);
}

void FlowExceptionExchange::remove_version(std::uint64_t version, std::uint32_t chunks) {
    if (chunks == 0)
        return;
    for (const auto& link : links_)
        link->submit(
            [version, chunks, fleet = settings_.fleet, host = settings_.host](MemcachedClient& client) {
                for (std::uint32_t chunk = 0; chunk < chunks; ++chunk)
                    client.remove(fleet::exception_chunk_key(fleet, host, version, chunk));
            },
            [](const std::string&) {}, true);  // what is left expires with its lifetime
}

bool FlowExceptionExchange::due_for_republish() const {
    const bool failed = *writing_ != 0 && !version_whole_ && servers_writing_ == 0;
    return failed ||
           (published_chunks_ > 0 && std::chrono::steady_clock::now() - published_at_ > settings_.chunk_lifetime / 2);
}

void FlowExceptionExchange::track(const std::vector<fleet::Member>& peers) {
    const auto now = std::chrono::steady_clock::now();
    for (auto& entry : peers_) {
        const std::string& host = entry.first;
        if (!entry.second.departed &&
            std::none_of(peers.begin(), peers.end(), [&](const fleet::Member& member) { return member.host == host; }))
            entry.second.departed = now;
    }
    bool changed = false;
    for (const fleet::Member& member : peers) {
        Peer& peer = peers_[member.host];
        peer.departed.reset();
        peer.wanted_version = member.flows_version;
        peer.wanted_chunks = member.flows_chunks;
        if (peer.wanted_version == peer.held_version && peer.wanted_chunks == peer.held_chunks)
            continue;
        if (peer.wanted_chunks == 0) {
            changed |= !peer.exceptions.empty();
            peer.exceptions.clear();
            peer.held_version = peer.wanted_version;
            peer.held_chunks = 0;
        } else if (!peer.fetching) {
            fetch(member.host, 0);
        }
    }
    if (changed) {
        recount();
        if (peers_changed_)
            peers_changed_();
    }
}

void FlowExceptionExchange::tick() {
    const auto now = std::chrono::steady_clock::now();
    const std::size_t before = peers_.size();
    std::erase_if(peers_, [&](const auto& entry) {
        return entry.second.departed && !entry.second.fetching &&
               now - *entry.second.departed > settings_.departed_keep;
    });
    for (auto& [host, peer] : peers_)
        if (peer.failed && !peer.fetching && !peer.departed)
            fetch(host, 0);
    if (peers_.size() != before) {
        recount();
        if (peers_changed_)
            peers_changed_();
    }
}

void FlowExceptionExchange::fetch(const std::string& host, std::size_t server) {
    Peer& peer = peers_[host];
    peer.fetching = true;
    const std::uint64_t version = peer.wanted_version;
    const std::uint32_t chunks = peer.wanted_chunks;
    auto exceptions = std::make_shared<std::vector<FlowException>>();
    auto next = std::make_shared<std::uint32_t>(0);
    links_.at(server)->submit_steps(
        [exceptions, next, host, version, chunks, fleet = settings_.fleet, signing = key_](MemcachedClient& client) {
            const std::string key = fleet::exception_chunk_key(fleet, host, version, *next);
            const auto stored = client.get(key);
            if (!stored)
                throw MemcachedError("memcached " + client.server() + ": " + key + " missing");
            const session::OpenedValue opened = session::open_value(signing, key, *stored);
            if (opened.rejected)
                throw MemcachedError("memcached " + client.server() + ": " + key + " refused (signature)");
            try {
                auto chunk = fleet::decode_exception_chunk(opened.payload, host, version, *next, chunks);
                if (exceptions->size() + chunk.size() > fleet::kMaxExceptions)
                    throw fleet::ExceptionChunkError("more than " + std::to_string(fleet::kMaxExceptions) +
                                                     " exceptions");
                exceptions->insert(exceptions->end(), chunk.begin(), chunk.end());
            } catch (const fleet::ExceptionChunkError& e) {
                throw MemcachedError("memcached " + client.server() + ": " + key + ": " + e.what());
            }
            return ++*next < chunks;
        },
        [this, &io = io_, alive = alive_, host, version, chunks, exceptions, server](const std::string& error) {
            boost::asio::post(io, [this, alive, host, version, chunks, exceptions, server, error] {
                if (*alive)
                    fetched(host, version, chunks, exceptions, server, error);
            });
        },
        true);
}

void FlowExceptionExchange::fetched(const std::string& host, std::uint64_t version, std::uint32_t chunks,
                                    const std::shared_ptr<std::vector<FlowException>>& exceptions, std::size_t server,
                                    const std::string& error) {
    const auto found = peers_.find(host);
    if (found == peers_.end())
        return;
    Peer& peer = found->second;
    peer.fetching = false;
    const bool current = peer.wanted_version == version && peer.wanted_chunks == chunks;
    if (!error.empty()) {
        if (current && server + 1 < links_.size()) {
            fetch(host, server + 1);
            return;
        }
        ++counters_.fetch_failures;
        peer.failed = current;  // tick() tries again; a newer version is read at once below
    } else if (current) {
        ++counters_.fetched_versions;
        peer.failed = false;
        peer.held_version = version;
        peer.held_chunks = chunks;
        peer.exceptions = std::move(*exceptions);
        recount();
        if (peers_changed_)
            peers_changed_();
    }
    if (!peer.departed && (peer.wanted_version != peer.held_version || peer.wanted_chunks != peer.held_chunks) &&
        !peer.failed)
        fetch(host, 0);
}

bool FlowExceptionExchange::holds_every_list(const std::vector<fleet::Member>& peers) const {
    return std::all_of(peers.begin(), peers.end(), [&](const fleet::Member& member) {
        if (member.flows_chunks == 0)
            return true;
        const auto found = peers_.find(member.host);
        return found != peers_.end() && found->second.held_version == member.flows_version &&
               found->second.held_chunks == member.flows_chunks;
    });
}

void FlowExceptionExchange::recount() {
    counters_.peer_exceptions = 0;
    for (const auto& [host, peer] : peers_)
        counters_.peer_exceptions += peer.exceptions.size();
}

std::vector<FlowException> FlowExceptionExchange::peer_exceptions() const {
    std::vector<const Peer*> by_version;
    for (const auto& [host, peer] : peers_)
        by_version.push_back(&peer);
    std::stable_sort(by_version.begin(), by_version.end(),
                     [](const Peer* a, const Peer* b) { return a->held_version < b->held_version; });
    std::vector<FlowException> all;
    all.reserve(counters_.peer_exceptions);
    for (const Peer* peer : by_version)
        all.insert(all.end(), peer->exceptions.begin(), peer->exceptions.end());
    return all;
}

nlohmann::json FlowExceptionExchange::show() const {
    nlohmann::json peers = nlohmann::json::array();
    const auto now = std::chrono::steady_clock::now();
    for (const auto& [host, peer] : peers_)
        peers.push_back(
            {{"host", host},
             {"version", peer.held_version},
             {"exceptions", peer.exceptions.size()},
             {"loading", peer.fetching || peer.wanted_version != peer.held_version},
             {"departed_age_ms",
              peer.departed
                  ? nlohmann::json(std::chrono::duration_cast<std::chrono::milliseconds>(now - *peer.departed).count())
                  : nlohmann::json(nullptr)}});
    return {{"version", published_version_},
            {"chunks", published_chunks_},
            {"published", counters_.published_exceptions},
            {"published_versions", counters_.published_versions},
            {"publish_failures", counters_.publish_failures},
            {"fetched_versions", counters_.fetched_versions},
            {"fetch_failures", counters_.fetch_failures},
            {"loaded", counters_.peer_exceptions},
            {"peers", peers}};
}

}  // namespace stickylb

// SPDX-License-Identifier: Apache-2.0
#include "session/affinity_store.h"

#include <algorithm>
#include <future>
#include <random>

namespace stickylb {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds kMaxTtl{30 * 24 * 3600};  // beyond this memcached reads an absolute time

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::uint64_t random_generation() {
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) ^ device();
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Waits for the futures until the deadline; a late one becomes an error string.
std::vector<std::string> wait_all(std::vector<std::future<std::string>>& futures,
                                  const std::vector<std::shared_ptr<MemcachedLink>>& links,
                                  Clock::time_point deadline) {
    std::vector<std::string> outcomes;
    for (std::size_t i = 0; i < futures.size(); ++i) {
        if (futures[i].wait_until(deadline) == std::future_status::ready)
            outcomes.push_back(futures[i].get());
        else
            outcomes.push_back("memcached " + links[i]->server() + ": no answer in time");
    }
    return outcomes;
}

}  // namespace

AffinityStore::AffinityStore(std::vector<std::shared_ptr<MemcachedLink>> links, std::chrono::milliseconds wait_limit,
                             std::size_t max_chunk_bytes, const session::SigningKey* key, SnapshotLimits limits)
    : links_(std::move(links)), wait_limit_(wait_limit), max_chunk_bytes_(max_chunk_bytes), key_(key), limits_(limits) {
    limits_.max_chunk_bytes = std::max(limits_.max_chunk_bytes, max_chunk_bytes_);
}

SnapshotSaveResult AffinityStore::save(const AffinitySnapshot& snapshot, std::chrono::seconds ttl) const {
    const auto start = Clock::now();
    ttl = std::clamp(ttl, std::chrono::seconds(1), kMaxTtl);
    SnapshotSaveResult result;
    auto encoded = std::make_shared<const EncodedSnapshot>(
        encode_snapshot(snapshot, random_generation(), wall_ms(), max_chunk_bytes_));
    result.generation = encoded->manifest.generation;
    result.entries = encoded->manifest.entries();
    result.chunks = encoded->chunks.size();
    result.bytes = encoded->manifest.bytes();
    auto manifest_text = std::make_shared<const std::string>(
        session::sign_value(key_, kAffinityManifestKey, encode_manifest(encoded->manifest)));
    auto signed_chunks = std::make_shared<std::vector<std::string>>();
    for (std::uint32_t index = 0; index < encoded->chunks.size(); ++index)
        signed_chunks->push_back(
            session::sign_value(key_, affinity_chunk_key(encoded->manifest.generation, index), encoded->chunks[index]));

    std::vector<std::future<std::string>> futures;
    for (const auto& link : links_) {
        auto promise = std::make_shared<std::promise<std::string>>();
        futures.push_back(promise->get_future());
        // Steps: 0 read the previous manifest, 1..n the chunks, n+1 the manifest, n+2 clean up.
        struct Progress {
            std::size_t step = 0;
            std::optional<SnapshotManifest> previous;
        };
        auto progress = std::make_shared<Progress>();
        link->submit_steps(
            [encoded, manifest_text, signed_chunks, progress, ttl, key = key_,
             limits = limits_](MemcachedClient& client) {
                const std::size_t chunks = encoded->chunks.size();
                const std::size_t step = progress->step++;
                if (step == 0) {
                    if (auto text = client.get(kAffinityManifestKey)) {
                        const session::OpenedValue opened = session::open_value(key, kAffinityManifestKey, *text);
                        try {
                            if (!opened.rejected)
                                progress->previous = parse_manifest(opened.payload, limits, wall_ms());
                        } catch (const SnapshotError&) {
                            // Not ours to read: overwritten below, its chunks expire on their own.
                        }
                    }
                } else if (step <= chunks) {
                    client.set(affinity_chunk_key(encoded->manifest.generation, static_cast<std::uint32_t>(step - 1)),
                               (*signed_chunks)[step - 1], ttl);
                } else if (step == chunks + 1) {
                    client.set(kAffinityManifestKey, *manifest_text, ttl);
                } else {
                    const auto& previous = progress->previous;
                    if (previous && previous->generation != encoded->manifest.generation)
                        for (std::uint32_t index = 0; index < previous->chunks.size(); ++index)
                            client.remove(affinity_chunk_key(previous->generation, index));
                    return false;
                }
                return true;
            },
            [promise](const std::string& error) { promise->set_value(error); }, /*fail_fast=*/true);
    }
    const auto outcomes = wait_all(futures, links_, start + wait_limit_);
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        if (outcomes[i].empty())
            result.servers_written.push_back(links_[i]->server());
        else
            result.errors.push_back(outcomes[i]);
    }
    result.duration_seconds = seconds_since(start);
    return result;
}

SnapshotLoadResult AffinityStore::load() const {
    const auto start = Clock::now();
    const auto deadline = start + wait_limit_;
    SnapshotLoadResult result;
    struct Found {
        std::shared_ptr<MemcachedLink> link;
        SnapshotManifest manifest;
    };
    // Every server's manifest, read in parallel.
    std::vector<std::future<std::string>> futures;
    std::vector<std::shared_ptr<std::optional<std::string>>> texts;
    for (const auto& link : links_) {
        auto promise = std::make_shared<std::promise<std::string>>();
        auto text = std::make_shared<std::optional<std::string>>();
        futures.push_back(promise->get_future());
        texts.push_back(text);
        link->submit([text](MemcachedClient& client) { *text = client.get(kAffinityManifestKey); },
                     [promise](const std::string& error) { promise->set_value(error); }, /*fail_fast=*/true);
    }
    const auto outcomes = wait_all(futures, links_, deadline);
    std::vector<Found> found;
    for (std::size_t i = 0; i < links_.size(); ++i) {
        const std::string& server = links_[i]->server();
        if (!outcomes[i].empty()) {
            result.errors.push_back(outcomes[i]);
        } else if (!*texts[i]) {
            result.errors.push_back("memcached " + server + ": no affinity snapshot");
        } else {
            const session::OpenedValue opened = session::open_value(key_, kAffinityManifestKey, **texts[i]);
            if (opened.rejected) {
                result.errors.push_back("memcached " + server + ": affinity snapshot manifest refused (" +
                                        std::string(session::to_string(*opened.rejected)) + ")");
                result.rejected.push_back(*opened.rejected);
                continue;
            }
            try {
                found.push_back({links_[i], parse_manifest(opened.payload, limits_, wall_ms())});
            } catch (const SnapshotError& error) {
                result.errors.push_back("memcached " + server + ": " + error.what());
                if (error.reason())
                    result.rejected.push_back(*error.reason());
            }
        }
    }
    std::stable_sort(found.begin(), found.end(),
                     [](const Found& a, const Found& b) { return a.manifest.written_ms > b.manifest.written_ms; });
    for (const Found& candidate : found) {
        const std::string& server = candidate.link->server();
        auto promise = std::make_shared<std::promise<std::string>>();
        auto future = promise->get_future();
        auto chunks = std::make_shared<std::vector<std::optional<std::string>>>();
        const SnapshotManifest manifest = candidate.manifest;
        candidate.link->submit(
            [chunks, manifest](MemcachedClient& client) {
                std::vector<std::string> keys;
                for (std::uint32_t index = 0; index < manifest.chunks.size(); ++index)
                    keys.push_back(affinity_chunk_key(manifest.generation, index));
                // A few keys per round trip: a million entries are about 40 chunks of 256 KiB.
                constexpr std::size_t kPerRequest = 8;
                std::map<std::string, std::string> values;
                for (std::size_t first = 0; first < keys.size(); first += kPerRequest) {
                    const std::vector<std::string> some(keys.begin() + first,
                                                        keys.begin() + std::min(keys.size(), first + kPerRequest));
                    values.merge(client.get_many(some));
                }
                for (const std::string& key : keys) {
                    auto value = values.find(key);
                    chunks->push_back(value == values.end() ? std::nullopt : std::optional(std::move(value->second)));
                }
            },
            [promise](const std::string& error) { promise->set_value(error); }, /*fail_fast=*/true);
        if (future.wait_until(deadline) != std::future_status::ready) {
            result.errors.push_back("memcached " + server + ": no answer in time");
            continue;
        }
        if (const std::string error = future.get(); !error.empty()) {
            result.errors.push_back(error);
            continue;
        }
        try {
            for (std::uint32_t index = 0; index < chunks->size(); ++index) {
                std::optional<std::string>& chunk = (*chunks)[index];
                if (!chunk)
                    continue;
                const std::string key = affinity_chunk_key(manifest.generation, index);
                const session::OpenedValue opened = session::open_value(key_, key, *chunk);
                if (opened.rejected)
                    throw SnapshotError(key + " refused (" + std::string(session::to_string(*opened.rejected)) + ")",
                                        *opened.rejected);
                chunk = std::string(opened.payload);
            }
            result.snapshot = decode_snapshot(manifest, *chunks);
            result.server = server;
            result.written_ms = manifest.written_ms;
            break;
        } catch (const SnapshotError& error) {
            result.errors.push_back("memcached " + server + ": " + error.what());
            if (error.reason())
                result.rejected.push_back(*error.reason());
        }
    }
    result.duration_seconds = seconds_since(start);
    return result;
}

}  // namespace stickylb

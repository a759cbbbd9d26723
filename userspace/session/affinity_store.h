// SPDX-License-Identifier: Apache-2.0
#pragma once
// Affinity snapshots in memcached (format: affinity_snapshot.h). Blocking calls
// that wait on the memcached links: run them on a BackgroundWorker, or at start
// before the io_context runs, never on the io_context.
//
// Save: every server gets the whole snapshot (a lost node loses nothing), in
// parallel, each as one job of the server's link: read the previous manifest,
// write the chunks, then the manifest, then delete the previous snapshot's
// chunks (so old snapshots never crowd the sessions out of memcached's memory).
// A server that fails a step is abandoned for this save; the others go on.
// Load: the manifests of every server, newest first; the first complete
// snapshot wins (a torn one is skipped, and said so). With a key, the manifest
// and every chunk are signed on save and checked on load; every snapshot is
// checked against the limits (affinity_snapshot.h) before it is decoded.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "session/affinity_snapshot.h"
#include "session/memcached_link.h"

namespace stickylb {

struct SnapshotSaveResult {
    std::uint64_t generation = 0;
    std::uint64_t entries = 0, chunks = 0, bytes = 0;
    std::vector<std::string> servers_written;
    std::vector<std::string> errors;  // one per server that failed
    double duration_seconds = 0;
};

struct SnapshotLoadResult {
    std::optional<AffinitySnapshot> snapshot;  // nullopt: no usable snapshot anywhere
    std::string server;                        // where it was read
    std::int64_t written_ms = 0;
    std::vector<std::string> errors;           // why other servers' snapshots were not used
    std::vector<session::Rejection> rejected;  // one per snapshot refused for what it held
    double duration_seconds = 0;
};

class AffinityStore {
public:
    // wait_limit bounds each blocking call (on top of the links' own timeouts).
    // key: signs what is saved and is required of what is loaded (nullptr: neither).
    AffinityStore(std::vector<std::shared_ptr<MemcachedLink>> links, std::chrono::milliseconds wait_limit,
                  std::size_t max_chunk_bytes = kDefaultChunkBytes, const session::SigningKey* key = nullptr,
                  SnapshotLimits limits = {});

    // ttl: of every key written (whole seconds; clamped to memcached's 30 days).
    SnapshotSaveResult save(const AffinitySnapshot& snapshot, std::chrono::seconds ttl) const;
    SnapshotLoadResult load() const;

private:
    std::vector<std::shared_ptr<MemcachedLink>> links_;
    std::chrono::milliseconds wait_limit_;
    std::size_t max_chunk_bytes_;
    const session::SigningKey* key_;
    SnapshotLimits limits_;
};

}  // namespace stickylb

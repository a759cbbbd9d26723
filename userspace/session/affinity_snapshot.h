// SPDX-License-Identifier: Apache-2.0
#pragma once
// The affinity table as it is saved to memcached (pure: no I/O, unit-tested).
//
// A snapshot is a manifest plus chunks, under
//   stickylb:v1:affinity:manifest                  JSON, written LAST
//   stickylb:v1:affinity:<generation>:<n>          binary chunks, each at most
//                                                  max_chunk_bytes (default 256 KiB,
//                                                  well under memcached's 1 MiB items)
// The generation (random, 16 hex digits) is in every chunk's key and header, and
// the manifest holds each chunk's size, entry count and FNV-1a checksum: a reader
// that follows a manifest never mixes two snapshots, and a chunk missing, short
// or from another snapshot rejects the whole snapshot (a torn snapshot restores
// nothing rather than half of the clients).
//
// Indexes differ between hosts, so entries carry names: the manifest lists the
// VIP and backend names, entries refer to them by position. Last-seen times are
// wall-clock milliseconds: the map holds CLOCK_MONOTONIC nanoseconds, which mean
// nothing on another host or after a reboot; the conversion is done both ways here.
//
// Chunk layout (little endian): "SLBA", version 1, 3 zero bytes, generation u64,
// chunk index u32, entry count u32, base last-seen ms i64; then per entry:
// varint VIP position, varint backend position, family u8 (4|6), the masked
// client address (4 or 16 bytes), zigzag varint (last-seen ms - base).
//
// A snapshot is input from outside (anyone who can write to memcached): every
// count in a manifest is checked against the bytes it describes and against
// SnapshotLimits before anything is allocated for it, no arithmetic on its
// numbers can wrap, a manifest written in the future (beyond the clock skew
// allowed) is refused, and so is an entry seen after its snapshot was written.
// Values are signed when a key is configured (session/signed_value.h; the
// store checks them, this codec sees the payloads).
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "base/address.h"
#include "dataplane/maps.h"
#include "control/reconciler.h"
#include "session/signed_value.h"

namespace stickylb {

inline constexpr std::string_view kAffinityManifestKey = "stickylb:v1:affinity:manifest";
inline constexpr std::size_t kDefaultChunkBytes = 256 * 1024;
// The smallest entry: two one-byte positions, the family, an IPv4 address, a one-byte offset.
inline constexpr std::size_t kMinEntryBytes = 1 + 1 + 1 + 4 + 1;
inline constexpr std::size_t kChunkHeaderBytes = 4 + 1 + 3 + 8 + 4 + 4 + 8;

struct SnapshotLimits {
    std::uint64_t max_entries = STICKYLB_DEFAULT_AFFINITY_ENTRIES;  // the affinity table's size
    std::size_t max_chunk_bytes = 1024 * 1024;                      // memcached's largest item
    std::size_t max_names = 65536;                                  // VIP and backend names, each list
    std::chrono::milliseconds max_clock_skew{60'000};               // how far in the future written_ms may be
};

std::string affinity_chunk_key(std::uint64_t generation, std::uint32_t index);
// A chunk's checksum, as its manifest lists it: FNV-1a 64 of its bytes.
std::uint64_t snapshot_checksum(std::string_view chunk);

struct SnapshotEntry {
    std::uint32_t vip = 0;          // position in AffinitySnapshot::vips
    std::uint32_t backend = 0;      // position in AffinitySnapshot::backends (a backend of that VIP)
    IpAddress client;               // masked to the VIP's client prefix
    std::int64_t last_seen_ms = 0;  // wall clock, ms since the Unix epoch
    bool operator==(const SnapshotEntry&) const = default;
};

struct AffinitySnapshot {
    std::vector<std::string> vips;
    std::vector<std::string> backends;
    std::vector<SnapshotEntry> entries;
    bool operator==(const AffinitySnapshot&) const = default;
};

struct ChunkInfo {
    std::uint32_t entries = 0;
    std::uint32_t bytes = 0;
    std::uint64_t checksum = 0;  // FNV-1a 64 of the chunk
    bool operator==(const ChunkInfo&) const = default;
};

struct SnapshotManifest {
    std::uint64_t generation = 0;
    std::int64_t written_ms = 0;
    std::vector<std::string> vips;
    std::vector<std::string> backends;
    std::vector<ChunkInfo> chunks;
    std::uint64_t entries() const;
    std::uint64_t bytes() const;
    bool operator==(const SnapshotManifest&) const = default;
};

struct EncodedSnapshot {
    SnapshotManifest manifest;
    std::vector<std::string> chunks;  // chunks[i] goes under affinity_chunk_key(generation, i)
};

// A snapshot that cannot be used: torn (reason() nullopt: a chunk missing,
// evicted or not written yet), or refused for what it holds: corrupt, of an
// unknown format, its sizes or its time (reason(): the rejected counter's label).
class SnapshotError : public std::runtime_error {
public:
    explicit SnapshotError(const std::string& what,
                           std::optional<session::Rejection> reason = session::Rejection::malformed)
        : std::runtime_error(what), reason_(reason) {}
    std::optional<session::Rejection> reason() const { return reason_; }

private:
    std::optional<session::Rejection> reason_;
};

// Throws std::invalid_argument if max_chunk_bytes cannot hold one entry.
EncodedSnapshot encode_snapshot(const AffinitySnapshot& snapshot, std::uint64_t generation, std::int64_t written_ms,
                                std::size_t max_chunk_bytes = kDefaultChunkBytes);
std::string encode_manifest(const SnapshotManifest& manifest);
// Throws SnapshotError: not a manifest, or counts that its chunk sizes cannot
// hold or that pass `limits`, or written after now_ms + the skew allowed.
SnapshotManifest parse_manifest(std::string_view text, const SnapshotLimits& limits, std::int64_t now_ms);
// chunks[i]: the value stored under chunk i's key, nullopt if it was missing.
// Throws SnapshotError (naming the chunk) unless every chunk is there and matches.
AffinitySnapshot decode_snapshot(const SnapshotManifest& manifest,
                                 const std::vector<std::optional<std::string>>& chunks);

// What data-plane indexes mean right now: persistent VIPs and their backends.
struct AffinityLayout {
    struct Vip {
        std::uint32_t index = 0;
        std::uint32_t timeout_s = 0;
        std::uint8_t client_prefix_v4 = 32, client_prefix_v6 = 128;
    };
    struct Backend {
        std::uint32_t index = 0;
        bool down = false;
    };
    std::map<std::string, Vip> vips;        // persistent VIPs only, by name
    std::map<BackendId, Backend> backends;  // backends of those VIPs
};
AffinityLayout affinity_layout(const DesiredState& desired);

// The table's live entries by name; expired entries and unknown indexes are left out.
AffinitySnapshot snapshot_of(const std::vector<AffinityRecord>& records, const AffinityLayout& layout,
                             std::int64_t now_wall_ms);

struct RestorePlan {
    std::vector<AffinityWrite> writes;
    std::uint64_t expired = 0;
    std::uint64_t unknown_vip = 0;      // not configured here, or not persistent
    std::uint64_t unknown_backend = 0;  // not a backend of that VIP here
    std::uint64_t backend_down = 0;
};
// Entries to write (last seen converted to the monotonic clock at now_monotonic_ns),
// and what is skipped by reason.
RestorePlan plan_restore(const AffinitySnapshot& snapshot, const AffinityLayout& layout, std::int64_t now_wall_ms,
                         std::uint64_t now_monotonic_ns);

}  // namespace stickylb

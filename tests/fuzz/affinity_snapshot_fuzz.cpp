// SPDX-License-Identifier: Apache-2.0
// Affinity snapshots (session/affinity_snapshot.h): whatever a memcached server
// holds under the manifest and chunk keys reaches parse_manifest and
// decode_snapshot. The input is the manifest's text, then the chunks, each
// after a "\0CHUNK\0" separator. Invariants:
// - only SnapshotError escapes either, and nothing is allocated for counts the
//   bytes cannot hold (ASan's allocation limit would fail the run);
// - an accepted manifest obeys the limits: its entries fit its chunk sizes and
//   the table, its chunks are within their size bounds, it is not from the future;
// - a decoded snapshot has exactly the manifest's entries, every position names
//   a listed VIP and backend, nobody was seen after the snapshot was written,
//   and it encodes and decodes back to itself.
// The same chunks are also given a manifest that matches them (sizes and
// checksums), so the chunk decoder is reached past its checksum.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "session/affinity_snapshot.h"
#include "fuzz/fuzz_check.h"

namespace {

using namespace stickylb;

constexpr std::int64_t kNow = 1'800'000'000'000;  // wall clock, ms
constexpr std::string_view kSeparator{"\0CHUNK\0", 7};

SnapshotLimits limits() {
    SnapshotLimits limits;
    limits.max_entries = 100'000;
    limits.max_chunk_bytes = 64 * 1024;
    limits.max_names = 64;
    return limits;
}

void check_decoded(const SnapshotManifest& manifest, const std::vector<std::optional<std::string>>& chunks) {
    AffinitySnapshot snapshot;
    try {
        snapshot = decode_snapshot(manifest, chunks);
    } catch (const SnapshotError&) {
        return;
    }
    FUZZ_CHECK(snapshot.entries.size() == manifest.entries(), "every entry the manifest counts, no more");
    for (const SnapshotEntry& entry : snapshot.entries) {
        FUZZ_CHECK(entry.vip < snapshot.vips.size() && entry.backend < snapshot.backends.size(),
                   "positions name listed VIPs and backends");
        FUZZ_CHECK(entry.last_seen_ms <= manifest.written_ms, "nobody seen after the snapshot was written");
        FUZZ_CHECK(entry.client.family() == STICKYLB_FAMILY_IPV4 || entry.client.family() == STICKYLB_FAMILY_IPV6,
                   "clients are addresses");
    }
    const EncodedSnapshot again = encode_snapshot(snapshot, manifest.generation, manifest.written_ms, 64 * 1024);
    const SnapshotManifest reparsed = parse_manifest(encode_manifest(again.manifest), limits(), kNow);
    FUZZ_CHECK(decode_snapshot(reparsed, {again.chunks.begin(), again.chunks.end()}) == snapshot,
               "a decoded snapshot encodes and decodes back to itself");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::vector<std::string_view> parts;
    for (std::size_t at = 0;;) {
        const std::size_t next = input.find(kSeparator, at);
        parts.push_back(input.substr(at, next == std::string_view::npos ? std::string_view::npos : next - at));
        if (next == std::string_view::npos || parts.size() > 32)
            break;
        at = next + kSeparator.size();
    }
    const std::vector<std::optional<std::string>> chunks(parts.begin() + 1, parts.end());

    // The manifest as stored.
    try {
        const SnapshotManifest manifest = parse_manifest(parts[0], limits(), kNow);
        FUZZ_CHECK(manifest.entries() <= limits().max_entries, "entries within the table");
        FUZZ_CHECK(manifest.written_ms > 0 && manifest.written_ms <= kNow + limits().max_clock_skew.count(),
                   "not from the future");
        for (const ChunkInfo& chunk : manifest.chunks) {
            FUZZ_CHECK(chunk.bytes >= kChunkHeaderBytes && chunk.bytes <= limits().max_chunk_bytes,
                       "chunk size bounds");
            FUZZ_CHECK(chunk.entries <= (chunk.bytes - kChunkHeaderBytes) / kMinEntryBytes, "entries fit the chunk");
        }
        check_decoded(manifest, chunks);
    } catch (const SnapshotError&) {
    }

    // The chunks under a manifest that matches them, so that their contents are what is judged.
    SnapshotManifest matching;
    if (parts.size() > 1 && parts[1].size() >= 16)
        for (int i = 0; i < 8; ++i)
            matching.generation |= static_cast<std::uint64_t>(static_cast<unsigned char>(parts[1][8 + i])) << (8 * i);
    matching.written_ms = kNow;
    matching.vips = {"web", "api"};
    matching.backends = {"be1", "be2", "be3"};
    for (const auto& chunk : chunks) {
        std::uint32_t count = 0;
        if (chunk->size() >= kChunkHeaderBytes)
            for (int i = 0; i < 4; ++i)
                count |= static_cast<std::uint32_t>(static_cast<unsigned char>((*chunk)[20 + i])) << (8 * i);
        matching.chunks.push_back({count, static_cast<std::uint32_t>(chunk->size()), snapshot_checksum(*chunk)});
    }
    check_decoded(matching, chunks);
    return 0;
}

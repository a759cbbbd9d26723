// SPDX-License-Identifier: Apache-2.0
#include "session/affinity_snapshot.h"

#include <charconv>
#include <cstdio>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "session/membership_view.h"

namespace stickylb {
namespace {

constexpr char kMagic[4] = {'S', 'L', 'B', 'A'};
constexpr std::uint8_t kVersion = 1;
constexpr std::size_t kHeaderBytes = kChunkHeaderBytes;
constexpr std::size_t kMaxEntryBytes = 5 + 5 + 1 + 16 + 10;
constexpr int kManifestFormat = 1;

std::uint64_t fnv1a(std::string_view bytes) {
    std::uint64_t hash = 0xcbf29ce484222325ull;
    for (const unsigned char byte : bytes) {
        hash ^= byte;
        hash *= 0x100000001b3ull;
    }
    return hash;
}

std::string hex64(std::uint64_t value) {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
    return text;
}

// An integer field of the manifest within T's range (a float or a string is not one).
template <typename T>
T integer_field(const nlohmann::json& object, const char* name) {
    const nlohmann::json& value = object.at(name);
    const bool fits = value.is_number_unsigned()
                          ? value.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<T>::max())
                          : value.is_number_integer() && std::numeric_limits<T>::is_signed &&
                                value.get<std::int64_t>() >= static_cast<std::int64_t>(std::numeric_limits<T>::min());
    if (!fits)
        throw SnapshotError(std::string("manifest: ") + name + " is not an integer in range");
    return value.get<T>();
}

std::uint64_t parse_hex64(const std::string& text, const std::string& what) {
    std::uint64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
    if (text.size() != 16 || error != std::errc{} || end != text.data() + text.size())
        throw SnapshotError("manifest: " + what + " '" + text + "' is not 16 hex digits");
    return value;
}

template <typename T>
void put_le(std::string& out, T value) {
    for (std::size_t i = 0; i < sizeof(T); ++i)
        out.push_back(static_cast<char>((static_cast<std::uint64_t>(value) >> (8 * i)) & 0xff));
}

void put_varint(std::string& out, std::uint64_t value) {
    while (value >= 0x80) {
        out.push_back(static_cast<char>((value & 0x7f) | 0x80));
        value >>= 7;
    }
    out.push_back(static_cast<char>(value));
}

std::uint64_t zigzag(std::int64_t value) {
    return (static_cast<std::uint64_t>(value) << 1) ^ static_cast<std::uint64_t>(value >> 63);
}
std::int64_t unzigzag(std::uint64_t value) {
    return static_cast<std::int64_t>(value >> 1) ^ -static_cast<std::int64_t>(value & 1);
}

// Reads a chunk; every read is bounds-checked, a short or overlong chunk throws.
class Reader {
public:
    Reader(std::string_view bytes, std::string where) : bytes_(bytes), where_(std::move(where)) {}
    template <typename T>
    T le() {
        need(sizeof(T));
        std::uint64_t value = 0;
        for (std::size_t i = 0; i < sizeof(T); ++i)
            value |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes_[at_ + i])) << (8 * i);
        at_ += sizeof(T);
        return static_cast<T>(value);
    }
    std::uint64_t varint() {
        std::uint64_t value = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            need(1);
            const auto byte = static_cast<unsigned char>(bytes_[at_++]);
            value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
            if ((byte & 0x80) == 0)
                return value;
        }
        throw SnapshotError(where_ + ": malformed number");
    }
    std::string_view take(std::size_t count) {
        need(count);
        std::string_view part = bytes_.substr(at_, count);
        at_ += count;
        return part;
    }
    bool done() const { return at_ == bytes_.size(); }

private:
    void need(std::size_t count) const {
        if (bytes_.size() - at_ < count)
            throw SnapshotError(where_ + ": truncated");
    }
    std::string_view bytes_;
    std::string where_;
    std::size_t at_ = 0;
};

std::string chunk_header(std::uint64_t generation, std::uint32_t index, std::uint32_t count, std::int64_t base_ms) {
    std::string header(kMagic, sizeof kMagic);
    header.push_back(static_cast<char>(kVersion));
    header.append(3, '\0');
    put_le(header, generation);
    put_le(header, index);
    put_le(header, count);
    put_le(header, base_ms);
    return header;
}

void put_entry(std::string& out, const SnapshotEntry& entry, std::int64_t base_ms) {
    put_varint(out, entry.vip);
    put_varint(out, entry.backend);
    out.push_back(static_cast<char>(entry.client.family()));
    out.append(reinterpret_cast<const char*>(entry.client.bytes().data()), entry.client.is_v4() ? 4 : 16);
    put_varint(out, zigzag(entry.last_seen_ms - base_ms));
}

}  // namespace

std::uint64_t snapshot_checksum(std::string_view chunk) { return fnv1a(chunk); }

std::string affinity_chunk_key(std::uint64_t generation, std::uint32_t index) {
    return "stickylb:v1:affinity:" + hex64(generation) + ":" + std::to_string(index);
}

std::uint64_t SnapshotManifest::entries() const {
    std::uint64_t total = 0;
    for (const ChunkInfo& chunk : chunks)
        total += chunk.entries;
    return total;
}

std::uint64_t SnapshotManifest::bytes() const {
    std::uint64_t total = 0;
    for (const ChunkInfo& chunk : chunks)
        total += chunk.bytes;
    return total;
}

EncodedSnapshot encode_snapshot(const AffinitySnapshot& snapshot, std::uint64_t generation, std::int64_t written_ms,
                                std::size_t max_chunk_bytes) {
    if (max_chunk_bytes < kHeaderBytes + kMaxEntryBytes)
        throw std::invalid_argument("affinity snapshot chunks of " + std::to_string(max_chunk_bytes) +
                                    " bytes cannot hold an entry (at least " +
                                    std::to_string(kHeaderBytes + kMaxEntryBytes) + ")");
    EncodedSnapshot encoded;
    encoded.manifest.generation = generation;
    encoded.manifest.written_ms = written_ms;
    encoded.manifest.vips = snapshot.vips;
    encoded.manifest.backends = snapshot.backends;
    std::string body;
    std::uint32_t count = 0;
    std::int64_t base_ms = 0;
    const auto finish = [&] {
        const auto index = static_cast<std::uint32_t>(encoded.chunks.size());
        std::string chunk = chunk_header(generation, index, count, base_ms) + body;
        encoded.manifest.chunks.push_back({count, static_cast<std::uint32_t>(chunk.size()), fnv1a(chunk)});
        encoded.chunks.push_back(std::move(chunk));
        body.clear();
        count = 0;
    };
    std::string one;
    for (const SnapshotEntry& entry : snapshot.entries) {
        if (entry.vip >= snapshot.vips.size() || entry.backend >= snapshot.backends.size())
            throw std::invalid_argument("affinity snapshot entry refers to a name that is not listed");
        if (count == 0)
            base_ms = entry.last_seen_ms;
        one.clear();
        put_entry(one, entry, base_ms);
        if (kHeaderBytes + body.size() + one.size() > max_chunk_bytes) {
            finish();
            base_ms = entry.last_seen_ms;
            one.clear();
            put_entry(one, entry, base_ms);
        }
        body += one;
        ++count;
    }
    if (count > 0)
        finish();
    return encoded;
}

std::string encode_manifest(const SnapshotManifest& manifest) {
    nlohmann::json chunks = nlohmann::json::array();
    for (const ChunkInfo& chunk : manifest.chunks)
        chunks.push_back({{"entries", chunk.entries}, {"bytes", chunk.bytes}, {"fnv1a", hex64(chunk.checksum)}});
    const nlohmann::json json{{"format", kManifestFormat},         {"generation", hex64(manifest.generation)},
                              {"written_ms", manifest.written_ms}, {"vips", manifest.vips},
                              {"backends", manifest.backends},     {"chunks", chunks}};
    return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

SnapshotManifest parse_manifest(std::string_view text, const SnapshotLimits& limits, std::int64_t now_ms) {
    const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded() || !json.is_object())
        throw SnapshotError("manifest: not a JSON object");
    SnapshotManifest manifest;
    try {
        if (integer_field<int>(json, "format") != kManifestFormat)
            throw SnapshotError("manifest: format " + json.at("format").dump() + " is not " +
                                std::to_string(kManifestFormat));
        manifest.generation = parse_hex64(json.at("generation").get<std::string>(), "generation");
        manifest.written_ms = integer_field<std::int64_t>(json, "written_ms");
        for (const char* list : {"vips", "backends"}) {
            const nlohmann::json& names = json.at(list);
            if (!names.is_array() || names.size() > limits.max_names)
                throw SnapshotError(std::string("manifest: ") + list + " is not a list of at most " +
                                        std::to_string(limits.max_names) + " names",
                                    session::Rejection::too_large);
            for (const nlohmann::json& name : names)
                if (auto problem = session::name_problem(name.get<std::string>()))
                    throw SnapshotError(std::string("manifest: ") + list + ": " + *problem);
        }
        manifest.vips = json.at("vips").get<std::vector<std::string>>();
        manifest.backends = json.at("backends").get<std::vector<std::string>>();
        const nlohmann::json& chunks = json.at("chunks");
        if (!chunks.is_array())
            throw SnapshotError("manifest: chunks is not a list");
        std::uint64_t entries = 0;
        for (const nlohmann::json& chunk : chunks) {
            const ChunkInfo info{integer_field<std::uint32_t>(chunk, "entries"),
                                 integer_field<std::uint32_t>(chunk, "bytes"),
                                 parse_hex64(chunk.at("fnv1a").get<std::string>(), "checksum")};
            const std::string where = "manifest: chunk " + std::to_string(manifest.chunks.size());
            if (info.bytes < kHeaderBytes || info.bytes > limits.max_chunk_bytes)
                throw SnapshotError(where + " of " + std::to_string(info.bytes) + " bytes (" +
                                        std::to_string(kHeaderBytes) + ".." + std::to_string(limits.max_chunk_bytes) +
                                        ")",
                                    session::Rejection::too_large);
            if (info.entries > (info.bytes - kHeaderBytes) / kMinEntryBytes)
                throw SnapshotError(where + ": " + std::to_string(info.entries) + " entries cannot fit in " +
                                        std::to_string(info.bytes) + " bytes",
                                    session::Rejection::too_large);
            entries += info.entries;
            if (entries > limits.max_entries)
                throw SnapshotError("manifest: more than " + std::to_string(limits.max_entries) +
                                        " entries (the affinity table's size)",
                                    session::Rejection::too_large);
            manifest.chunks.push_back(info);
        }
    } catch (const nlohmann::json::exception& error) {
        throw SnapshotError(std::string("manifest: ") + error.what());
    }
    if (manifest.written_ms <= 0)
        throw SnapshotError("manifest: written_ms " + std::to_string(manifest.written_ms) + " is not a time");
    const std::int64_t skew = limits.max_clock_skew.count();
    if (manifest.written_ms > now_ms && manifest.written_ms - now_ms > skew)
        throw SnapshotError(
            "manifest: written " + std::to_string((manifest.written_ms - now_ms) / 1000) + " s in the future",
            session::Rejection::future);
    return manifest;
}

AffinitySnapshot decode_snapshot(const SnapshotManifest& manifest,
                                 const std::vector<std::optional<std::string>>& chunks) {
    const std::string snapshot_name = "affinity snapshot " + hex64(manifest.generation);
    if (chunks.size() != manifest.chunks.size())
        throw SnapshotError(snapshot_name + ": " + std::to_string(chunks.size()) + " chunks for a manifest of " +
                            std::to_string(manifest.chunks.size()));
    AffinitySnapshot snapshot;
    snapshot.vips = manifest.vips;
    snapshot.backends = manifest.backends;
    // What the chunks present can hold, whatever the manifest says.
    std::uint64_t present = 0;
    for (const auto& chunk : chunks)
        present += chunk ? chunk->size() / kMinEntryBytes : 0;
    snapshot.entries.reserve(std::min(manifest.entries(), present));
    for (std::size_t index = 0; index < chunks.size(); ++index) {
        const std::string where = snapshot_name + " chunk " + std::to_string(index);
        if (!chunks[index])
            throw SnapshotError(where + " is missing (evicted, expired or not written yet)", std::nullopt);
        const std::string& chunk = *chunks[index];
        const ChunkInfo& info = manifest.chunks[index];
        if (chunk.size() != info.bytes || fnv1a(chunk) != info.checksum)
            throw SnapshotError(where + " does not match the manifest (another snapshot's, or damaged)");
        Reader reader(chunk, where);
        if (reader.take(sizeof kMagic) != std::string_view(kMagic, sizeof kMagic) ||
            reader.le<std::uint8_t>() != kVersion)
            throw SnapshotError(where + ": not a version 1 chunk");
        reader.take(3);
        if (reader.le<std::uint64_t>() != manifest.generation || reader.le<std::uint32_t>() != index)
            throw SnapshotError(where + ": header names another snapshot or position");
        const auto count = reader.le<std::uint32_t>();
        const auto base_ms = reader.le<std::int64_t>();
        if (count != info.entries)
            throw SnapshotError(where + ": entry count does not match the manifest");
        for (std::uint32_t i = 0; i < count; ++i) {
            SnapshotEntry entry;
            const std::uint64_t vip = reader.varint();
            const std::uint64_t backend = reader.varint();
            if (vip >= snapshot.vips.size() || backend >= snapshot.backends.size())
                throw SnapshotError(where + ": entry refers to a name the manifest does not list");
            entry.vip = static_cast<std::uint32_t>(vip);
            entry.backend = static_cast<std::uint32_t>(backend);
            const auto family = reader.le<std::uint8_t>();
            if (family != STICKYLB_FAMILY_IPV4 && family != STICKYLB_FAMILY_IPV6)
                throw SnapshotError(where + ": entry with address family " + std::to_string(family));
            stickylb_addr address{};
            const std::string_view bytes = reader.take(family == STICKYLB_FAMILY_IPV4 ? 4 : 16);
            std::memcpy(address.bytes, bytes.data(), bytes.size());
            entry.client = IpAddress::from_abi(address, family);
            if (__builtin_add_overflow(base_ms, unzigzag(reader.varint()), &entry.last_seen_ms))
                throw SnapshotError(where + ": a last-seen time out of range");
            // Saved entries were all seen before their snapshot was written, and after 1970.
            if (entry.last_seen_ms > manifest.written_ms)
                throw SnapshotError(where + ": an entry seen after the snapshot was written");
            if (entry.last_seen_ms < 0)
                throw SnapshotError(where + ": an entry seen before 1970");
            snapshot.entries.push_back(entry);
        }
        if (!reader.done())
            throw SnapshotError(where + ": bytes after the last entry");
    }
    return snapshot;
}

AffinityLayout affinity_layout(const DesiredState& desired) {
    AffinityLayout layout;
    for (const DesiredVip& vip : desired.vips) {
        if (!vip.settings.persistent)
            continue;
        layout.vips[vip.name] = {vip.settings.index, vip.settings.affinity_timeout_s, vip.settings.client_prefix_v4,
                                 vip.settings.client_prefix_v6};
        for (const DesiredBackend& backend : vip.backends)
            layout.backends[backend.id] = {backend.index, backend.state == BackendState::down};
    }
    return layout;
}

AffinitySnapshot snapshot_of(const std::vector<AffinityRecord>& records, const AffinityLayout& layout,
                             std::int64_t now_wall_ms) {
    struct Named {
        std::uint32_t vip, backend;
    };
    AffinitySnapshot snapshot;
    std::map<std::uint32_t, std::pair<std::uint32_t, std::uint64_t>> vips;  // index -> (position, timeout ms)
    std::map<std::uint32_t, Named> backends;                                // index -> positions
    std::map<std::string, std::uint32_t> backend_names;                     // name -> position
    for (const auto& [name, vip] : layout.vips) {
        vips[vip.index] = {static_cast<std::uint32_t>(snapshot.vips.size()), std::uint64_t{vip.timeout_s} * 1000};
        snapshot.vips.push_back(name);
    }
    for (const auto& [id, backend] : layout.backends) {
        const auto vip = layout.vips.find(id.first);
        if (vip == layout.vips.end())
            continue;
        auto [position, inserted] =
            backend_names.try_emplace(id.second, static_cast<std::uint32_t>(snapshot.backends.size()));
        if (inserted)
            snapshot.backends.push_back(id.second);
        backends[backend.index] = {vips[vip->second.index].first, position->second};
    }
    snapshot.entries.reserve(records.size());
    for (const AffinityRecord& record : records) {
        const auto vip = vips.find(record.vip_index);
        const auto backend = backends.find(record.backend_index);
        if (vip == vips.end() || backend == backends.end() || backend->second.vip != vip->second.first)
            continue;
        const auto age_ms =
            static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(record.age).count());
        if (age_ms >= vip->second.second)
            continue;
        snapshot.entries.push_back({vip->second.first, backend->second.backend, record.client,
                                    now_wall_ms - static_cast<std::int64_t>(age_ms)});
    }
    return snapshot;
}

RestorePlan plan_restore(const AffinitySnapshot& snapshot, const AffinityLayout& layout, std::int64_t now_wall_ms,
                         std::uint64_t now_monotonic_ns) {
    RestorePlan plan;
    // Names resolved once per position, not per entry.
    std::vector<const AffinityLayout::Vip*> vips;
    for (const std::string& name : snapshot.vips) {
        const auto found = layout.vips.find(name);
        vips.push_back(found == layout.vips.end() ? nullptr : &found->second);
    }
    std::map<std::pair<std::uint32_t, std::uint32_t>, const AffinityLayout::Backend*> backends;
    const auto backend_of = [&](std::uint32_t vip, std::uint32_t backend) -> const AffinityLayout::Backend* {
        const auto key = std::make_pair(vip, backend);
        if (auto cached = backends.find(key); cached != backends.end())
            return cached->second;
        const auto found = layout.backends.find(BackendId{snapshot.vips[vip], snapshot.backends[backend]});
        return backends[key] = found == layout.backends.end() ? nullptr : &found->second;
    };
    plan.writes.reserve(snapshot.entries.size());
    for (const SnapshotEntry& entry : snapshot.entries) {
        const AffinityLayout::Vip* vip = vips.at(entry.vip);
        if (vip == nullptr) {
            ++plan.unknown_vip;
            continue;
        }
        const std::int64_t age_ms = std::max<std::int64_t>(0, now_wall_ms - entry.last_seen_ms);
        if (static_cast<std::uint64_t>(age_ms) >= std::uint64_t{vip->timeout_s} * 1000) {
            ++plan.expired;
            continue;
        }
        const AffinityLayout::Backend* backend = backend_of(entry.vip, entry.backend);
        if (backend == nullptr) {
            ++plan.unknown_backend;
            continue;
        }
        if (backend->down) {
            ++plan.backend_down;
            continue;
        }
        const std::uint64_t age_ns = static_cast<std::uint64_t>(age_ms) * 1'000'000ull;
        // An entry older than this host's uptime cannot be placed exactly: it
        // starts at boot, living at most its timeout longer than it would have.
        const std::uint64_t last_seen = now_monotonic_ns > age_ns ? now_monotonic_ns - age_ns : 1;
        const IpAddress client =
            entry.client.masked(entry.client.is_v4() ? vip->client_prefix_v4 : vip->client_prefix_v6);
        plan.writes.push_back({vip->index, client, backend->index, last_seen});
    }
    return plan;
}

}  // namespace stickylb

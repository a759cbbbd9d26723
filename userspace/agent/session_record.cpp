// SPDX-License-Identifier: Apache-2.0
#include "agent/session_record.h"

#include <limits>

namespace stickylb::agent {

namespace {

constexpr std::string_view kMagic{"SLB\x01", 4};
constexpr std::string_view kTombstoneMagic{"SLB\x02", 4};

void put_u64(std::string& out, std::uint64_t value) {
    for (int i = 0; i < 8; ++i)
        out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

std::uint64_t get_u64(std::string_view in) {
    std::uint64_t value = 0;
    for (int i = 7; i >= 0; --i)
        value = (value << 8) | static_cast<unsigned char>(in[i]);
    return value;
}

}  // namespace

std::string encode_session_record(const SessionRecord& record) {
    std::string out;
    out.reserve(kSessionRecordHeaderBytes + record.payload.size());
    out += record.deleted ? kTombstoneMagic : kMagic;
    put_u64(out, record.version);
    put_u64(out, record.write_id);
    if (!record.deleted)
        out += record.payload;
    return out;
}

SessionRecord decode_session_record(std::string_view stored) {
    const bool tombstone = stored.starts_with(kTombstoneMagic);
    if (stored.size() < kSessionRecordHeaderBytes || !(tombstone || stored.starts_with(kMagic))) {
        return SessionRecord{0, 0, std::string(stored), false};
    }
    SessionRecord record{get_u64(stored.substr(4, 8)), get_u64(stored.substr(12, 8)), {}, tombstone};
    if (!tombstone)
        record.payload = std::string(stored.substr(kSessionRecordHeaderBytes));
    return record;
}

bool newer_than(const SessionRecord& a, const SessionRecord& b) {
    if (a.version != b.version)
        return a.version > b.version;
    return a.write_id > b.write_id;
}

std::optional<std::uint64_t> next_version(const std::optional<SessionRecord>& newest) {
    if (!newest)
        return 1;
    if (newest->version == std::numeric_limits<std::uint64_t>::max())
        return std::nullopt;
    return newest->version + 1;
}

}  // namespace stickylb::agent

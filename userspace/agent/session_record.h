// SPDX-License-Identifier: Apache-2.0
#pragma once
// How a session is stored upstream: the client's bytes behind a 20-byte
// header, so replicas can be compared and a stale one repaired.
//   "SLB\x01" | version (u64 LE) | write id (u64 LE) | payload     a session
//   "SLB\x02" | version (u64 LE) | write id (u64 LE)               a tombstone
// version grows by one per write; write id is random per write, so two writes
// of the same version (a split brain) are told apart. A value without either
// header (written by a client that bypassed the agent) reads as version 0.
// A tombstone is a delete that keeps its version: it orders like a write, so
// a repair carrying an older copy cannot bring a deleted session back, and
// the next write of the same id goes on above it. Its payload is empty.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stickylb::agent {

struct SessionRecord {
    std::uint64_t version = 0;
    std::uint64_t write_id = 0;
    std::string payload;
    bool deleted = false;  // a tombstone
    bool operator==(const SessionRecord&) const = default;
};

inline constexpr std::size_t kSessionRecordHeaderBytes = 20;

std::string encode_session_record(const SessionRecord& record);
SessionRecord decode_session_record(std::string_view stored);

// Which of two copies is the newer: higher version, then higher write id.
bool newer_than(const SessionRecord& a, const SessionRecord& b);

// The version a write over `newest` (nullopt: no copy) takes; nullopt when
// `newest` is at the largest version (only a forged copy can be), so that no
// write wraps to version 0 and loses to every copy.
std::optional<std::uint64_t> next_version(const std::optional<SessionRecord>& newest);

}  // namespace stickylb::agent

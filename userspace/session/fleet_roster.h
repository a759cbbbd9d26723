// SPDX-License-Identifier: Apache-2.0
#pragma once
// The LB hosts of one fleet and the config fingerprint each one runs, kept in
// memcached (one key per fleet, "stickylb:v1:fleet:<name>", changed by
// compare-and-swap) so that a host can tell whether it would pick the same
// backends as its peers before it announces a VIP. Each host rewrites its own
// entry every heartbeat; an entry older than the freshness window is a host
// gone, and whoever writes next drops it.
//
// The rule every host applies to the same roster: the fingerprint held by the most
// fresh hosts is the fleet's; a tie goes to the one held longest (lowest since_ms),
// then to the lower digest. A host whose fingerprint is not the fleet's does not
// announce. A config rolled out host by host therefore moves the fleet from the
// old config to the new once more hosts run the new one, and no two rings are
// announced at the same time (beyond one heartbeat).
//
// Each entry also carries what that host's own health checks say of the backends
// (control/fleet_health.h), so that hosts running one config apply one rule to the
// same observations and write the same rings. Only the exceptions are listed, the
// backends it sees down and those it has not checked yet: every other backend of its
// config is up to it, which keeps a healthy fleet's roster small. Only hosts with the
// same fingerprint, hence the same backends, read each other's lists. The entry
// names, last, the version of the host's flow exceptions, kept under keys of their own.
//
// Beside the entries, the roster holds the fleet's operator overrides (drains and
// weights, by observation_key) under a version that every change raises: a host's
// `stickylb backend drain` goes to every host with the next write, and every host
// applies the highest version it reads.
#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "control/config_fingerprint.h"

namespace stickylb::fleet {

inline constexpr std::size_t kMaxMembers = 64;
inline constexpr std::size_t kMaxHostIdBytes = 200;          // as session::name_problem allows
inline constexpr std::size_t kMaxObservations = 16384;       // backends one host lists
inline constexpr std::size_t kMaxObservationKeyBytes = 320;  // control/fleet_health.h's observation_key
// Below memcached's default item size (1 MiB) with the key and a signature.
inline constexpr std::size_t kMaxRosterBytes = 1000 * 1024;

std::string roster_key(std::string_view fleet);  // "stickylb:v1:fleet:<fleet>"

struct Member {
    std::string host;
    ConfigFingerprint fingerprint;
    std::int64_t since_ms = 0;      // wall clock: when this host took this fingerprint
    std::int64_t heartbeat_ms = 0;  // wall clock: its last write
    std::uint64_t sequence = 0;     // +1 per write of this host
    // What its own checks say, by observation_key: down, not checked yet; others up.
    std::set<std::string> backends_down = {}, backends_unchecked = {};
    // Its flow exceptions (session/flow_exception_chunks.h): the version it last
    // published and in how many chunks; 0 chunks: none.
    std::uint64_t flows_version = 0;
    std::uint32_t flows_chunks = 0;
    bool operator==(const Member&) const = default;
};

// An operator's override of one backend, as config weights and drains are overridden.
struct SharedOverride {
    bool drained = false;
    std::optional<std::uint32_t> weight;
    bool operator==(const SharedOverride&) const = default;
};
inline constexpr std::uint32_t kMaxOverrideWeight = 65535;  // as `stickylb backend set` takes

struct SharedOverrides {
    std::uint64_t version = 0;                       // 0: none written yet
    std::string by;                                  // the host that wrote this version
    std::map<std::string, SharedOverride> backends;  // by observation_key, at most kMaxObservations
    bool operator==(const SharedOverrides&) const = default;
};

struct Roster {
    std::vector<Member> members;  // by host, each host once
    SharedOverrides overrides = {};
    bool operator==(const Roster&) const = default;
};

class RosterError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Throws RosterError when the text would pass kMaxRosterBytes.
std::string encode(const Roster& roster);
// Strict and bounded (kMaxRosterBytes, kMaxMembers, kMaxObservations, field sizes);
// throws RosterError.
Roster decode(std::string_view text);

// Whether member wrote within the freshness window before now_ms.
bool fresh(const Member& member, std::int64_t now_ms, std::chrono::milliseconds freshness);
// `stored` with self's entry replaced and every other entry whose heartbeat is older
// than now - freshness dropped.
Roster with_member(Roster stored, const Member& self, std::int64_t now_ms, std::chrono::milliseconds freshness);
// What several memcached servers hold, as one: per host, the entry with the newest
// heartbeat (then the higher sequence); the overrides of the highest version.
Roster combine(const std::vector<Roster>& rosters);

struct Verdict {
    bool agrees = true;
    std::string fleet_digest;            // the fingerprint the fleet follows
    std::vector<std::string> agreeing;   // fresh hosts holding it (self included when it does)
    std::vector<std::string> differing;  // fresh hosts holding another
    std::vector<std::string> parts;      // where self differs from the fleet's (differing_parts)
    std::string reason;                  // why self does not announce; empty when it agrees
};
// The rule above, over self and the fresh entries of roster (self's own entry in it
// is ignored: self as given counts).
Verdict judge(const Roster& roster, const Member& self, std::int64_t now_ms, std::chrono::milliseconds freshness);

}  // namespace stickylb::fleet

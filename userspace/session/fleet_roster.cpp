// SPDX-License-Identifier: Apache-2.0
#include "session/fleet_roster.h"

#include <algorithm>
#include <limits>
#include <map>
#include <tuple>

#include <nlohmann/json.hpp>

#include "base/bounded_json.h"
#include "base/input_checks.h"
#include "session/flow_exception_chunks.h"

namespace stickylb::fleet {
namespace {

constexpr int kVersion = 1;
constexpr std::size_t kMaxParts = 16;
constexpr std::size_t kMaxPartNameBytes = 32;
constexpr std::size_t kMaxPartBytes = 128;

bool lowercase_hex(std::string_view text, std::size_t length) {
    return text.size() == length && std::all_of(text.begin(), text.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

[[noreturn]] void refuse(const std::string& what) { throw RosterError("fleet roster: " + what); }

std::string text_field(const nlohmann::json& object, const char* name, std::size_t max_bytes) {
    const auto field = object.find(name);
    if (field == object.end() || !field->is_string())
        refuse(std::string("\"") + name + "\" missing or not a string");
    const auto& text = field->get_ref<const std::string&>();
    if (!printable_word(text, max_bytes))
        refuse(std::string("\"") + name + "\" empty, too long or not printable");
    return text;
}

template <typename T>
T number_field(const nlohmann::json& object, const char* name) {
    const auto field = object.find(name);
    if (field == object.end() || !field->is_number_unsigned() ||
        field->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
        refuse(std::string("\"") + name + "\" missing, not a non-negative integer or too large");
    return field->get<T>();
}

// Absent in rosters written before hosts shared their checks: none listed.
std::set<std::string> observations(const nlohmann::json& entry, const char* name, const std::string& host) {
    std::set<std::string> keys;
    const auto list = entry.find(name);
    if (list == entry.end())
        return keys;
    if (!list->is_array() || list->size() > kMaxObservations)
        refuse("member " + host + ": \"" + name + "\" not an array or more than " + std::to_string(kMaxObservations));
    for (const auto& key : *list) {
        if (!key.is_string() || !printable_word(key.get_ref<const std::string&>(), kMaxObservationKeyBytes))
            refuse("member " + host + ": \"" + name + "\" holds what is not a backend's key");
        keys.insert(key.get<std::string>());
    }
    return keys;
}

Member member_from(const nlohmann::json& entry) {
    if (!entry.is_object())
        refuse("a member is not an object");
    Member member;
    member.host = text_field(entry, "host", kMaxHostIdBytes);
    member.fingerprint.digest = text_field(entry, "digest", 64);
    if (!lowercase_hex(member.fingerprint.digest, 64))
        refuse("member " + member.host + ": digest is not 64 lowercase hex digits");
    const auto parts = entry.find("parts");
    if (parts == entry.end() || !parts->is_object() || parts->size() > kMaxParts)
        refuse("member " + member.host + ": \"parts\" missing, not an object or too many");
    for (const auto& [name, value] : parts->items()) {
        if (!printable_word(name, kMaxPartNameBytes) || !value.is_string() ||
            value.get_ref<const std::string&>().size() > kMaxPartBytes)
            refuse("member " + member.host + ": a part that is not a short string");
        member.fingerprint.parts[name] = value.get<std::string>();
    }
    member.since_ms = number_field<std::int64_t>(entry, "since_ms");
    member.heartbeat_ms = number_field<std::int64_t>(entry, "heartbeat_ms");
    member.sequence = number_field<std::uint64_t>(entry, "sequence");
    member.backends_down = observations(entry, "backends_down", member.host);
    member.backends_unchecked = observations(entry, "backends_unchecked", member.host);
    // Absent in rosters written before hosts shared their exceptions: none.
    if (entry.contains("flows_version") || entry.contains("flows_chunks")) {
        member.flows_version = number_field<std::uint64_t>(entry, "flows_version");
        member.flows_chunks = number_field<std::uint32_t>(entry, "flows_chunks");
        if (member.flows_chunks > kMaxExceptionChunks)
            refuse("member " + member.host + ": more than " + std::to_string(kMaxExceptionChunks) +
                   " chunks of flow exceptions");
    }
    return member;
}

// Absent in rosters written before hosts shared their overrides: none.
SharedOverrides overrides_from(const nlohmann::json& document) {
    SharedOverrides overrides;
    const auto found = document.find("overrides");
    if (found == document.end())
        return overrides;
    if (!found->is_object())
        refuse("\"overrides\" is not an object");
    overrides.version = number_field<std::uint64_t>(*found, "version");
    overrides.by = text_field(*found, "by", kMaxHostIdBytes);
    const auto backends = found->find("backends");
    if (backends == found->end() || !backends->is_object() || backends->size() > kMaxObservations)
        refuse("overrides: \"backends\" missing, not an object or more than " + std::to_string(kMaxObservations));
    for (const auto& [key, entry] : backends->items()) {
        if (!printable_word(key, kMaxObservationKeyBytes) || !entry.is_object())
            refuse("overrides: an entry that is not a backend's key and an object");
        SharedOverride override_of;
        const auto drained = entry.find("drained");
        if (drained == entry.end() || !drained->is_boolean())
            refuse("overrides of " + key + ": \"drained\" missing or not true/false");
        override_of.drained = drained->get<bool>();
        if (const auto weight = entry.find("weight"); weight != entry.end() && !weight->is_null()) {
            const auto value = number_field<std::uint32_t>(entry, "weight");
            if (value > kMaxOverrideWeight)
                refuse("overrides of " + key + ": weight above " + std::to_string(kMaxOverrideWeight));
            override_of.weight = value;
        }
        overrides.backends[key] = override_of;
    }
    return overrides;
}

}  // namespace

bool fresh(const Member& member, std::int64_t now_ms, std::chrono::milliseconds freshness) {
    return member.heartbeat_ms >= now_ms - freshness.count();
}

std::string roster_key(std::string_view fleet) { return "stickylb:v1:fleet:" + std::string(fleet); }

std::string encode(const Roster& roster) {
    nlohmann::json members = nlohmann::json::array();
    for (const Member& member : roster.members) {
        if (member.backends_down.size() > kMaxObservations || member.backends_unchecked.size() > kMaxObservations)
            refuse("member " + member.host + " lists more than " + std::to_string(kMaxObservations) +
                   " backends down or unchecked");
        members.push_back({{"host", member.host},
                           {"digest", member.fingerprint.digest},
                           {"parts", member.fingerprint.parts},
                           {"since_ms", member.since_ms},
                           {"heartbeat_ms", member.heartbeat_ms},
                           {"sequence", member.sequence},
                           {"backends_down", member.backends_down},
                           {"backends_unchecked", member.backends_unchecked},
                           {"flows_version", member.flows_version},
                           {"flows_chunks", member.flows_chunks}});
    }
    nlohmann::json document{{"version", kVersion}, {"members", members}};
    if (roster.overrides.version != 0) {
        if (roster.overrides.backends.size() > kMaxObservations)
            refuse("overrides of more than " + std::to_string(kMaxObservations) + " backends");
        nlohmann::json backends = nlohmann::json::object();
        for (const auto& [key, override_of] : roster.overrides.backends)
            backends[key] = {{"drained", override_of.drained},
                             {"weight", override_of.weight ? nlohmann::json(*override_of.weight) : nlohmann::json()}};
        document["overrides"] = {
            {"version", roster.overrides.version}, {"by", roster.overrides.by}, {"backends", backends}};
    }
    std::string text = document.dump();
    if (text.size() > kMaxRosterBytes)
        refuse(std::to_string(roster.members.size()) + " hosts take " + std::to_string(text.size()) +
               " bytes, more than " + std::to_string(kMaxRosterBytes));
    return text;
}

Roster decode(std::string_view text) {
    if (text.size() > kMaxRosterBytes)
        refuse(std::to_string(text.size()) + " bytes, more than " + std::to_string(kMaxRosterBytes));
    nlohmann::json document;
    try {
        document = parse_json_bounded(text, 4);
    } catch (const std::exception& e) {
        refuse(std::string("not JSON: ") + e.what());
    }
    if (!document.is_object() || document.value("version", 0) != kVersion)
        refuse("not a version " + std::to_string(kVersion) + " roster");
    const auto members = document.find("members");
    if (members == document.end() || !members->is_array())
        refuse("\"members\" missing or not an array");
    if (members->size() > kMaxMembers)
        refuse(std::to_string(members->size()) + " members, more than " + std::to_string(kMaxMembers));
    Roster roster;
    for (const auto& entry : *members) {
        Member member = member_from(entry);
        if (std::any_of(roster.members.begin(), roster.members.end(),
                        [&](const Member& m) { return m.host == member.host; }))
            refuse("host " + member.host + " twice");
        roster.members.push_back(std::move(member));
    }
    std::sort(roster.members.begin(), roster.members.end(),
              [](const Member& a, const Member& b) { return a.host < b.host; });
    roster.overrides = overrides_from(document);
    return roster;
}

Roster with_member(Roster stored, const Member& self, std::int64_t now_ms, std::chrono::milliseconds freshness) {
    std::erase_if(stored.members, [&](const Member& m) { return m.host == self.host || !fresh(m, now_ms, freshness); });
    // Past the bound, the entries heard from longest ago make room.
    std::sort(stored.members.begin(), stored.members.end(),
              [](const Member& a, const Member& b) { return a.heartbeat_ms > b.heartbeat_ms; });
    if (stored.members.size() >= kMaxMembers)
        stored.members.resize(kMaxMembers - 1);
    stored.members.push_back(self);
    std::sort(stored.members.begin(), stored.members.end(),
              [](const Member& a, const Member& b) { return a.host < b.host; });
    return stored;
}

Roster combine(const std::vector<Roster>& rosters) {
    std::map<std::string, Member> newest;
    for (const Roster& roster : rosters)
        for (const Member& member : roster.members) {
            auto [at, inserted] = newest.try_emplace(member.host, member);
            if (!inserted && std::tuple(member.heartbeat_ms, member.sequence) >
                                 std::tuple(at->second.heartbeat_ms, at->second.sequence))
                at->second = member;
        }
    Roster combined;
    for (auto& [host, member] : newest)
        combined.members.push_back(std::move(member));
    for (const Roster& roster : rosters)
        if (roster.overrides.version > combined.overrides.version)
            combined.overrides = roster.overrides;
    return combined;
}

Verdict judge(const Roster& roster, const Member& self, std::int64_t now_ms, std::chrono::milliseconds freshness) {
    struct Holders {
        std::vector<std::string> hosts;
        std::int64_t earliest_since_ms = 0;
        const ConfigFingerprint* fingerprint = nullptr;
    };
    std::map<std::string, Holders> by_digest;
    const auto count = [&](const Member& member) {
        auto [at, inserted] = by_digest.try_emplace(member.fingerprint.digest);
        Holders& holders = at->second;
        if (inserted || member.since_ms < holders.earliest_since_ms)
            holders.earliest_since_ms = member.since_ms;
        if (holders.fingerprint == nullptr)
            holders.fingerprint = &member.fingerprint;
        holders.hosts.push_back(member.host);
    };
    count(self);
    for (const Member& member : roster.members)
        if (member.host != self.host && fresh(member, now_ms, freshness))
            count(member);

    const auto fleets = [](const auto& a, const auto& b) {  // true when a is the fleet's rather than b
        return std::tuple(a.second.hosts.size(), -a.second.earliest_since_ms, b.first) >
               std::tuple(b.second.hosts.size(), -b.second.earliest_since_ms, a.first);
    };
    const auto chosen = std::max_element(by_digest.begin(), by_digest.end(),
                                         [&](const auto& a, const auto& b) { return fleets(b, a); });
    Verdict verdict;
    verdict.fleet_digest = chosen->first;
    verdict.agrees = chosen->first == self.fingerprint.digest;
    for (const auto& [digest, holders] : by_digest)
        for (const std::string& host : holders.hosts)
            (digest == chosen->first ? verdict.agreeing : verdict.differing).push_back(host);
    std::sort(verdict.agreeing.begin(), verdict.agreeing.end());
    std::sort(verdict.differing.begin(), verdict.differing.end());
    if (!verdict.agrees) {
        verdict.parts = differing_parts(self.fingerprint, *chosen->second.fingerprint);
        std::string parts;
        for (const std::string& part : verdict.parts)
            parts += (parts.empty() ? "" : ", ") + part;
        std::string hosts;
        for (const std::string& host : chosen->second.hosts)
            hosts += (hosts.empty() ? "" : ", ") + host;
        verdict.reason = "this host's " + (parts.empty() ? std::string("config") : parts) + " differ" +
                         (verdict.parts.size() == 1 ? "s" : "") + " from the fleet's (" + hosts + ")";
    }
    return verdict;
}

}  // namespace stickylb::fleet

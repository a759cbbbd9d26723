// SPDX-License-Identifier: Apache-2.0
#include "control/config.h"

#include <grp.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <cerrno>
#include <cstring>
#include <tuple>
#include <utility>

#include "base/duration.h"
#include "base/host_port.h"
#include "base/protocol.h"
#include "dataplane/maglev.h"
#include "base/input_checks.h"
#include "session/membership_view.h"

namespace stickylb {

ConfigError::ConfigError(std::vector<std::string> problems)
    : std::runtime_error([&] {
          std::string text;
          for (const auto& problem : problems)
              text += (text.empty() ? "" : "\n") + problem;
          return text.empty() ? std::string("invalid configuration") : text;
      }()),
      problems_(std::move(problems)) {}

std::string to_string(HealthCheckConfig::Kind kind) { return kind == HealthCheckConfig::Kind::http ? "http" : "tcp"; }

namespace {

// Table sizes: below 1024 entries the LRU maps evict live flows under any real load;
// 2^28 entries is tens of GiB, past what a host hands to BPF maps.
constexpr long long kMinTableSize = 1024;
constexpr long long kMaxTableSize = 1LL << 28;
constexpr std::uint64_t kMaxRingSlots = 1ULL << 28;  // 4-byte slots: 1 GiB of rings

std::string quoted(std::string_view text) { return "'" + std::string(text) + "'"; }

// A missing group is a config problem --check-config reports, not a start failure.
bool group_exists(const std::string& name) {
    std::vector<char> buffer(64 * 1024);
    group entry{};
    group* found = nullptr;
    return ::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) == 0 && found != nullptr;
}

// Damerau-free Levenshtein distance, for "did you mean".
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j)
        row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

std::string describe(const YAML::Node& node) {
    switch (node.Type()) {
    case YAML::NodeType::Null: return "nothing";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return quoted(node.Scalar());
    default: return "nothing";
    }
}

// A value in the document: the node, the line problems about it are reported at
// (0-based; the key's line for a mapping value) and its path ("vips[1].port").
struct Entry {
    YAML::Node value;
    int line = 0;
    std::string path;
};

int line_of(const YAML::Node& node, int fallback) {
    const YAML::Mark mark = node.Mark();
    return mark.is_null() || mark.line < 0 ? fallback : mark.line;
}

// The line of FIELD inside a mapping entry (where a duplicate is named), else the entry's.
int field_line(const Entry& entry, const char* field) {
    if (entry.value.IsMap() && entry.value[field])
        return line_of(entry.value[field], entry.line);
    return entry.line;
}

class Parser;

// The entries of a mapping; unknown and duplicate keys are reported on construction.
class Mapping {
public:
    Mapping(Parser& parser, const Entry& entry, std::initializer_list<std::string_view> allowed);
    bool ok() const { return ok_; }
    const Entry* get(std::string_view key) const {
        const auto found = entries_.find(key);
        return found == entries_.end() ? nullptr : &found->second;
    }

private:
    bool ok_ = false;
    std::map<std::string, Entry, std::less<>> entries_;
};

class Parser {
public:
    explicit Parser(std::string source) : source_(std::move(source)) {}

    void report(int line, const std::string& path, const std::string& message) {
        problems_.emplace_back(line + 1, source_ + ":" + std::to_string(line + 1) + ": " + path + ": " + message);
    }
    void report(const Entry& entry, const std::string& message) { report(entry.line, entry.path, message); }

    std::vector<std::string> problems() {
        std::stable_sort(problems_.begin(), problems_.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        std::vector<std::string> result;
        for (auto& problem : problems_)
            result.push_back(std::move(problem.second));
        return result;
    }

    DaemonConfig daemon(const YAML::Node& root);

    // Typed readers: each reports what is wrong and returns nullopt, so the caller
    // keeps its default and parsing goes on to find the next problem.
    // Every string of the file: names end up in logs, JSON and metric labels,
    // paths in system calls; none may hold invalid UTF-8 or a control character.
    std::optional<std::string> string(const Entry& entry) {
        if (!entry.value.IsScalar()) {
            report(entry, "expected a string, got " + describe(entry.value));
            return std::nullopt;
        }
        if (auto problem = text_problem(entry.value.Scalar())) {
            report(entry, "contains " + *problem);
            return std::nullopt;
        }
        return entry.value.Scalar();
    }

    std::optional<std::string> non_empty_string(const Entry& entry) {
        auto text = string(entry);
        if (text && text->empty()) {
            report(entry, "must not be empty");
            return std::nullopt;
        }
        return text;
    }

    std::optional<std::string> absolute_path(const Entry& entry) {
        auto text = non_empty_string(entry);
        if (text && text->front() != '/') {
            report(entry, quoted(*text) + " is not an absolute path");
            return std::nullopt;
        }
        return text;
    }

    std::optional<long long> integer(const Entry& entry, long long min, long long max) {
        // A quoted scalar ("80") is a string, not a number.
        if (!entry.value.IsScalar() || entry.value.Tag() == "!") {
            report(entry, "expected an integer, got " + (entry.value.IsScalar() ? "the string " : std::string()) +
                              describe(entry.value));
            return std::nullopt;
        }
        const std::string& text = entry.value.Scalar();
        std::string_view digits = text;
        bool negative = false;
        if (!digits.empty() && (digits.front() == '-' || digits.front() == '+')) {
            negative = digits.front() == '-';
            digits.remove_prefix(1);
        }
        int base = 10;
        if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
            base = 16;
            digits.remove_prefix(2);
        }
        unsigned long long magnitude = 0;
        const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
        if (digits.empty() || error == std::errc::invalid_argument || end != digits.data() + digits.size()) {
            report(entry, "expected an integer, got " + quoted(text));
            return std::nullopt;
        }
        const auto limit = static_cast<unsigned long long>(std::numeric_limits<long long>::max());
        if (error == std::errc::result_out_of_range || magnitude > limit) {
            report(entry,
                   quoted(text) + " is out of range (" + std::to_string(min) + " to " + std::to_string(max) + ")");
            return std::nullopt;
        }
        const long long value = negative ? -static_cast<long long>(magnitude) : static_cast<long long>(magnitude);
        if (value < min || value > max) {
            if (min == 0 && value < 0)
                report(entry, "must not be negative, got " + text);
            else
                report(entry,
                       "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + text);
            return std::nullopt;
        }
        return value;
    }

    std::optional<bool> boolean(const Entry& entry) {
        if (entry.value.IsScalar() && entry.value.Tag() != "!") {
            const std::string& text = entry.value.Scalar();
            if (text == "true" || text == "True" || text == "TRUE")
                return true;
            if (text == "false" || text == "False" || text == "FALSE")
                return false;
        }
        report(entry, "expected true or false, got " + describe(entry.value));
        return std::nullopt;
    }

    std::optional<std::chrono::milliseconds> duration(const Entry& entry) {
        if (!entry.value.IsScalar()) {
            report(entry, "expected a duration (" + std::string(kDurationHint) + "), got " + describe(entry.value));
            return std::nullopt;
        }
        try {
            return parse_duration(entry.value.Scalar());
        } catch (const std::invalid_argument& error) {
            report(entry, error.what());
            return std::nullopt;
        }
    }

    std::optional<IpAddress> ip(const Entry& entry) {
        auto text = string(entry);
        if (!text)
            return std::nullopt;
        try {
            return IpAddress::parse(*text);
        } catch (const std::invalid_argument& error) {
            report(entry, error.what());
            return std::nullopt;
        }
    }

    std::optional<std::string> host_port(const Entry& entry) {
        auto text = string(entry);
        if (!text)
            return std::nullopt;
        try {
            parse_host_port(*text);
            return text;
        } catch (const std::invalid_argument& error) {
            report(entry, error.what());
            return std::nullopt;
        }
    }

    // choices: {word, value} pairs, a braced list or a table such as kForwardingModes.
    template <typename T, typename Choices = std::initializer_list<std::pair<std::string_view, T>>>
    std::optional<T> choice(const Entry& entry, const Choices& choices) {
        std::string names;
        for (const auto& [name, value] : choices) {
            if (entry.value.IsScalar() && entry.value.Scalar() == name)
                return value;
            names += (names.empty() ? "" : ", ") + quoted(name);
        }
        report(entry, "expected one of " + names + ", got " + describe(entry.value));
        return std::nullopt;
    }

    // A list's items; nothing (a key with no value) is the empty list.
    std::vector<Entry> sequence(const Entry& entry) {
        std::vector<Entry> items;
        if (entry.value.IsNull())
            return items;
        if (!entry.value.IsSequence()) {
            report(entry, "expected a list, got " + describe(entry.value));
            return items;
        }
        std::size_t index = 0;
        for (const auto& item : entry.value)
            items.push_back({item, line_of(item, entry.line), entry.path + "[" + std::to_string(index++) + "]"});
        return items;
    }

    // Assigns the value read from `key` of `mapping`, if present and valid.
    template <typename Target, typename Read>
    void set(const Mapping& mapping, std::string_view key, Target& target, Read read) {
        if (const Entry* entry = mapping.get(key)) {
            if (auto value = read(*entry))
                target = static_cast<Target>(*value);
        }
    }

private:
    // names_in_keys: memcached is configured, so cluster and backend names become memcached keys.
    VipConfig vip(const Entry& entry, std::uint32_t ring_size, bool names_in_keys);
    SessionConfig session(const Entry& entry);
    AnnounceConfig announce(const Entry& entry);
    BackendConfig backend(const Entry& entry);
    PersistenceConfig persistence(const Entry& entry);
    HealthCheckConfig health(const Entry& entry, std::uint8_t protocol);

    std::string source_;
    std::vector<std::pair<int, std::string>> problems_;  // (1-based line, text)
};

Mapping::Mapping(Parser& parser, const Entry& entry, std::initializer_list<std::string_view> allowed) {
    if (!entry.value.IsMap()) {
        parser.report(entry, "expected a mapping, got " + describe(entry.value));
        return;
    }
    ok_ = true;
    const std::string prefix = entry.path.empty() || entry.path == "(document)" ? "" : entry.path + ".";
    for (const auto& pair : entry.value) {
        const int key_line = line_of(pair.first, entry.line);
        if (!pair.first.IsScalar()) {
            parser.report(key_line, entry.path, "keys must be plain strings, got " + describe(pair.first));
            continue;
        }
        const std::string& key = pair.first.Scalar();
        const std::string path = prefix + key;
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
            std::string message = "unknown key " + quoted(key);
            std::string_view best;
            std::size_t best_distance = 3;  // suggest only close misspellings
            for (const auto candidate : allowed) {
                const std::size_t distance = edit_distance(key, candidate);
                if (distance < best_distance) {
                    best_distance = distance;
                    best = candidate;
                }
            }
            if (!best.empty())
                message += " (did you mean " + quoted(best) + "?)";
            parser.report(key_line, path, message);
            continue;
        }
        const auto [existing, inserted] = entries_.try_emplace(key, Entry{pair.second, key_line, path});
        if (!inserted)
            parser.report(key_line, path,
                          "duplicate key (first at line " + std::to_string(existing->second.line + 1) + ")");
    }
}

DaemonConfig Parser::daemon(const YAML::Node& root) {
    DaemonConfig config;
    const Entry document{root, line_of(root, 0), "(document)"};
    if (root.IsNull()) {
        report(document, "the configuration is empty");
        return config;
    }
    const Mapping top(
        *this, document,
        {"interface", "attach_mode", "pin_dir", "state_file", "control_socket", "control_group", "metrics_listen",
         "hash_seed", "ring_size", "max_vips", "max_backends", "flow_table_size", "affinity_table_size",
         "new_flow_limit_per_cpu", "memcached_servers", "session", "announce", "vips"});
    if (!top.ok())
        return config;

    if (const Entry* entry = top.get("interface")) {
        if (auto name = non_empty_string(*entry)) {
            if (name->size() >= 16)  // IFNAMSIZ, with its terminating NUL
                report(*entry, quoted(*name) + " is longer than an interface name can be (15 characters)");
            else if (name->find_first_of("/ \t:") != std::string::npos)
                report(*entry, quoted(*name) + " is not an interface name");
            else
                config.interface = *name;
        }
    } else {
        report(document.line, "interface", "is required (the NIC the XDP program attaches to)");
    }
    set(top, "attach_mode", config.attach_mode, [&](const Entry& e) {
        return choice<AttachMode>(
            e, {{"auto", AttachMode::automatic}, {"native", AttachMode::native}, {"generic", AttachMode::generic}});
    });
    set(top, "pin_dir", config.pin_dir, [&](const Entry& e) { return absolute_path(e); });
    set(top, "state_file", config.state_file, [&](const Entry& e) { return absolute_path(e); });
    set(top, "control_socket", config.control_socket, [&](const Entry& e) { return absolute_path(e); });
    set(top, "control_group", config.control_group, [&](const Entry& e) -> std::optional<std::string> {
        auto name = non_empty_string(e);
        if (name && !group_exists(*name)) {
            report(e, "no group " + quoted(*name) + " on this host (its members may use the control socket)");
            return std::nullopt;
        }
        return name;
    });
    set(top, "metrics_listen", config.metrics_listen, [&](const Entry& e) { return host_port(e); });
    set(top, "hash_seed", config.hash_seed,
        [&](const Entry& e) { return integer(e, 0, std::numeric_limits<std::uint32_t>::max()); });
    if (const Entry* entry = top.get("ring_size")) {
        if (auto size = integer(*entry, 1, std::numeric_limits<std::uint32_t>::max())) {
            if (!is_prime(static_cast<std::uint32_t>(*size)))
                report(*entry, "must be a prime number (Maglev), got " + std::to_string(*size) +
                                   " (e.g. 65537, 131071, 262139)");
            else
                config.ring_size = static_cast<std::uint32_t>(*size);
        }
    }
    // The vips hash map holds each VIP and its address entry: 2 x max_vips <= STICKYLB_MAX_VIP_ENTRIES.
    set(top, "max_vips", config.max_vips, [&](const Entry& e) { return integer(e, 1, STICKYLB_MAX_VIP_ENTRIES / 2); });
    set(top, "max_backends", config.max_backends, [&](const Entry& e) { return integer(e, 2, kMaxTableSize); });
    set(top, "flow_table_size", config.flow_table_size,
        [&](const Entry& e) { return integer(e, kMinTableSize, kMaxTableSize); });
    set(top, "affinity_table_size", config.affinity_table_size,
        [&](const Entry& e) { return integer(e, kMinTableSize, kMaxTableSize); });
    if (std::uint64_t{config.max_vips} * config.ring_size > kMaxRingSlots) {
        const Entry* entry = top.get("max_vips") ? top.get("max_vips") : top.get("ring_size");
        report(*entry, "max_vips x ring_size = " + std::to_string(std::uint64_t{config.max_vips} * config.ring_size) +
                           " ring slots, more than the " + std::to_string(kMaxRingSlots) +
                           " (1 GiB) the rings map may hold");
    }
    set(top, "new_flow_limit_per_cpu", config.new_flow_limit_per_cpu,
        [&](const Entry& e) { return integer(e, 0, std::numeric_limits<std::uint32_t>::max()); });
    if (const Entry* entry = top.get("memcached_servers")) {
        std::map<std::string, std::string> seen;  // -> path
        for (const Entry& item : sequence(*entry)) {
            if (auto server = host_port(item)) {
                const auto [existing, inserted] = seen.try_emplace(*server, item.path);
                if (!inserted)
                    report(item, "duplicate server " + quoted(*server) + " (already " + existing->second + ")");
                else
                    config.memcached_servers.push_back(*server);
            }
        }
    }
    if (const Entry* entry = top.get("session"))
        config.session = session(*entry);
    if (const Entry* entry = top.get("announce"))
        config.announce = announce(*entry);

    const Entry* vips_entry = top.get("vips");
    if (!vips_entry) {
        report(document.line, "vips", "is required (at least one VIP)");
        return config;
    }
    const auto items = sequence(*vips_entry);
    if (items.empty() && (vips_entry->value.IsNull() || vips_entry->value.IsSequence()))
        report(*vips_entry, "at least one VIP is required");

    std::map<std::tuple<IpAddress, std::uint16_t, std::uint8_t>, std::string> seen_keys;  // -> path
    std::map<std::string, std::string> seen_names;                                        // -> path
    for (const Entry& item : items) {
        VipConfig vip_config = vip(item, config.ring_size, !config.memcached_servers.empty());
        if (vip_config.address.family() != STICKYLB_FAMILY_NONE && vip_config.port != 0) {
            const auto key = std::make_tuple(vip_config.address, vip_config.port, vip_config.protocol);
            const auto [existing, inserted] = seen_keys.try_emplace(key, item.path);
            if (!inserted)
                report(item, "duplicate VIP " + protocol_name(vip_config.protocol) + " " +
                                 (vip_config.address.is_v4() ? vip_config.address.to_string()
                                                             : "[" + vip_config.address.to_string() + "]") +
                                 ":" + std::to_string(vip_config.port) + " (already " + existing->second + ")");
        }
        if (!vip_config.name.empty()) {
            const auto [existing, inserted] = seen_names.try_emplace(vip_config.name, item.path);
            if (!inserted) {
                report(field_line(item, "name"), item.path + ".name",
                       "duplicate VIP name " + quoted(vip_config.name) + " (already " + existing->second + ")");
            }
        }
        config.vips.push_back(std::move(vip_config));
    }
    for (const std::string& problem : capacity_problems(config))
        report(*vips_entry, problem);
    return config;
}

VipConfig Parser::vip(const Entry& entry, std::uint32_t ring_size, bool names_in_keys) {
    VipConfig config;
    const Mapping map(*this, entry,
                      {"name", "cluster", "address", "port", "protocol", "forwarding", "hash_source", "persistence",
                       "health", "backends"});
    if (!map.ok())
        return config;

    bool address_ok = false, port_ok = false;
    if (const Entry* e = map.get("address")) {
        if (auto address = ip(*e)) {
            config.address = *address;
            address_ok = true;
        }
    } else {
        report(entry.line, entry.path + ".address", "is required");
    }
    if (const Entry* e = map.get("port")) {
        if (auto port = integer(*e, 1, 65535)) {
            config.port = static_cast<std::uint16_t>(*port);
            port_ok = true;
        }
    } else {
        report(entry.line, entry.path + ".port", "is required");
    }
    set(map, "protocol", config.protocol, [&](const Entry& e) {
        return choice<std::uint8_t>(e, {{"tcp", std::uint8_t{IPPROTO_TCP}}, {"udp", std::uint8_t{IPPROTO_UDP}}});
    });
    set(map, "forwarding", config.forwarding,
        [&](const Entry& e) { return choice<ForwardingMode>(e, kForwardingModes); });
    set(map, "hash_source", config.hash_source, [&](const Entry& e) { return boolean(e); });
    if (const Entry* e = map.get("persistence"))
        config.persistence = persistence(*e);
    {
        const Entry* e = map.get("health");
        const Entry absent{YAML::Node(YAML::NodeType::Map), entry.line, entry.path + ".health"};
        config.health = health(e ? *e : absent, config.protocol);
    }
    if (const Entry* e = map.get("name")) {
        if (auto name = non_empty_string(*e)) {
            if (name->find_first_of(" \t\r\n") != std::string::npos)
                report(*e, quoted(*name) + " contains whitespace");
            else
                config.name = *name;
        }
    } else if (address_ok && port_ok) {
        config.name =
            protocol_name(config.protocol) + "-" + config.address.to_string() + "-" + std::to_string(config.port);
    }
    // The cluster names a memcached key: checked whenever it is written out, and
    // the VIP name it defaults to whenever memcached is configured.
    if (const Entry* e = map.get("cluster")) {
        if (auto cluster = non_empty_string(*e)) {
            if (auto problem = session::name_problem(*cluster))
                report(*e, quoted(*cluster) + " cannot be a cluster name: " + *problem);
            else
                config.cluster = *cluster;
        }
    } else if (!config.name.empty()) {
        config.cluster = config.name;
        if (auto problem = session::name_problem(config.name); problem && names_in_keys) {
            const Entry* name_entry = map.get("name");
            report(name_entry ? name_entry->line : entry.line, entry.path + ".cluster",
                   "the VIP name " + quoted(config.name) + " cannot be a cluster name (" + *problem + "): set cluster");
        }
    }

    const Entry* backends = map.get("backends");
    if (!backends) {
        report(entry.line, entry.path + ".backends", "is required (at least one backend)");
        return config;
    }
    const auto items = sequence(*backends);
    if (items.empty() && (backends->value.IsNull() || backends->value.IsSequence()))
        report(*backends, "at least one backend is required");
    std::map<std::string, std::string> names;    // -> path
    std::map<IpAddress, std::string> addresses;  // -> path
    std::size_t weighted = 0;
    for (const Entry& item : items) {
        BackendConfig backend_config = backend(item);
        if (names_in_keys && !backend_config.name.empty()) {
            if (auto problem = session::name_problem(backend_config.name)) {
                report(field_line(item, "name"), item.path + ".name",
                       quoted(backend_config.name) + " cannot name a backend in the membership view: " + *problem);
            }
        }
        if (!backend_config.name.empty()) {
            const auto [existing, inserted] = names.try_emplace(backend_config.name, item.path);
            if (!inserted) {
                report(field_line(item, "name"), item.path + ".name",
                       "duplicate backend name " + quoted(backend_config.name) + " (already " + existing->second + ")");
            }
        }
        if (backend_config.address.family() != STICKYLB_FAMILY_NONE) {
            const auto [existing, inserted] = addresses.try_emplace(backend_config.address, item.path);
            if (!inserted) {
                report(field_line(item, "address"), item.path + ".address",
                       "duplicate backend address " + backend_config.address.to_string() + " (already " +
                           existing->second + ")");
            }
        }
        if (backend_config.weight > 0)
            ++weighted;
        config.backends.push_back(std::move(backend_config));
    }
    if (weighted > ring_size)
        report(*backends, std::to_string(weighted) + " weighted backends do not fit a ring of " +
                              std::to_string(ring_size) + " slots (ring_size)");
    return config;
}

BackendConfig Parser::backend(const Entry& entry) {
    BackendConfig config;
    const Mapping map(*this, entry, {"name", "address", "weight", "next_hop"});
    if (!map.ok())
        return config;
    if (const Entry* e = map.get("address")) {
        if (auto address = ip(*e))
            config.address = *address;
    } else {
        report(entry.line, entry.path + ".address", "is required");
    }
    set(map, "weight", config.weight,
        [&](const Entry& e) { return integer(e, 0, std::numeric_limits<std::uint32_t>::max()); });
    if (const Entry* e = map.get("next_hop")) {
        if (auto address = ip(*e))
            config.next_hop = *address;
    }
    if (const Entry* e = map.get("name")) {
        if (auto name = non_empty_string(*e)) {
            if (name->find_first_of(" \t\r\n") != std::string::npos)
                report(*e, quoted(*name) + " contains whitespace");
            else
                config.name = *name;
        }
    } else if (config.address.family() != STICKYLB_FAMILY_NONE) {
        config.name = config.address.to_string();
    }
    return config;
}

SessionConfig Parser::session(const Entry& entry) {
    SessionConfig config;
    const Mapping map(*this, entry,
                      {"view_refresh_interval", "view_ttl", "affinity_save_interval", "memcached_connect_timeout",
                       "memcached_timeout", "key_file"});
    if (!map.ok())
        return config;
    const auto ms = [](std::chrono::milliseconds value) { return std::to_string(value.count()) + "ms"; };
    // A duration within [min, max]; nullopt (reported) otherwise.
    const auto bounded = [&](const Entry& e, std::chrono::milliseconds min,
                             std::chrono::milliseconds max) -> std::optional<std::chrono::milliseconds> {
        auto value = duration(e);
        if (value && (*value < min || *value > max)) {
            report(e, "must be between " + ms(min) + " and " + ms(max) + ", got " + ms(*value));
            return std::nullopt;
        }
        return value;
    };
    bool refresh_ok = true, ttl_ok = true;
    if (const Entry* e = map.get("view_refresh_interval")) {
        auto value = bounded(*e, std::chrono::milliseconds(100), std::chrono::hours(1));
        refresh_ok = value.has_value();
        if (value)
            config.view_refresh_interval = *value;
    }
    if (const Entry* e = map.get("view_ttl")) {
        auto value = bounded(*e, std::chrono::seconds(1), std::chrono::hours(24));
        if (value && value->count() % 1000 != 0) {
            report(*e, "must be a whole number of seconds (memcached expiry), got " + ms(*value));
            value.reset();
        }
        ttl_ok = value.has_value();
        if (value)
            config.view_ttl = *value;
    }
    if (refresh_ok && ttl_ok && config.view_ttl < 2 * config.view_refresh_interval) {
        const Entry* e = map.get("view_ttl") ? map.get("view_ttl") : map.get("view_refresh_interval");
        report(e ? e->line : entry.line, entry.path + ".view_ttl",
               ms(config.view_ttl) + " is shorter than two view refreshes (2 x " + ms(config.view_refresh_interval) +
                   "): a view would expire between its writes");
    }
    if (const Entry* e = map.get("affinity_save_interval")) {
        auto value = duration(*e);
        if (value && value->count() != 0 && *value < std::chrono::seconds(1)) {
            report(*e, "must be 0 (never save) or at least 1000ms, got " + ms(*value));
            value.reset();
        }
        if (value)
            config.affinity_save_interval = *value;
    }
    set(map, "memcached_connect_timeout", config.memcached_connect_timeout,
        [&](const Entry& e) { return bounded(e, std::chrono::milliseconds(1), std::chrono::seconds(10)); });
    set(map, "memcached_timeout", config.memcached_timeout,
        [&](const Entry& e) { return bounded(e, std::chrono::milliseconds(1), std::chrono::seconds(10)); });
    set(map, "key_file", config.key_file, [&](const Entry& e) { return absolute_path(e); });
    return config;
}

AnnounceConfig Parser::announce(const Entry& entry) {
    AnnounceConfig config;
    config.enabled = true;
    const Mapping map(*this, entry,
                      {"routing_table", "check_interval", "hold", "lock_file", "fleet", "host_id", "peer_heartbeat",
                       "peer_poll", "share_exceptions"});
    if (!map.ok())
        return config;
    if (const Entry* e = map.get("routing_table")) {
        if (auto table = integer(*e, 1, std::numeric_limits<std::uint32_t>::max())) {
            if (*table == 253 || *table == 254 || *table == 255)
                report(*e, "table " + std::to_string(*table) +
                               " is one of the kernel's own (default, main, local): use a table of its own");
            else
                config.routing_table = static_cast<std::uint32_t>(*table);
        }
    }
    const auto within = [&](const Entry& e, std::chrono::milliseconds min,
                            std::chrono::milliseconds max) -> std::optional<std::chrono::milliseconds> {
        auto value = duration(e);
        if (value && (*value < min || *value > max)) {
            report(e, "must be between " + std::to_string(min.count()) + "ms and " + std::to_string(max.count()) +
                          "ms, got " + std::to_string(value->count()) + "ms");
            return std::nullopt;
        }
        return value;
    };
    set(map, "check_interval", config.check_interval,
        [&](const Entry& e) { return within(e, std::chrono::milliseconds(10), std::chrono::seconds(10)); });
    set(map, "hold", config.hold,
        [&](const Entry& e) { return within(e, std::chrono::milliseconds(0), std::chrono::minutes(10)); });
    set(map, "lock_file", config.lock_file, [&](const Entry& e) { return absolute_path(e); });
    // Both name a memcached key (the fleet's roster) or a part of its value.
    const auto key_name = [&](const Entry& e, const char* what) -> std::optional<std::string> {
        auto name = non_empty_string(e);
        if (name)
            if (auto problem = session::name_problem(*name)) {
                report(e, quoted(*name) + " cannot be " + what + ": " + *problem);
                return std::nullopt;
            }
        return name;
    };
    set(map, "fleet", config.fleet, [&](const Entry& e) { return key_name(e, "a fleet name"); });
    set(map, "host_id", config.host_id, [&](const Entry& e) { return key_name(e, "a host id"); });
    set(map, "peer_heartbeat", config.peer_heartbeat,
        [&](const Entry& e) { return within(e, std::chrono::milliseconds(100), std::chrono::seconds(10)); });
    set(map, "peer_poll", config.peer_poll,
        [&](const Entry& e) { return within(e, std::chrono::milliseconds(10), std::chrono::seconds(10)); });
    set(map, "share_exceptions", config.share_exceptions, [&](const Entry& e) { return boolean(e); });
    return config;
}

PersistenceConfig Parser::persistence(const Entry& entry) {
    PersistenceConfig config;
    const Mapping map(*this, entry, {"enabled", "timeout_s", "client_prefix_v4", "client_prefix_v6"});
    if (!map.ok())
        return config;
    set(map, "enabled", config.enabled, [&](const Entry& e) { return boolean(e); });
    set(map, "timeout_s", config.timeout_s,
        [&](const Entry& e) { return integer(e, 1, std::numeric_limits<std::uint32_t>::max()); });
    set(map, "client_prefix_v4", config.client_prefix_v4, [&](const Entry& e) { return integer(e, 0, 32); });
    set(map, "client_prefix_v6", config.client_prefix_v6, [&](const Entry& e) { return integer(e, 0, 128); });
    return config;
}

HealthCheckConfig Parser::health(const Entry& entry, std::uint8_t protocol) {
    HealthCheckConfig config;
    const Mapping map(
        *this, entry,
        {"kind", "interval", "timeout", "rise", "fall", "port", "http_path", "expected_status", "http_host"});
    if (!map.ok())
        return config;
    set(map, "kind", config.kind, [&](const Entry& e) {
        return choice<HealthCheckConfig::Kind>(
            e, {{"tcp", HealthCheckConfig::Kind::tcp}, {"http", HealthCheckConfig::Kind::http}});
    });
    bool interval_ok = true, timeout_ok = true;
    if (const Entry* e = map.get("interval")) {
        auto value = duration(*e);
        if (value && value->count() == 0)
            report(*e, "must be more than 0");
        interval_ok = value && value->count() > 0;
        if (interval_ok)
            config.interval = *value;
    }
    if (const Entry* e = map.get("timeout")) {
        auto value = duration(*e);
        if (value && value->count() == 0)
            report(*e, "must be more than 0");
        timeout_ok = value && value->count() > 0;
        if (timeout_ok)
            config.timeout = *value;
    }
    if (interval_ok && timeout_ok && config.timeout > config.interval) {
        const Entry* e = map.get("timeout") ? map.get("timeout") : map.get("interval");
        report(e ? e->line : entry.line, entry.path + ".timeout",
               std::to_string(config.timeout.count()) + "ms is longer than the interval (" +
                   std::to_string(config.interval.count()) + "ms)");
    }
    set(map, "rise", config.rise, [&](const Entry& e) { return integer(e, 1, 1000); });
    set(map, "fall", config.fall, [&](const Entry& e) { return integer(e, 1, 1000); });
    set(map, "port", config.port, [&](const Entry& e) { return integer(e, 0, 65535); });
    const bool http = config.kind == HealthCheckConfig::Kind::http;
    for (const char* key : {"http_path", "expected_status", "http_host"}) {
        if (const Entry* e = map.get(key); e && !http)
            report(*e, "only applies to kind: http");
    }
    if (const Entry* e = map.get("http_path"); e && http) {
        if (auto path = non_empty_string(*e)) {
            if (path->front() != '/' || path->find_first_of(" \t\r\n") != std::string::npos)
                report(*e, quoted(*path) + " is not an HTTP path (starts with '/', no spaces)");
            else
                config.http_path = *path;
        }
    }
    if (const Entry* e = map.get("expected_status"); e && http)
        set(map, "expected_status", config.expected_status, [&](const Entry& x) { return integer(x, 100, 599); });
    if (const Entry* e = map.get("http_host"); e && http) {
        if (auto host = string(*e)) {
            if (host->find_first_of(" \t\r\n") != std::string::npos)
                report(*e, quoted(*host) + " is not a host name");
            else
                config.http_host = *host;
        }
    }
    // A missing health section is read as an empty one at the VIP's line.
    if (protocol == IPPROTO_UDP && config.port == 0 && !map.get("port")) {
        report(entry.line, entry.path + ".port",
               "is required for a udp VIP (the default, the VIP's own port, is udp; " + to_string(config.kind) +
                   " checks need a tcp port)");
    } else if (protocol == IPPROTO_UDP && config.port == 0) {
        report(*map.get("port"), "must not be 0 for a udp VIP (the VIP's own port is udp; " + to_string(config.kind) +
                                     " checks need a tcp port)");
    }
    return config;
}

}  // namespace

std::vector<std::string> capacity_problems(const DaemonConfig& config) {
    std::vector<std::string> problems;
    if (config.vips.size() > config.max_vips)
        problems.push_back(std::to_string(config.vips.size()) + " VIPs do not fit max_vips " +
                           std::to_string(config.max_vips));
    std::size_t backend_pairs = 0;
    for (const VipConfig& vip : config.vips)
        backend_pairs += vip.backends.size();
    if (backend_pairs >= config.max_backends)
        problems.push_back(std::to_string(backend_pairs) + " backends (counted per VIP) do not fit max_backends " +
                           std::to_string(config.max_backends) + " (index 0 is reserved)");
    return problems;
}

DaemonConfig parse_config(std::string_view yaml_text, const std::string& source_name) {
    YAML::Node root;
    try {
        root = YAML::Load(std::string(yaml_text));
    } catch (const YAML::Exception& error) {
        const int line = error.mark.is_null() ? 1 : error.mark.line + 1;
        throw ConfigError({source_name + ":" + std::to_string(line) + ": (document): YAML syntax error: " + error.msg});
    }
    Parser parser(source_name);
    DaemonConfig config;
    try {
        config = parser.daemon(root);
    } catch (const YAML::Exception& error) {  // should not happen: a bug in this parser, not in the file
        parser.report(error.mark.is_null() ? 0 : error.mark.line, "(document)", error.msg);
    }
    if (auto problems = parser.problems(); !problems.empty())
        throw ConfigError(std::move(problems));
    return config;
}

std::string host_id(const AnnounceConfig& config) {
    if (!config.host_id.empty())
        return config.host_id;
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0')
        return "localhost";
    return name;
}

DaemonConfig load_config(const std::string& path) {
    std::string text;
    try {
        text = read_bounded_file(path);
    } catch (const std::runtime_error& error) {
        throw ConfigError({error.what()});
    }
    return parse_config(text, path);
}

}  // namespace stickylb

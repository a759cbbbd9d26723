// SPDX-License-Identifier: Apache-2.0
// stickylbd's configuration parser on arbitrary text (an operator's typo, a
// truncated file, binary garbage). Invariants:
// - parse_config either accepts or throws ConfigError with at least one problem,
//   each starting with the source name (the operator must find the line);
//   nothing else escapes it;
// - an accepted configuration obeys the rules the daemon relies on (an interface,
//   at least one VIP, each with backends, timeouts within intervals);
// - parse_duration and parse_host_port, on the same bytes, throw only
//   std::invalid_argument, and what they accept reads back the same.
#include <cstddef>
#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

#include "control/config.h"
#include "fuzz/fuzz_check.h"

namespace {

using stickylb::ConfigError;
using stickylb::DaemonConfig;

constexpr std::string_view kSource = "fuzz.yaml";

void check_accepted(const DaemonConfig& config) {
    FUZZ_CHECK(!config.interface.empty() && config.interface.size() <= 15, "an accepted interface name fits IFNAMSIZ");
    FUZZ_CHECK(!config.vips.empty(), "an accepted configuration has a VIP");
    std::set<std::string> vip_names;
    for (const auto& vip : config.vips) {
        FUZZ_CHECK(vip_names.insert(vip.name).second, "VIP names are unique");
        FUZZ_CHECK(!vip.backends.empty(), "every accepted VIP has a backend");
        FUZZ_CHECK(vip.health.timeout <= vip.health.interval, "health timeout within its interval");
        FUZZ_CHECK(vip.health.rise >= 1 && vip.health.fall >= 1, "rise and fall at least 1");
        std::set<std::string> backend_names;
        for (const auto& backend : vip.backends)
            FUZZ_CHECK(backend_names.insert(backend.name).second, "backend names unique within a VIP");
    }
}

void fuzz_config(std::string_view text) {
    DaemonConfig config;
    try {
        config = stickylb::parse_config(text, std::string(kSource));
    } catch (const ConfigError& error) {
        FUZZ_CHECK(!error.problems().empty(), "a ConfigError names at least one problem");
        for (const auto& problem : error.problems())
            FUZZ_CHECK(problem.starts_with(std::string(kSource) + ":"), "every problem starts with FILE:");
        return;
    }
    check_accepted(config);
    FUZZ_CHECK(stickylb::parse_config(text, std::string(kSource)) == config, "parsing is deterministic");
}

void fuzz_duration(std::string_view text) {
    std::chrono::milliseconds value;
    try {
        value = stickylb::parse_duration(text);
    } catch (const std::invalid_argument&) {
        return;
    }
    FUZZ_CHECK(value.count() >= 0, "a duration is not negative");
    FUZZ_CHECK(stickylb::parse_duration(std::to_string(value.count())) == value,
               "a duration reads back from its millisecond count");
}

void fuzz_host_port(std::string_view text) {
    stickylb::HostPort parsed;
    try {
        parsed = stickylb::parse_host_port(text);
    } catch (const std::invalid_argument&) {
        return;
    }
    FUZZ_CHECK(!parsed.host.empty() && parsed.port != 0, "host and port are present");
    bool v6 = parsed.host.find(':') != std::string::npos;
    std::string again = (v6 ? "[" + parsed.host + "]" : parsed.host) + ":" + std::to_string(parsed.port);
    FUZZ_CHECK(stickylb::parse_host_port(again) == parsed, "host:port reads back from its canonical form");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    fuzz_config(text);
    if (size <= 64) {
        fuzz_duration(text);
        fuzz_host_port(text);
    }
    return 0;
}

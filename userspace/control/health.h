// SPDX-License-Identifier: Apache-2.0
#pragma once
// Active health checks of backends (TCP connect or HTTP GET), on Boost.Asio.
//
// One HealthChecker per daemon, on the daemon's io_context. Every target has its own strand
// and its own steady_timer loop; probes are fully asynchronous (async_connect, Beast
// async_write / async_read_header, a deadline timer), so a slow or black-holed backend never
// delays the probes of any other.
//
// Semantics (HAProxy-like):
//  - a target starts in the `initial` state given to add_or_update();
//  - up:      `fall` consecutive failures  -> down;
//  - down:    `rise` consecutive successes -> up;
//  - unknown: whichever streak completes first decides: `rise` consecutive successes -> up,
//             `fall` consecutive failures -> down (so with rise 2 / fall 3 a dead backend is
//             known down after 3 probes, a live one up after 2);
//  - a single contrary result resets the streak; streaks restart from zero after a
//    transition; rise or fall of 0 is treated as 1;
//  - on_change is called only on transitions, after on_result for the probe that caused it;
//    it carries when the streak's first probe finished (HealthChange::streak_started).
//  - the first probe starts at once; each later one starts `interval` after the start of the
//    previous one. Probes never overlap: if a probe takes longer than `interval` (only
//    possible when timeout >= interval), the next one starts as soon as it has finished.
//  - a probe not finished after `timeout` fails with detail "timeout" (its socket is closed).
//  - TCP probe: success iff the connection is established (detail "connected"), refused is
//    "connect refused", other errors "connect: <message>".
//  - HTTP probe: "GET <http_path> HTTP/1.1", Host (http_host, or "<address>[:port]" when
//    empty), Connection: close; only the response header is read; success iff the status is
//    expected_status. Details: "status <n>", "http: <message>" (e.g. closed without answer).
//
// Callbacks run on the target's strand, i.e. on the io_context thread: they must not block
// (no I/O, no long work) and must not throw. They may call health(), add_or_update(),
// remove() and stop() (the effect of remove/stop on other targets is asynchronous but no
// callback of a removed target is called after remove() returns).
//
// Thread-safety: add_or_update, remove, stop and health are meant to be called from the
// io_context's thread (or before it runs); the daemon runs one thread. Several threads may
// run the io_context: each target's handlers stay serialised by its strand.
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "base/address.h"
#include "control/health_check_kind.h"

namespace stickylb {

struct ProbeSpec {
    using Kind = HealthCheckKind;
    Kind kind = Kind::tcp;
    IpAddress address;  // the backend's own address
    std::uint16_t port = 80;
    std::chrono::milliseconds interval{1000}, timeout{500};
    unsigned rise = 2, fall = 3;
    // http only
    std::string http_path = "/";
    unsigned expected_status = 200;
    std::string http_host;  // empty: the address (and the port unless 80)

    bool operator==(const ProbeSpec&) const = default;
};

struct ProbeResult {
    bool success = false;
    std::chrono::microseconds latency{0};
    std::string detail;  // "connected", "status 200", "connect refused", "status 503", "timeout", ...
};

enum class Health { unknown, up, down };
const char* to_string(Health health);

struct HealthChange {
    std::string key;
    Health from, to;
    ProbeResult last;  // the probe that completed the streak
    // When the first probe of that streak finished: for a backend going down,
    // when its failure was first seen (failover delays are measured from it).
    std::chrono::steady_clock::time_point streak_started;
};

class HealthChecker {
public:
    using OnChange = std::function<void(const HealthChange&)>;
    using OnResult = std::function<void(const std::string& key, const ProbeResult&)>;  // every probe (metrics)

    HealthChecker(boost::asio::io_context& io, OnChange on_change, OnResult on_result = {});
    ~HealthChecker();  // stop()
    HealthChecker(const HealthChecker&) = delete;
    HealthChecker& operator=(const HealthChecker&) = delete;

    // New key: starts probing at once in state `initial`. Existing key with the same spec:
    // nothing. Existing key with another spec: the loop restarts (probe in flight abandoned,
    // first probe at once, streaks reset); its current health is kept and `initial` ignored.
    void add_or_update(const std::string& key, const ProbeSpec& spec, Health initial = Health::unknown);
    // Stops probing that key (probe in flight abandoned); no callback for it afterwards.
    void remove(const std::string& key);
    // Health::unknown for a key not (or no longer) checked.
    Health health(const std::string& key) const;
    // Removes every target: cancels every timer and closes every socket; io.run() then
    // returns when nothing else is pending. Targets may be added again afterwards.
    void stop();

    class Target;  // implementation detail (health.cpp)

private:
    struct Callbacks;
    boost::asio::io_context& io_;
    std::shared_ptr<const Callbacks> callbacks_;
    std::map<std::string, std::shared_ptr<Target>> targets_;
};

}  // namespace stickylb

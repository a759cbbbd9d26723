// SPDX-License-Identifier: Apache-2.0
#pragma once
// stickylb-agent's settings: command-line flags, optionally on top of a YAML
// file (--config) with the same names in snake_case. Reference: the man page
// docs/man/stickylb-agent.8 and userspace/agent/stickylb-agent.example.yaml.
#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "agent/session_keys.h"

namespace stickylb::agent {

struct AgentConfig {
    std::string backend;                                // required: this host's backend name in stickylbd's config
    std::string cluster;                                // required: the membership view to read
    std::string listen = "127.0.0.1:11311";             // where PHP's session.save_path points
    std::vector<std::string> upstreams;                 // required: memcached servers, "host:port"
    std::string metrics_listen = "127.0.0.1:9479";      // "" or "off": no /metrics
    std::string session_prefix{kDefaultSessionPrefix};  // php-memcached's memcached.sess_prefix
    std::size_t replicas = 2;                           // copies of each session (1..number of upstreams)
    std::chrono::milliseconds lock_lease{5000};         // upstream expiry of a held lock, renewed every third of it
    std::chrono::milliseconds lock_wait{100};           // longest a lock attempt is held before NOT_STORED
    std::chrono::milliseconds view_poll{250};           // how often the membership view is read
    std::chrono::milliseconds upstream_timeout{500};
    std::size_t max_clients = 4096;  // needs that many file descriptors and some (raised at start)
    // A connection that sends no request for this long is closed, its locks
    // released (keep it above PHP's max_execution_time); 0: never.
    std::chrono::milliseconds client_idle_timeout{60000};
    // A request started (its line, its data block) must arrive whole within this.
    std::chrono::milliseconds client_request_timeout{10000};
    // Replies queued for a client must be read by it within this.
    std::chrono::milliseconds client_write_timeout{10000};
    // What all connections together may buffer: unfinished requests and unread replies.
    std::size_t max_buffered_bytes = 256u * 1024 * 1024;
    // A view written further than this from now (either way) is refused: a
    // few times stickylbd's view_ttl (5 s by default).
    std::chrono::milliseconds view_max_age{15000};
    std::string key_file;                  // the key stickylbd signs views with; "": views are not checked
    std::size_t resync_sessions = 100000;  // session ids remembered for copying back to a returning server; 0: off
    std::size_t resync_rate = 2000;        // sessions per second a resync reads and repairs, at most
};

class AgentConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Parses argv (argv[0] is the program). Throws AgentConfigError with the
// problem; sets `help`/`version` instead when those flags are given.
struct ParsedArgs {
    AgentConfig config;
    bool help = false;
    bool version = false;
    bool check_config = false;
};
ParsedArgs parse_agent_args(int argc, char** argv);

// Checks the combination (required fields, ranges); throws AgentConfigError.
void validate(const AgentConfig& config);

std::string usage_text();

}  // namespace stickylb::agent

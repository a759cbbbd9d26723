// SPDX-License-Identifier: Apache-2.0
#include "agent/agent_config.h"

#include <getopt.h>

#include <charconv>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "agent/protocol.h"
#include "agent/upstream.h"
#include "base/input_checks.h"
#include "base/duration.h"
#include "session/membership_view.h"

namespace stickylb::agent {

namespace {

std::size_t parse_count(std::string_view what, std::string_view text) {
    std::size_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
        throw AgentConfigError(std::string(what) + ": '" + std::string(text) + "' is not a non-negative integer");
    }
    return value;
}

std::chrono::milliseconds parse_period(std::string_view what, std::string_view text) {
    try {
        return parse_duration(text);
    } catch (const std::invalid_argument& error) {
        throw AgentConfigError(std::string(what) + ": " + error.what());
    }
}

// One setting by its snake_case name, from a flag or the file.
void apply(AgentConfig& config, std::string_view name, const std::string& value) {
    if (name == "backend")
        config.backend = value;
    else if (name == "cluster")
        config.cluster = value;
    else if (name == "listen")
        config.listen = value;
    else if (name == "upstream")
        config.upstreams.push_back(value);
    else if (name == "metrics_listen")
        config.metrics_listen = value;
    else if (name == "session_prefix")
        config.session_prefix = value;
    else if (name == "replicas")
        config.replicas = parse_count(name, value);
    else if (name == "lock_lease")
        config.lock_lease = parse_period(name, value);
    else if (name == "lock_wait")
        config.lock_wait = parse_period(name, value);
    else if (name == "view_poll")
        config.view_poll = parse_period(name, value);
    else if (name == "view_max_age")
        config.view_max_age = parse_period(name, value);
    else if (name == "key_file")
        config.key_file = value;
    else if (name == "upstream_timeout")
        config.upstream_timeout = parse_period(name, value);
    else if (name == "max_clients")
        config.max_clients = parse_count(name, value);
    else if (name == "client_idle_timeout")
        config.client_idle_timeout = parse_period(name, value);
    else if (name == "client_request_timeout")
        config.client_request_timeout = parse_period(name, value);
    else if (name == "client_write_timeout")
        config.client_write_timeout = parse_period(name, value);
    else if (name == "max_buffered_bytes")
        config.max_buffered_bytes = parse_count(name, value);
    else if (name == "resync_sessions")
        config.resync_sessions = parse_count(name, value);
    else if (name == "resync_rate")
        config.resync_rate = parse_count(name, value);
    else
        throw AgentConfigError("unknown setting '" + std::string(name) + "'");
}

void load_file(AgentConfig& config, const std::string& path) {
    YAML::Node root;
    try {
        root = YAML::Load(read_bounded_file(path));
    } catch (const YAML::Exception& error) {
        throw AgentConfigError(path + ": " + error.what());
    } catch (const std::runtime_error& error) {
        throw AgentConfigError(error.what());
    }
    if (!root.IsMap())
        throw AgentConfigError(path + ": expected a mapping of settings");
    for (const auto& entry : root) {
        const std::string line = path + ":" + std::to_string(entry.first.Mark().line + 1);
        if (!entry.first.IsScalar())
            throw AgentConfigError(line + ": a setting's name must be a plain word");
        const std::string name = entry.first.Scalar();
        const YAML::Node& value = entry.second;
        const std::string where = line + ": " + name;
        const auto scalar = [&](const YAML::Node& node) {
            if (!node.IsScalar())
                throw AgentConfigError("expected a single value");
            if (auto problem = text_problem(node.Scalar()))
                throw AgentConfigError("contains " + *problem);
            return node.Scalar();
        };
        try {
            if (name == "upstreams") {
                if (!value.IsSequence())
                    throw AgentConfigError("expected a list of host:port");
                for (const auto& item : value)
                    apply(config, "upstream", scalar(item));
            } else {
                apply(config, name, scalar(value));
            }
        } catch (const AgentConfigError& error) {
            throw AgentConfigError(where + ": " + error.what());
        }
    }
}

}  // namespace

std::string usage_text() {
    return R"(Usage: stickylb-agent --backend NAME --cluster NAME --upstream HOST:PORT [--upstream ...] [OPTIONS]
       stickylb-agent --config FILE [OPTIONS]

Session sidecar for PHP's memcached session handler: point session.save_path
at --listen. Locks are owned by the client connection, renewed while it lives,
released when it closes, and broken when the load balancer's membership view
says their backend is down. Sessions are kept on --replicas servers.

  --backend NAME           this host's backend name in stickylbd's config
  --cluster NAME           membership view to follow (stickylb:v1:members:NAME)
  --upstream HOST:PORT     a memcached server (repeat for each)
  --listen ADDR:PORT       client address (default 127.0.0.1:11311)
  --metrics-listen ADDR:PORT|off   Prometheus /metrics (default 127.0.0.1:9479)
  --session-prefix TEXT    memcached.sess_prefix of php-memcached (default memc.sess.key.)
  --replicas N             copies of each session (default 2)
  --lock-lease DURATION    upstream expiry of a held lock, renewed; at least 2s (default 5s)
  --lock-wait DURATION     longest a lock attempt waits before NOT_STORED (default 100ms)
  --view-poll DURATION     membership view refresh (default 250ms)
  --view-max-age DURATION  refuse a view written further than this from now (default 15s)
  --key-file FILE          the key stickylbd signs the view with (session.key_file):
                           unsigned or badly signed views are refused and counted
  --upstream-timeout DURATION   per request to memcached (default 500ms)
  --max-clients N          concurrent client connections (default 4096); the descriptor
                           limit is raised to fit it at start, or the agent refuses to start
  --client-idle-timeout DURATION     close a connection that sends nothing for this long,
                           releasing its locks (default 60s; 0: never)
  --client-request-timeout DURATION  a started request must arrive whole within it (default 10s)
  --client-write-timeout DURATION    replies must be read by the client within it (default 10s)
  --max-buffered-bytes N   unfinished requests and unread replies of all connections
                           together, at most (default 268435456)
  --resync-sessions N      session ids remembered, most recently served, to copy back
                           to a memcached server that returns (default 100000; 0: off)
  --resync-rate N          sessions per second such a copy-back reads and repairs (default 2000)
  --config FILE            YAML file with the same settings (snake_case; upstreams: list)
  --check-config           validate and exit
  -h, --help               this text
  -V, --version            version
)";
}

void validate(const AgentConfig& config) {
    auto check_name = [](std::string_view what, const std::string& name) {
        if (name.empty())
            throw AgentConfigError(std::string(what) + " is required");
        if (auto problem = session::name_problem(name))
            throw AgentConfigError(std::string(what) + ": " + *problem);
    };
    check_name("--backend", config.backend);
    check_name("--cluster", config.cluster);
    if (config.upstreams.empty())
        throw AgentConfigError("at least one --upstream is required");
    for (const std::string& upstream : config.upstreams) {
        try {
            ServerAddress::parse(upstream);
        } catch (const std::invalid_argument& error) {
            throw AgentConfigError(std::string("--upstream: ") + error.what());
        }
    }
    if (config.replicas < 1 || config.replicas > config.upstreams.size()) {
        throw AgentConfigError("--replicas must be 1.." + std::to_string(config.upstreams.size()) +
                               " (the number of upstream servers)");
    }
    if (config.session_prefix.empty())
        throw AgentConfigError("--session-prefix must not be empty");
    if (auto problem = key_problem(config.session_prefix + "x")) {
        throw AgentConfigError("--session-prefix: " + *problem);
    }
    // memcached expires by a whole-second clock that can step by two on a busy host: a
    // lease under 2 s could expire between two renewals (every third of it).
    if (config.lock_lease < std::chrono::seconds(2))
        throw AgentConfigError("--lock-lease must be at least 2s");
    if (config.view_poll < std::chrono::milliseconds(10))
        throw AgentConfigError("--view-poll must be at least 10ms");
    if (config.view_max_age < std::chrono::seconds(1))
        throw AgentConfigError("--view-max-age must be at least 1s");
    if (config.upstream_timeout < std::chrono::milliseconds(1)) {
        throw AgentConfigError("--upstream-timeout must be at least 1ms");
    }
    if (config.max_clients < 1)
        throw AgentConfigError("--max-clients must be at least 1");
    if (config.client_request_timeout < std::chrono::milliseconds(1)) {
        throw AgentConfigError("--client-request-timeout must be at least 1ms");
    }
    if (config.client_write_timeout < std::chrono::milliseconds(1)) {
        throw AgentConfigError("--client-write-timeout must be at least 1ms");
    }
    // One largest request (a value and its line) must fit.
    const ProtocolLimits limits;
    if (config.max_buffered_bytes < limits.max_value_bytes + limits.max_line_bytes + 2) {
        throw AgentConfigError("--max-buffered-bytes must be at least " +
                               std::to_string(limits.max_value_bytes + limits.max_line_bytes + 2) +
                               " (one largest request)");
    }
    if (config.resync_rate < 1 || config.resync_rate > 100000) {
        throw AgentConfigError("--resync-rate must be 1..100000 sessions per second");
    }
}

ParsedArgs parse_agent_args(int argc, char** argv) {
    static const option options[] = {{"backend", required_argument, nullptr, 0},
                                     {"cluster", required_argument, nullptr, 0},
                                     {"listen", required_argument, nullptr, 0},
                                     {"upstream", required_argument, nullptr, 0},
                                     {"metrics-listen", required_argument, nullptr, 0},
                                     {"session-prefix", required_argument, nullptr, 0},
                                     {"replicas", required_argument, nullptr, 0},
                                     {"lock-lease", required_argument, nullptr, 0},
                                     {"lock-wait", required_argument, nullptr, 0},
                                     {"view-poll", required_argument, nullptr, 0},
                                     {"upstream-timeout", required_argument, nullptr, 0},
                                     {"max-clients", required_argument, nullptr, 0},
                                     {"client-idle-timeout", required_argument, nullptr, 0},
                                     {"client-request-timeout", required_argument, nullptr, 0},
                                     {"client-write-timeout", required_argument, nullptr, 0},
                                     {"max-buffered-bytes", required_argument, nullptr, 0},
                                     {"resync-sessions", required_argument, nullptr, 0},
                                     {"resync-rate", required_argument, nullptr, 0},
                                     {"view-max-age", required_argument, nullptr, 0},
                                     {"key-file", required_argument, nullptr, 0},
                                     {"config", required_argument, nullptr, 'c'},
                                     {"check-config", no_argument, nullptr, 'k'},
                                     {"help", no_argument, nullptr, 'h'},
                                     {"version", no_argument, nullptr, 'V'},
                                     {nullptr, 0, nullptr, 0}};
    ParsedArgs parsed;
    std::vector<std::pair<std::string, std::string>> flags;
    std::string config_file;
    optind = 1;
    opterr = 0;
    for (;;) {
        int index = -1;
        int c = getopt_long(argc, argv, ":hV", options, &index);
        if (c == -1)
            break;
        switch (c) {
        case 0: {
            std::string name = options[index].name;
            std::replace(name.begin(), name.end(), '-', '_');
            flags.emplace_back(name, optarg);
            break;
        }
        case 'c': config_file = optarg; break;
        case 'k': parsed.check_config = true; break;
        case 'h': parsed.help = true; return parsed;
        case 'V': parsed.version = true; return parsed;
        case ':': throw AgentConfigError(std::string("option ") + argv[optind - 1] + " needs a value");
        default: throw AgentConfigError(std::string("unknown option ") + argv[optind - 1] + " (see --help)");
        }
    }
    if (optind < argc)
        throw AgentConfigError(std::string("unexpected argument '") + argv[optind] + "'");
    if (!config_file.empty())
        load_file(parsed.config, config_file);
    // Flags override the file; --upstream given on the command line replaces the file's list.
    bool upstream_flag = false;
    for (const auto& [name, value] : flags) {
        if (name == "upstream" && !upstream_flag) {
            parsed.config.upstreams.clear();
            upstream_flag = true;
        }
        try {
            apply(parsed.config, name, value);
        } catch (const AgentConfigError& error) {
            throw AgentConfigError("--" + std::string(error.what()));
        }
    }
    validate(parsed.config);
    if (!parsed.config.key_file.empty()) {
        try {
            session::SigningKey::load(parsed.config.key_file);
        } catch (const std::runtime_error& error) {
            throw AgentConfigError(std::string("--key-file: ") + error.what());
        }
    }
    return parsed;
}

}  // namespace stickylb::agent

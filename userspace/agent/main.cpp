// SPDX-License-Identifier: Apache-2.0
// stickylb-agent: the session sidecar. See agent.h and docs/man/stickylb-agent.8.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdio>
#include <exception>

#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "agent/agent_config.h"

int main(int argc, char** argv) {
    using namespace stickylb::agent;
    ParsedArgs args;
    try {
        args = parse_agent_args(argc, argv);
    } catch (const AgentConfigError& error) {
        std::fprintf(stderr, "Error: %s\n", error.what());
        return 2;
    }
    if (args.help) {
        std::fputs(usage_text().c_str(), stdout);
        return 0;
    }
    if (args.version) {
        std::printf("stickylb-agent %s\n", STICKYLB_VERSION);
        return 0;
    }
    if (args.check_config) {
        std::printf("configuration is valid\n");
        return 0;
    }
    std::signal(SIGPIPE, SIG_IGN);
    try {
        boost::asio::io_context io(1);
        Agent agent(io, args.config);
        boost::asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&](const boost::system::error_code& error, int signal) {
            if (error)
                return;
            spdlog::info("signal {}: stopping (releasing held locks)", signal);
            agent.stop();
        });
        agent.start();
        io.run();
        spdlog::info("stopped");
        return 0;
    } catch (const AgentConfigError& error) {
        std::fprintf(stderr, "Error: %s\n", error.what());
        return 2;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "Error: %s\n", error.what());
        return 1;
    }
}

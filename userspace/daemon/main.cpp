// SPDX-License-Identifier: Apache-2.0
// stickylbd [--config FILE] | --check-config FILE | --detach [--config FILE] | --version
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <utility>  // before Asio: see daemon.h

#include <boost/asio.hpp>
#include <csignal>
#include <cstring>
#include <iostream>
#include <string>

#include "daemon/daemon.h"

namespace {

constexpr const char* kDefaultConfig = "/etc/stickylb/stickylbd.yaml";

int usage(std::ostream& out, int code) {
    out << "Usage: stickylbd [--config FILE]        run the daemon (default " << kDefaultConfig << ")\n"
        << "       stickylbd --check-config FILE    validate a config file without touching the kernel\n"
        << "       stickylbd --detach [--config FILE]  remove the XDP program, tc filter and pinned maps\n"
        << "       stickylbd --version\n";
    return code;
}

}  // namespace

int main(int argc, char** argv) {
    std::string config = kDefaultConfig;
    bool detach = false;
    for (int i = 1; i < argc; ++i) {
        const std::string argument = argv[i];
        if ((argument == "--config" || argument == "-c") && i + 1 < argc)
            config = argv[++i];
        else if (argument == "--check-config" && i + 1 < argc)
            return stickylb::check_config(argv[++i]);
        else if (argument == "--detach")
            detach = true;
        else if (argument == "--version" || argument == "-V") {
            std::cout << "stickylbd " << STICKYLB_VERSION << "\n";
            return 0;
        } else if (argument == "--help" || argument == "-h")
            return usage(std::cout, 0);
        else {
            std::cerr << "Error: unknown argument '" << argument << "'\n";
            return usage(std::cerr, 2);
        }
    }
    // One line per event, no timestamps: journald (or the terminal) adds them.
    spdlog::set_default_logger(spdlog::stderr_color_mt("stickylbd"));
    spdlog::set_pattern("%^%l%$: %v");
    // A memcached server closing its end must not kill the daemon: a write to it
    // fails with EPIPE instead (the link retries).
    std::signal(SIGPIPE, SIG_IGN);
    try {
        if (detach)
            return stickylb::detach_data_plane(config);
        boost::asio::io_context io;
        stickylb::Daemon daemon(io, config);
        daemon.start();
        io.run();
        spdlog::info("stopped");
        return 0;
    } catch (const stickylb::ConfigError& error) {
        for (const std::string& problem : error.problems())
            spdlog::error("{}", problem);
        return 1;
    } catch (const std::exception& error) {
        spdlog::error("{}", error.what());
        return 1;
    }
}

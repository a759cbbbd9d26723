// SPDX-License-Identifier: Apache-2.0
// stickylb: the command line of stickylbd, bpftool style. See cli/grammar.h for
// the grammar and control/control_server.h for the protocol.
//
// Exit codes: 0 success (and help), 1 error (daemon unreachable, the daemon
// answered with an error), 2 usage error.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/grammar.h"
#include "base/bounded_json.h"
#include "cli/output.h"

namespace {

using stickylb::cli::Invocation;
using json = nlohmann::ordered_json;

constexpr int kTimeoutSeconds = 30;
constexpr std::size_t kMaxResponseBytes = 64 * 1024 * 1024;
// The daemon's replies nest a few levels; anything deeper is not one of them.
constexpr int kMaxResponseDepth = 32;

class Unreachable : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

class Connection {
public:
    explicit Connection(const std::string& path) {
        auto fail = [&](int error) {
            throw Unreachable("cannot reach stickylbd at " + path + ": " + std::strerror(error));
        };
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        if (path.size() >= sizeof address.sun_path)
            fail(ENAMETOOLONG);
        std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0)
            fail(errno);
        timeval timeout{kTimeoutSeconds, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
            fail(errno);
    }
    ~Connection() { ::close(fd_); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Sends one request line, returns the response object.
    json call(const nlohmann::json& request) {
        std::string line = request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
        for (std::size_t sent = 0; sent < line.size();) {
            ssize_t n = ::send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                throw std::runtime_error(std::string("sending to stickylbd: ") + std::strerror(errno));
            sent += static_cast<std::size_t>(n);
        }
        std::string response;
        char buffer[65536];
        while (response.find('\n') == std::string::npos) {
            ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                throw std::runtime_error("stickylbd did not answer within " + std::to_string(kTimeoutSeconds) + " s");
            if (n < 0)
                throw std::runtime_error(std::string("reading from stickylbd: ") + std::strerror(errno));
            if (n == 0)
                break;
            response.append(buffer, static_cast<std::size_t>(n));
            if (response.size() > kMaxResponseBytes)
                throw std::runtime_error("response from stickylbd too large");
        }
        if (auto newline = response.find('\n'); newline != std::string::npos)
            response.resize(newline);
        json parsed;
        try {
            parsed = stickylb::parse_json_bounded(response, kMaxResponseDepth);
        } catch (const stickylb::JsonTooDeep& error) {
            throw std::runtime_error(std::string("invalid response from stickylbd: ") + error.what());
        } catch (const json::parse_error&) {
            parsed = json(json::value_t::discarded);
        }
        if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("ok") || !parsed["ok"].is_boolean())
            throw std::runtime_error(response.empty() ? "stickylbd closed the connection without answering"
                                                      : "invalid response from stickylbd");
        return parsed;
    }

private:
    int fd_ = -1;
};

json result_of(const json& response) {
    if (!response["ok"].get<bool>()) {
        auto error = response.find("error");
        throw std::runtime_error(error != response.end() && error->is_string() ? error->get<std::string>()
                                                                               : "stickylbd reported an error");
    }
    auto result = response.find("result");
    return result == response.end() ? json() : *result;
}

int run(const Invocation& invocation) {
    using stickylb::cli::OutputFormat;
    const auto& options = invocation.options;
    OutputFormat format = options.pretty ? OutputFormat::pretty
                          : options.json ? OutputFormat::json
                                         : OutputFormat::plain;

    if (invocation.action == Invocation::Action::version) {
        json daemon;  // null: no answer
        std::string problem;
        try {
            Connection connection(options.socket);
            daemon = result_of(connection.call(invocation.request.to_json()));
        } catch (const std::exception& e) {
            problem = e.what();
        }
        if (format != OutputFormat::plain) {
            json both{{"cli", std::string(stickylb::cli::cli_version())}, {"daemon", daemon}};
            std::cout << stickylb::cli::format_result(both, format);
            return 0;
        }
        std::cout << "stickylb v" << stickylb::cli::cli_version() << "\n";
        if (!daemon.is_null()) {
            json version = daemon.is_object() && daemon.contains("version") ? daemon["version"] : daemon;
            std::cout << "stickylbd " << (version.is_string() ? version.get<std::string>() : version.dump()) << "\n";
        } else {
            std::cerr << "Note: " << problem << "\n";
        }
        return 0;
    }

    Connection connection(options.socket);
    json result = result_of(connection.call(invocation.request.to_json()));
    std::cout << stickylb::cli::format_result(result, format);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    Invocation invocation;
    try {
        invocation = stickylb::cli::parse_command_line(args);
    } catch (const stickylb::cli::UsageError& e) {
        std::cerr << "Error: " << e.what() << "\n";
        if (args.empty())
            std::cerr << "\n" << stickylb::cli::usage_text();
        return 2;
    }
    if (invocation.action == Invocation::Action::help) {
        std::cout << invocation.text;
        return 0;
    }
    try {
        return run(invocation);
    } catch (const std::exception& e) {
        std::cout.flush();
        std::cerr << "Error: " << e.what() << "\n";
        return 1;
    }
}

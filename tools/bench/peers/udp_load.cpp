// SPDX-License-Identifier: Apache-2.0
// Bounded UDP request/response load for tools/bench/traffic.sh: FLOWS connected
// sockets (one source port, so one flow, each), each with one 64-byte request in flight;
// a reply sends the next request at once. A request unanswered for --timeout-ms counts
// as lost and is replaced. Runs for --duration seconds and prints one line:
//
//   requests=N seconds=S rps=R p50_us=A p99_us=B lost=L
//
//   udp_load --target ADDRESS:PORT [--flows N] [--duration SECONDS] [--timeout-ms MS]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

struct Options {
    sockaddr_in target{};
    int flows = 16;
    double duration_s = 5;
    int timeout_ms = 200;
};

struct Flow {
    int fd = -1;
    uint64_t sequence = 0;  // of the request in flight
    Clock::time_point sent;
};

struct Result {
    uint64_t lost = 0;
    double seconds = 0;
    std::vector<int64_t> latencies_ns;
};

sockaddr_in parse_target(std::string_view text) {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
        throw std::runtime_error("--target wants ADDRESS:PORT, got '" + std::string(text) + "'");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    const std::string host(text.substr(0, colon));
    if (inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1)
        throw std::runtime_error("--target: not an IPv4 address: '" + host + "'");
    const int port = std::atoi(std::string(text.substr(colon + 1)).c_str());
    if (port <= 0 || port > 65535)
        throw std::runtime_error("--target: port must be 1-65535");
    address.sin_port = htons(static_cast<uint16_t>(port));
    return address;
}

void send_request(Flow& flow) {
    std::array<char, 64> payload{};
    ++flow.sequence;
    std::memcpy(payload.data(), &flow.sequence, sizeof flow.sequence);
    flow.sent = Clock::now();
    // A refused or full send is a request that will time out: counted as lost.
    send(flow.fd, payload.data(), payload.size(), MSG_DONTWAIT);
}

Result run(const Options& options) {
    const int epoll_fd = epoll_create1(0);
    if (epoll_fd < 0)
        fail("epoll_create1");
    std::vector<Flow> flows(static_cast<size_t>(options.flows));
    for (size_t i = 0; i < flows.size(); ++i) {
        flows[i].fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (flows[i].fd < 0)
            fail("socket");
        if (connect(flows[i].fd, reinterpret_cast<const sockaddr*>(&options.target), sizeof options.target) != 0)
            fail("connect");
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.u64 = i;
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, flows[i].fd, &event) != 0)
            fail("epoll_ctl");
    }

    Result result;
    result.latencies_ns.reserve(1 << 20);
    const auto timeout = std::chrono::milliseconds(options.timeout_ms);
    const auto start = Clock::now();
    const auto end =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.duration_s));
    for (auto& flow : flows)
        send_request(flow);
    std::array<epoll_event, 64> events{};
    auto next_timeout_scan = start + std::chrono::milliseconds(10);
    for (auto now = Clock::now(); now < end; now = Clock::now()) {
        const int ready = epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()), 10);
        if (ready < 0 && errno != EINTR)
            fail("epoll_wait");
        now = Clock::now();
        for (int e = 0; e < ready; ++e) {
            Flow& flow = flows[events[static_cast<size_t>(e)].data.u64];
            std::array<char, 2048> reply{};
            ssize_t received;
            while ((received = recv(flow.fd, reply.data(), reply.size(), 0)) >= 0) {
                uint64_t sequence = 0;
                if (received >= static_cast<ssize_t>(sizeof sequence))
                    std::memcpy(&sequence, reply.data(), sizeof sequence);
                if (sequence != flow.sequence)
                    continue;  // the late reply of a request already counted as lost
                // Read the clock per reply: the next request's reply may already be
                // waiting when this loop comes back to recv.
                now = Clock::now();
                result.latencies_ns.push_back(
                    std::chrono::duration_cast<std::chrono::nanoseconds>(now - flow.sent).count());
                if (now < end)
                    send_request(flow);
            }
        }
        if (now >= next_timeout_scan) {
            for (auto& flow : flows) {
                if (now - flow.sent > timeout) {
                    ++result.lost;
                    send_request(flow);
                }
            }
            next_timeout_scan = now + std::chrono::milliseconds(10);
        }
    }
    result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    for (auto& flow : flows)
        close(flow.fd);
    close(epoll_fd);
    return result;
}

double percentile_us(std::vector<int64_t>& values, double fraction) {
    if (values.empty())
        return 0;
    const auto at = static_cast<size_t>(fraction * static_cast<double>(values.size() - 1));
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(at), values.end());
    return static_cast<double>(values[at]) / 1000.0;
}

Options parse(int argc, char** argv) {
    Options options;
    bool have_target = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view argument = argv[i];
        if (i + 1 >= argc)
            throw std::runtime_error("unknown argument or missing value: " + std::string(argument));
        const char* value = argv[++i];
        if (argument == "--target") {
            options.target = parse_target(value);
            have_target = true;
        } else if (argument == "--flows") {
            options.flows = std::atoi(value);
        } else if (argument == "--duration") {
            options.duration_s = std::atof(value);
        } else if (argument == "--timeout-ms") {
            options.timeout_ms = std::atoi(value);
        } else {
            throw std::runtime_error("unknown argument: " + std::string(argument));
        }
    }
    if (!have_target)
        throw std::runtime_error("--target ADDRESS:PORT is required");
    if (options.flows < 1 || options.flows > 4096 || options.duration_s <= 0 || options.duration_s > 600 ||
        options.timeout_ms < 1)
        throw std::runtime_error("--flows 1-4096, --duration 0-600 s, --timeout-ms >= 1");
    return options;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Options options = parse(argc, argv);
        Result result = run(options);
        const double requests = static_cast<double>(result.latencies_ns.size());
        const double p50 = percentile_us(result.latencies_ns, 0.50);
        const double p99 = percentile_us(result.latencies_ns, 0.99);
        std::printf("requests=%.0f seconds=%.3f rps=%.0f p50_us=%.1f p99_us=%.1f lost=%llu\n", requests, result.seconds,
                    requests / result.seconds, p50, p99, static_cast<unsigned long long>(result.lost));
    } catch (const std::exception& error) {
        std::fprintf(stderr,
                     "udp_load: %s\n"
                     "usage: udp_load --target ADDRESS:PORT [--flows N] [--duration S] [--timeout-ms MS]\n",
                     error.what());
        return 1;
    }
}

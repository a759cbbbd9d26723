// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the session e2e tests read back from the PHP lab: the counter pages'
// answers and the membership view stickylbd keeps in memcached.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include "session/membership_view.h"
#include "support/lab.h"

namespace stickylb::testing::lab {

using Clock = std::chrono::steady_clock;

inline std::int64_t milliseconds(Clock::duration elapsed) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
}

// A figure the acceptance asks for: printed, and kept in the test's XML report.
inline void record(const std::string& key, const std::string& value) {
    std::cout << "[ MEASURE  ] " << key << ": " << value << std::endl;
    ::testing::Test::RecordProperty(key, value);
}

// curl's -w for parse_reply: the status (000 when nothing answered) and curl's time.
inline constexpr const char* kCurlStatusFormat = " -w '\\nHTTP_STATUS %{http_code} %{time_total}'";

// One HTTP exchange: status 0 when curl got no answer (its error is in body);
// elapsed is curl's own time_total.
struct Reply {
    int status = 0;
    std::string body;
    Clock::duration elapsed{};
};

inline std::ostream& operator<<(std::ostream& out, const Reply& reply) {
    return out << "HTTP " << reply.status << " after " << milliseconds(reply.elapsed) << " ms: '" << trim(reply.body)
               << "'";
}

inline Reply parse_reply(const CommandResult& result) {
    Reply reply;
    const auto marker = result.output.rfind("HTTP_STATUS ");
    if (marker == std::string::npos) {
        reply.body = result.output;
        return reply;
    }
    std::istringstream fields(result.output.substr(marker + 12));
    double curl_seconds = 0;
    fields >> reply.status >> curl_seconds;
    reply.elapsed = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(curl_seconds));
    reply.body = result.output.substr(0, marker);
    return reply;
}

// "backend=be2 n=3 sid=abc": what counter.php and hold.php answer.
struct Counter {
    std::string backend;
    long n = -1;
    std::string sid;
};

inline std::optional<Counter> parse_counter(const std::string& body) {
    std::istringstream fields(body);
    std::string field;
    Counter counter;
    while (fields >> field) {
        if (field.rfind("backend=", 0) == 0)
            counter.backend = field.substr(8);
        else if (field.rfind("n=", 0) == 0)
            counter.n = std::strtol(field.c_str() + 2, nullptr, 10);
        else if (field.rfind("sid=", 0) == 0)
            counter.sid = field.substr(4);
    }
    if (counter.backend.rfind("be", 0) != 0 || counter.n < 0 || counter.sid.empty())
        return std::nullopt;
    return counter;
}

// A sample of backend N's agent metrics (scraped from the client's namespace), or nullopt.
inline std::optional<double> agent_metric(int backend, const std::string& series) {
    const auto scrape = run_command(in_ns(lab_ns("client"), "curl -sS --max-time 3 http://" + backend_address(backend) +
                                                                ":" + std::to_string(kAgentMetricsPort) + "/metrics"));
    return scrape.exit_code == 0 ? sample_value(scrape.output, series) : std::nullopt;
}

// The cluster's membership view as the memcached at ADDRESS:PORT holds it, read
// from inside NS with the agent's own parser; nullopt if it is absent or
// memcached does not answer (an unparsable view fails the test).
inline std::optional<session::MembershipView> read_membership_view(const std::string& ns, const std::string& address,
                                                                   int port, const std::string& cluster) {
    const auto got = memcached_get(ns, address, port, session::members_key(cluster));
    if (got.exit_code != 0)
        return std::nullopt;
    std::string problem;
    auto view = session::parse_view(got.output, &problem);
    EXPECT_TRUE(view) << problem << ": " << got.output;
    return view;
}

}  // namespace stickylb::testing::lab

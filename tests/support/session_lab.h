// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the session e2e tests read back from the PHP lab: the counter pages'
// answers and the membership view stickylbd keeps in memcached.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>

#include "session/membership_view.h"
#include "support/lab.h"

namespace stickylb::testing::lab {

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

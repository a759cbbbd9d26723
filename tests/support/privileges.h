// SPDX-License-Identifier: Apache-2.0
#pragma once
// Privileged tiers (bpf, e2e) skip with a clear message where they cannot run;
// where STICKYLB_REQUIRE_PRIVILEGED=1 (CI) a missing privilege fails instead,
// so a skipped tier can never pass as green.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace stickylb::testing {

inline bool privileged_tier_required() {
    const char* value = std::getenv("STICKYLB_REQUIRE_PRIVILEGED");
    return value != nullptr && std::string(value) == "1";
}

}  // namespace stickylb::testing

#define STICKYLB_REQUIRE_ROOT()                                                                   \
    do {                                                                                          \
        if (geteuid() != 0) {                                                                     \
            if (::stickylb::testing::privileged_tier_required())                                  \
                FAIL() << "this test needs root (CAP_BPF, CAP_NET_ADMIN) and "                    \
                          "STICKYLB_REQUIRE_PRIVILEGED=1 forbids skipping it";                    \
            GTEST_SKIP() << "needs root (CAP_BPF, CAP_NET_ADMIN): run the bpf/e2e tiers as root"; \
        }                                                                                         \
    } while (0)

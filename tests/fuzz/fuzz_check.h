// SPDX-License-Identifier: Apache-2.0
#pragma once
// FUZZ_CHECK(condition, what): an invariant of a fuzz target. A violation prints
// what was expected and aborts, so libFuzzer saves the input as a crash.
#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(condition, what)                                                                           \
    do {                                                                                                      \
        if (!(condition)) {                                                                                   \
            std::fprintf(stderr, "%s:%d: invariant broken: %s (%s)\n", __FILE__, __LINE__, what, #condition); \
            std::abort();                                                                                     \
        }                                                                                                     \
    } while (false)

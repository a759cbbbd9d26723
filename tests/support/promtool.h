// SPDX-License-Identifier: Apache-2.0
#pragma once
// `promtool check metrics` on a scrape's text: lint problems fail the test.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace stickylb::testing {

inline std::string find_promtool() {
    for (const char* candidate : {"/usr/bin/promtool", "/usr/local/bin/promtool"}) {
        if (::access(candidate, X_OK) == 0)
            return candidate;
    }
    if (FILE* pipe = ::popen("command -v promtool 2>/dev/null", "r")) {
        char line[512] = {};
        std::string path = std::fgets(line, sizeof line, pipe) ? line : "";
        ::pclose(pipe);
        while (!path.empty() && (path.back() == '\n' || path.back() == '\r'))
            path.pop_back();
        if (!path.empty())
            return path;
    }
    return {};
}

struct PromtoolResult {
    int exit_status = -1;
    std::string output;
};

// `promtool check metrics` with the text on stdin; lint problems fail it.
inline PromtoolResult promtool_check(const std::string& text) {
    PromtoolResult result;
    std::string promtool = find_promtool();
    if (promtool.empty()) {
        result.output =
            "promtool not found: it comes with Debian's \"prometheus\" package, "
            "installed by tools/install-deps.sh";
        return result;
    }
    char path[] = "/tmp/stickylb_metrics_test_XXXXXX";
    int fd = ::mkstemp(path);
    if (fd < 0) {
        result.output = "mkstemp failed";
        return result;
    }
    ::close(fd);
    std::string command = "'" + promtool + "' check metrics >" + path + " 2>&1";
    FILE* pipe = ::popen(command.c_str(), "w");
    if (pipe == nullptr) {
        ::unlink(path);
        result.output = "popen failed";
        return result;
    }
    std::fwrite(text.data(), 1, text.size(), pipe);
    int status = ::pclose(pipe);
    result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream in(path);
    std::stringstream output;
    output << in.rdbuf();
    result.output = output.str();
    ::unlink(path);
    return result;
}

inline void expect_promtool_passes(const std::string& text) {
    PromtoolResult result = promtool_check(text);
    EXPECT_EQ(result.exit_status, 0) << result.output << "\n--- text ---\n" << text;
    EXPECT_EQ(result.output.find("problem"), std::string::npos) << result.output;
}

}  // namespace stickylb::testing

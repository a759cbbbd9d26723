// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shell helpers for tests that drive the namespace lab (tools/lab/lab.sh).
#include <sys/wait.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace stickylb::testing::lab {

inline std::string lab_prefix() {
    const char* prefix = std::getenv("STICKYLB_LAB_PREFIX");
    return prefix != nullptr && *prefix != '\0' ? prefix : "slb";
}
inline std::string lab_ns(const std::string& role) { return lab_prefix() + "-" + role; }
inline std::string backend_ns(int index) { return lab_ns("be" + std::to_string(index)); }

inline std::string shell_quote(const std::string& text) {
    std::string quoted = "'";
    for (char c : text) {
        if (c == '\'')
            quoted += "'\\''";
        else
            quoted += c;
    }
    return quoted + "'";
}

struct CommandResult {
    int exit_code = -1;
    std::string output;  // stdout and stderr
};

inline CommandResult run_command(const std::string& command) {
    CommandResult result;
    FILE* pipe = popen((command + " 2>&1").c_str(), "r");
    if (pipe == nullptr) {
        result.output = "popen failed: " + std::string(std::strerror(errno));
        return result;
    }
    std::array<char, 4096> buffer;
    std::size_t count;
    while ((count = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
        result.output.append(buffer.data(), count);
    const int status = pclose(pipe);
    result.exit_code = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return result;
}

inline std::string in_ns(const std::string& ns, const std::string& command) {
    return "ip netns exec " + shell_quote(ns) + " " + command;
}

inline std::string trim(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r'))
        text.pop_back();
    return text;
}

inline std::string lab_command(const std::string& arguments) {
    return "STICKYLB_BUILD_DIR=" + shell_quote(STICKYLB_BUILD_DIR) + " " +
           shell_quote(std::string(STICKYLB_SOURCE_DIR) + "/tools/lab/lab.sh") + " " + arguments;
}

inline std::vector<std::string> lab_namespaces_left() {
    const auto listed = run_command("ip netns list");
    std::vector<std::string> left;
    std::istringstream lines(listed.output);
    std::string line;
    const std::string prefix = lab_prefix() + "-";
    while (std::getline(lines, line)) {
        const std::string name = line.substr(0, line.find(' '));
        if (name.rfind(prefix, 0) == 0)
            left.push_back(name);
    }
    return left;
}


}  // namespace stickylb::testing::lab

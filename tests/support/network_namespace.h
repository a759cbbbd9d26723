// SPDX-License-Identifier: Apache-2.0
#pragma once
// A network namespace of the test's own that the calling thread enters for its
// lifetime: what the thread creates (links, routes, attachments) stays there and
// goes with it.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace stickylb::testing {

class EnteredNetworkNamespace {
public:
    // name gets the process id appended, so parallel test processes do not collide.
    explicit EnteredNetworkNamespace(const std::string& name) : name_(name + "-" + std::to_string(getpid())) {
        if (run("ip netns add " + name_) != 0)
            throw std::runtime_error("cannot create network namespace " + name_);
        original_ = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        const int target = open(("/var/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
        const bool entered = original_ >= 0 && target >= 0 && setns(target, CLONE_NEWNET) == 0;
        if (target >= 0)
            close(target);
        if (!entered) {
            leave();
            throw std::runtime_error("cannot enter network namespace " + name_);
        }
        run("ip link set lo up");
    }
    ~EnteredNetworkNamespace() { leave(); }
    EnteredNetworkNamespace(const EnteredNetworkNamespace&) = delete;
    EnteredNetworkNamespace& operator=(const EnteredNetworkNamespace&) = delete;

    const std::string& name() const { return name_; }

    // A shell command, its output discarded; its exit status.
    static int run(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()); }

private:
    void leave() {
        if (original_ >= 0) {
            setns(original_, CLONE_NEWNET);
            close(original_);
            original_ = -1;
        }
        run("ip netns del " + name_);
    }

    std::string name_;
    int original_ = -1;
};

}  // namespace stickylb::testing

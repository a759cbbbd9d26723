// SPDX-License-Identifier: Apache-2.0
#pragma once
// A bpffs of the test's own (ip netns exec remounts /sys, so /sys/fs/bpf is not
// ours to use): mounted in a fresh /tmp directory, unmounted and removed after.
#include <sys/mount.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "base/errors.h"

namespace stickylb::testing {

class PrivateBpffs {
public:
    PrivateBpffs() {
        char pattern[] = "/tmp/stickylb-bpffs-XXXXXX";
        if (mkdtemp(pattern) == nullptr)
            throw SystemError("create a directory for a bpffs", errno);
        path_ = pattern;
        if (mount("bpf", path_.c_str(), "bpf", 0, nullptr) != 0) {
            const int error = errno;
            std::filesystem::remove(path_);
            throw SystemError("mount bpffs at " + path_, error);
        }
    }
    ~PrivateBpffs() {
        umount2(path_.c_str(), MNT_DETACH);
        std::filesystem::remove_all(path_);
    }
    PrivateBpffs(const PrivateBpffs&) = delete;
    PrivateBpffs& operator=(const PrivateBpffs&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

}  // namespace stickylb::testing

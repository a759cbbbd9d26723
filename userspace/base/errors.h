// SPDX-License-Identifier: Apache-2.0
#pragma once
// libbpf and syscalls report -errno; this is the one place that turns that into
// an exception that says what was being done (which map, which VIP).
#include <stdexcept>
#include <string>

namespace stickylb {

class SystemError : public std::runtime_error {
public:
    SystemError(const std::string& context, int error_number);
    int error_number() const noexcept { return error_number_; }

private:
    int error_number_;
};

// rc < 0 is -errno (libbpf convention): throws SystemError("context: strerror").
int check_libbpf(int rc, const std::string& context);
// rc < 0 with errno set (plain syscalls).
int check_syscall(int rc, const std::string& context);

}  // namespace stickylb

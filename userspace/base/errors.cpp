// SPDX-License-Identifier: Apache-2.0
#include "base/errors.h"

#include <cerrno>
#include <cstring>

namespace stickylb {

SystemError::SystemError(const std::string& context, int error_number)
    : std::runtime_error(context + ": " + std::strerror(error_number)), error_number_(error_number) {}

int check_libbpf(int rc, const std::string& context) {
    if (rc < 0)
        throw SystemError(context, -rc);
    return rc;
}

int check_syscall(int rc, const std::string& context) {
    if (rc < 0)
        throw SystemError(context, errno);
    return rc;
}

}  // namespace stickylb

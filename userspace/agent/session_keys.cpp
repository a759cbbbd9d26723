// SPDX-License-Identifier: Apache-2.0
#include "agent/session_keys.h"

namespace stickylb::agent {

namespace {
constexpr std::string_view kLockPrefix = "lock.";
}

SessionKey classify_key(std::string_view key, std::string_view session_prefix) {
    if (session_prefix.empty() || !key.starts_with(session_prefix))
        return {};
    std::string_view rest = key.substr(session_prefix.size());
    if (rest.starts_with(kLockPrefix)) {
        rest.remove_prefix(kLockPrefix.size());
        if (rest.empty())
            return {};
        return {SessionKey::Kind::lock, rest};
    }
    if (rest.empty())
        return {};
    return {SessionKey::Kind::data, rest};
}

std::string lock_key_of(std::string_view session_prefix, std::string_view session_id) {
    std::string key(session_prefix);
    key += kLockPrefix;
    key += session_id;
    return key;
}

}  // namespace stickylb::agent

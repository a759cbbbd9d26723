// SPDX-License-Identifier: Apache-2.0
#pragma once
// Which client keys are sessions. php-memcached's handler prefixes every key
// with memcached.sess_prefix ("memc.sess.key." by default): the session data is
// "<prefix><sid>", its lock "<prefix>lock.<sid>". Session ids are PHP's
// [a-zA-Z0-9,-] characters, so "lock." can not start a real session id.
#include <string>
#include <string_view>

namespace stickylb::agent {

inline constexpr std::string_view kDefaultSessionPrefix = "memc.sess.key.";

struct SessionKey {
    enum class Kind { other, data, lock } kind = Kind::other;
    std::string_view session_id;  // a view into the key; empty for other
};

SessionKey classify_key(std::string_view key, std::string_view session_prefix);

// The lock key of a session, as the handler spells it.
std::string lock_key_of(std::string_view session_prefix, std::string_view session_id);

}  // namespace stickylb::agent

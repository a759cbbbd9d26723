// SPDX-License-Identifier: Apache-2.0
#pragma once
// What stickylbd and the agents read back from memcached (membership views,
// affinity snapshots) can be written by anyone who reaches memcached. With a
// shared key (a file, `session.key_file` / `--key-file`) each such value
// carries an HMAC-SHA256 over the memcached key it is stored under and its
// bytes, so a forged or moved value is told from a real one:
//
//   "SLBMAC1 <64 lowercase hex digits>\n<payload>"
//
// A reader with a key takes only values whose MAC checks; a reader without one
// takes the payload either way (it cannot check; stickylbd logs at start that
// memcached data is not authenticated). The reasons a value is refused are one
// list, the `reason` label of stickylb_memcached_rejected_total and its agent twin.
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

namespace stickylb::session {

#define STICKYLB_MEMCACHED_REJECTIONS(X)                                                  \
    X(unsigned_value, "unsigned", "no MAC, and a key is configured")                      \
    X(bad_signature, "bad_signature", "a MAC that does not match the key")                \
    X(malformed, "malformed", "does not parse, or a field out of its range")              \
    X(too_large, "too_large", "sizes beyond the bytes present or the configured ceiling") \
    X(stale, "stale", "written longer ago than its freshness allows")                     \
    X(future, "future", "written later than now, beyond the clock skew allowed")          \
    X(epoch_regressed, "epoch_regressed", "an epoch below the highest seen for its cluster")

enum class Rejection {
#define STICKYLB_X(name, label, help) name,
    STICKYLB_MEMCACHED_REJECTIONS(STICKYLB_X)
#undef STICKYLB_X
};
inline constexpr std::string_view kRejectionLabels[] = {
#define STICKYLB_X(name, label, help) label,
    STICKYLB_MEMCACHED_REJECTIONS(STICKYLB_X)
#undef STICKYLB_X
};
inline constexpr std::size_t kRejectionCount = std::size(kRejectionLabels);
std::string_view to_string(Rejection rejection);  // the metric label: kRejectionLabels[rejection]
std::string_view describe(Rejection rejection);   // what it means, for logs

// A key read from a file that only its owner may read: a regular file, no
// permission for group or others, 16 to 4096 bytes (one trailing newline is
// not part of the key). Throws std::runtime_error naming the file and the problem.
class SigningKey {
public:
    static SigningKey load(const std::string& path);
    explicit SigningKey(std::string secret);  // at least 16 bytes, else std::invalid_argument

    // HMAC-SHA256 of memcached_key, a zero byte, and payload: 32 bytes.
    std::string mac(std::string_view memcached_key, std::string_view payload) const;

private:
    std::string secret_;
};

inline constexpr std::string_view kSignedValueMagic = "SLBMAC1 ";

// The value to store: the payload behind its MAC, or the payload alone without a key.
std::string sign_value(const SigningKey* key, std::string_view memcached_key, std::string_view payload);

struct OpenedValue {
    std::string_view payload;           // a view into the stored value
    std::optional<Rejection> rejected;  // set: payload is empty and must not be used
};
// Checks and strips what sign_value added (`stored` must outlive the result).
OpenedValue open_value(const SigningKey* key, std::string_view memcached_key, std::string_view stored);

}  // namespace stickylb::session

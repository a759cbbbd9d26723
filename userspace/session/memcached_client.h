// SPDX-License-Identifier: Apache-2.0
#pragma once
// A blocking libmemcached client for ONE memcached server, with short timeouts.
// Blocking on purpose: it only ever runs on a MemcachedLink's own thread, never
// on the daemon's io_context. Not thread-safe.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

struct memcached_st;

namespace stickylb {

// What went wrong, with the server and the key: "memcached 127.0.0.1:11211: set
// stickylb:v1:members:web: CONNECTION FAILURE".
class MemcachedError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct MemcachedTimeouts {
    std::chrono::milliseconds connect{200};
    std::chrono::milliseconds io{500};  // each wait for the socket while reading or writing
};

class MemcachedClient {
public:
    // server: "host:port" or "[v6]:port". Connects lazily, on the first operation.
    MemcachedClient(const std::string& server, MemcachedTimeouts timeouts);
    ~MemcachedClient();
    MemcachedClient(const MemcachedClient&) = delete;
    MemcachedClient& operator=(const MemcachedClient&) = delete;

    const std::string& server() const { return server_; }

    // ttl: memcached expiry, whole seconds (at most 30 days; 0 never expires).
    void set(std::string_view key, std::string_view value, std::chrono::seconds ttl);
    // nullopt: no such key (or expired).
    std::optional<std::string> get(std::string_view key);
    // The keys that exist, in one round trip.
    std::map<std::string, std::string> get_many(const std::vector<std::string>& keys);
    // A key that is not there is not an error.
    void remove(std::string_view key);

    // Compare-and-swap, for a value several writers change (read, modify, write back
    // only if nobody wrote in between).
    struct Versioned {
        std::string value;
        std::uint64_t cas = 0;  // memcached's version of the value
    };
    std::optional<Versioned> gets(std::string_view key);
    // false: the key exists already.
    bool add(std::string_view key, std::string_view value, std::chrono::seconds ttl);
    // false: the value was changed or removed since `cas` was read.
    bool compare_and_swap(std::string_view key, std::string_view value, std::chrono::seconds ttl, std::uint64_t cas);

private:
    [[noreturn]] void fail(const std::string& what, std::string_view key, int code) const;

    std::string server_;
    memcached_st* memc_ = nullptr;
};

}  // namespace stickylb

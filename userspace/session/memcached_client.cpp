// SPDX-License-Identifier: Apache-2.0
#include "session/memcached_client.h"

#include <libmemcached/memcached.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "control/config.h"

namespace stickylb {
namespace {

struct FreeValue {
    void operator()(char* value) const { std::free(value); }
};

}  // namespace

MemcachedClient::MemcachedClient(const std::string& server, MemcachedTimeouts timeouts) : server_(server) {
    HostPort where;
    try {
        where = parse_host_port(server);
    } catch (const std::invalid_argument& error) {
        throw MemcachedError("memcached " + server + ": " + error.what());
    }
    memc_ = memcached_create(nullptr);
    if (memc_ == nullptr)
        throw MemcachedError("memcached " + server + ": cannot create a libmemcached handle");
    const auto behave = [&](memcached_behavior_t behavior, std::uint64_t value) {
        memcached_behavior_set(memc_, behavior, value);
    };
    // Non-blocking sockets so that both timeouts apply: a dead host costs at most
    // the connect timeout, a hung server at most the I/O timeout per operation.
    behave(MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
    behave(MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    behave(MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, static_cast<std::uint64_t>(timeouts.connect.count()));
    behave(MEMCACHED_BEHAVIOR_POLL_TIMEOUT, static_cast<std::uint64_t>(timeouts.io.count()));
    behave(MEMCACHED_BEHAVIOR_RCV_TIMEOUT, static_cast<std::uint64_t>(timeouts.io.count()) * 1000);
    behave(MEMCACHED_BEHAVIOR_SND_TIMEOUT, static_cast<std::uint64_t>(timeouts.io.count()) * 1000);
    // Retries and backoff are the link's business: libmemcached must not hold a
    // failed server "dead" on its own clock.
    behave(MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
    behave(MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1);  // gets() answers with the value's version
    const memcached_return_t rc = memcached_server_add(memc_, where.host.c_str(), where.port);
    if (rc != MEMCACHED_SUCCESS) {
        const std::string message = memcached_strerror(memc_, rc);
        memcached_free(memc_);
        throw MemcachedError("memcached " + server + ": " + message);
    }
}

MemcachedClient::~MemcachedClient() {
    if (memc_ != nullptr)
        memcached_free(memc_);
}

// "CONNECTION FAILURE (Connection refused)": libmemcached's own last message
// carries pointers and source lines, of no use to an operator.
void MemcachedClient::fail(const std::string& what, std::string_view key, int code) const {
    std::string message = memcached_strerror(memc_, static_cast<memcached_return_t>(code));
    if (const int error = memcached_last_error_errno(memc_); error != 0)
        message += std::string(" (") + std::strerror(error) + ")";
    throw MemcachedError("memcached " + server_ + ": " + what + " " + std::string(key) + ": " + message);
}

void MemcachedClient::set(std::string_view key, std::string_view value, std::chrono::seconds ttl) {
    const memcached_return_t rc =
        memcached_set(memc_, key.data(), key.size(), value.data(), value.size(), static_cast<time_t>(ttl.count()), 0);
    if (rc != MEMCACHED_SUCCESS)
        fail("set", key, rc);
}

std::optional<std::string> MemcachedClient::get(std::string_view key) {
    std::size_t length = 0;
    std::uint32_t flags = 0;
    memcached_return_t rc = MEMCACHED_SUCCESS;
    std::unique_ptr<char, FreeValue> value(memcached_get(memc_, key.data(), key.size(), &length, &flags, &rc));
    if (rc == MEMCACHED_NOTFOUND)
        return std::nullopt;
    if (rc != MEMCACHED_SUCCESS)
        fail("get", key, rc);
    return value ? std::string(value.get(), length) : std::string();
}

std::map<std::string, std::string> MemcachedClient::get_many(const std::vector<std::string>& keys) {
    std::map<std::string, std::string> found;
    if (keys.empty())
        return found;
    std::vector<const char*> pointers;
    std::vector<std::size_t> lengths;
    for (const std::string& key : keys) {
        pointers.push_back(key.data());
        lengths.push_back(key.size());
    }
    const std::string what =
        keys.front() + (keys.size() > 1 ? " (and " + std::to_string(keys.size() - 1) + " more)" : "");
    memcached_return_t rc = memcached_mget(memc_, pointers.data(), lengths.data(), keys.size());
    if (rc != MEMCACHED_SUCCESS)
        fail("get", what, rc);
    // Ours, not libmemcached's to allocate: it frees an allocated result itself
    // when the fetch ends, and then ours would be freed twice.
    memcached_result_st result;
    if (memcached_result_create(memc_, &result) == nullptr)
        throw MemcachedError("memcached " + server_ + ": get " + what + ": out of memory");
    const std::unique_ptr<memcached_result_st, void (*)(memcached_result_st*)> release(&result, memcached_result_free);
    for (;;) {
        memcached_result_st* fetched = memcached_fetch_result(memc_, &result, &rc);
        if (fetched == nullptr)
            break;
        found.emplace(std::string(memcached_result_key_value(fetched), memcached_result_key_length(fetched)),
                      std::string(memcached_result_value(fetched), memcached_result_length(fetched)));
    }
    if (rc != MEMCACHED_END && rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND)
        fail("get", what, rc);
    return found;
}

std::optional<MemcachedClient::Versioned> MemcachedClient::gets(std::string_view key) {
    const char* keys[] = {key.data()};
    const std::size_t lengths[] = {key.size()};
    memcached_return_t rc = memcached_mget(memc_, keys, lengths, 1);
    if (rc != MEMCACHED_SUCCESS)
        fail("gets", key, rc);
    memcached_result_st result;
    if (memcached_result_create(memc_, &result) == nullptr)
        throw MemcachedError("memcached " + server_ + ": gets " + std::string(key) + ": out of memory");
    const std::unique_ptr<memcached_result_st, void (*)(memcached_result_st*)> release(&result, memcached_result_free);
    std::optional<Versioned> found;
    while (memcached_result_st* fetched = memcached_fetch_result(memc_, &result, &rc))
        found = Versioned{std::string(memcached_result_value(fetched), memcached_result_length(fetched)),
                          memcached_result_cas(fetched)};
    if (rc != MEMCACHED_END && rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND)
        fail("gets", key, rc);
    return found;
}

bool MemcachedClient::add(std::string_view key, std::string_view value, std::chrono::seconds ttl) {
    const memcached_return_t rc =
        memcached_add(memc_, key.data(), key.size(), value.data(), value.size(), static_cast<time_t>(ttl.count()), 0);
    if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS)
        return false;
    if (rc != MEMCACHED_SUCCESS)
        fail("add", key, rc);
    return true;
}

bool MemcachedClient::compare_and_swap(std::string_view key, std::string_view value, std::chrono::seconds ttl,
                                       std::uint64_t cas) {
    const memcached_return_t rc = memcached_cas(memc_, key.data(), key.size(), value.data(), value.size(),
                                                static_cast<time_t>(ttl.count()), 0, cas);
    if (rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_NOTFOUND || rc == MEMCACHED_NOTSTORED)
        return false;
    if (rc != MEMCACHED_SUCCESS)
        fail("cas", key, rc);
    return true;
}

void MemcachedClient::remove(std::string_view key) {
    const memcached_return_t rc = memcached_delete(memc_, key.data(), key.size(), 0);
    if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND)
        fail("delete", key, rc);
}

}  // namespace stickylb

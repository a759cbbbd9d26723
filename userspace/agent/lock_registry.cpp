// SPDX-License-Identifier: Apache-2.0
#include "agent/lock_registry.h"

#include <algorithm>

namespace stickylb::agent {

HeldLock* LockRegistry::find(const std::string& key) {
    auto it = locks_.find(key);
    return it == locks_.end() ? nullptr : &it->second;
}

HeldLock& LockRegistry::add(HeldLock lock) {
    // A lost lock of another connection may still sit under this key: the new one replaces it.
    if (auto old = locks_.find(lock.key); old != locks_.end())
        tokens_.erase(old->second.token);
    pending_.erase(lock.token);
    tokens_.insert(lock.token);
    std::string key = lock.key;
    return locks_.insert_or_assign(std::move(key), std::move(lock)).first->second;
}

void LockRegistry::unreserve(const std::string& key, std::uint64_t token) {
    if (pending_.erase(token) != 0)
        wake(key);
}

void LockRegistry::remove(const std::string& key, std::uint64_t token) {
    auto it = locks_.find(key);
    if (it == locks_.end() || it->second.token != token)
        return;
    tokens_.erase(token);
    locks_.erase(it);
    wake(key);
}

void LockRegistry::wake(const std::string& key) {
    if (auto waiting = waiters_.find(key); waiting != waiters_.end()) {
        for (boost::asio::steady_timer* timer : waiting->second)
            timer->cancel();
    }
}

std::vector<std::string> LockRegistry::keys() const {
    std::vector<std::string> out;
    out.reserve(locks_.size());
    for (const auto& [key, lock] : locks_)
        out.push_back(key);
    return out;
}

void LockRegistry::add_waiter(const std::string& key, boost::asio::steady_timer* timer) {
    waiters_[key].push_back(timer);
}

void LockRegistry::remove_waiter(const std::string& key, boost::asio::steady_timer* timer) {
    auto it = waiters_.find(key);
    if (it == waiters_.end())
        return;
    std::erase(it->second, timer);
    if (it->second.empty())
        waiters_.erase(it);
}

}  // namespace stickylb::agent

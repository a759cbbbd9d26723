// SPDX-License-Identifier: Apache-2.0
#pragma once
// The session locks this agent holds for its clients, and the clients waiting
// for one of them. A lock released here wakes its local waiters at once, so
// requests queued on one backend take the lock in turn without sleeping out
// their retry interval.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace stickylb::agent {

class UpstreamServer;

struct HeldLock {
    std::string key;  // the client's lock key, also the upstream key
    std::string session_id;
    UpstreamServer* server = nullptr;
    std::string tag;  // encoded LockTag: the upstream value
    std::uint64_t token = 0;
    std::uint64_t cas = 0;    // upstream CAS of our value, updated by renewals
    std::uint64_t owner = 0;  // client connection id
    bool lost = false;        // found taken over or gone: writes under it are refused
    bool releasing = false;   // its delete is on the way: renewals leave it alone
};

class LockRegistry {
public:
    HeldLock* find(const std::string& key);
    // Held, or being taken: an attempt's token counts as ours from before its request
    // leaves, since with several upstream connections another attempt can see the
    // new lock upstream before this one has the reply that says it got it.
    bool token_held(std::uint64_t token) const { return tokens_.contains(token) || pending_.contains(token); }
    std::size_t size() const { return locks_.size(); }

    // An attempt to take a lock with `token` is on its way upstream.
    void reserve(std::uint64_t token) { pending_.insert(token); }
    // The attempt ended without taking the lock: wake the waiters that saw the token.
    void unreserve(const std::string& key, std::uint64_t token);

    HeldLock& add(HeldLock lock);  // also ends the token's reservation
    // Forgets the lock (if `token` still names it) and wakes its waiters.
    void remove(const std::string& key, std::uint64_t token);

    // Keys of every held lock (a copy: renewals run while locks come and go).
    std::vector<std::string> keys() const;

    // A waiter's timer is cancelled when the lock is released here.
    void add_waiter(const std::string& key, boost::asio::steady_timer* timer);
    void remove_waiter(const std::string& key, boost::asio::steady_timer* timer);

private:
    void wake(const std::string& key);

    std::map<std::string, HeldLock> locks_;
    std::set<std::uint64_t> tokens_;
    std::set<std::uint64_t> pending_;
    std::map<std::string, std::vector<boost::asio::steady_timer*>> waiters_;
};

}  // namespace stickylb::agent

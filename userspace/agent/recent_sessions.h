// SPDX-License-Identifier: Apache-2.0
#pragma once
// The session ids this agent served lately, at most `capacity` of them: the
// least recently served is forgotten first. Sticky load balancing sends each
// user to one backend, so together the agents know every active session; a
// resync walks this set when a memcached server comes back (session_resync.h).
//
// Cost per id: the id and its list and hash-table nodes, 160 bytes for PHP's
// 26-character ids (measured), so the default 100,000 ids take about 16 MB.
#include <cstddef>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace stickylb::agent {

class RecentSessions {
public:
    explicit RecentSessions(std::size_t capacity) : capacity_(capacity) {}
    RecentSessions(const RecentSessions&) = delete;
    RecentSessions& operator=(const RecentSessions&) = delete;

    // `sid` was served now. Capacity 0 remembers nothing.
    void remember(std::string_view sid);

    std::size_t size() const { return order_.size(); }
    std::size_t capacity() const { return capacity_; }
    // Every remembered id, most recently served first.
    std::vector<std::string> snapshot() const;

private:
    std::size_t capacity_;
    std::list<std::string> order_;  // front: most recently served
    // Keys view the strings in order_'s nodes, which never move (splice relinks them).
    std::unordered_map<std::string_view, std::list<std::string>::iterator> index_;
};

}  // namespace stickylb::agent

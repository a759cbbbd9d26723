// SPDX-License-Identifier: Apache-2.0
#include "agent/recent_sessions.h"

namespace stickylb::agent {

void RecentSessions::remember(std::string_view sid) {
    if (capacity_ == 0)
        return;
    if (auto known = index_.find(sid); known != index_.end()) {
        order_.splice(order_.begin(), order_, known->second);
        return;
    }
    order_.emplace_front(sid);
    index_.emplace(order_.front(), order_.begin());
    if (order_.size() > capacity_) {
        index_.erase(order_.back());
        order_.pop_back();
    }
}

std::vector<std::string> RecentSessions::snapshot() const { return {order_.begin(), order_.end()}; }

}  // namespace stickylb::agent

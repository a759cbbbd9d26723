// SPDX-License-Identifier: Apache-2.0
#pragma once
// The agent's upstream memcached servers as one group: placement of keys
// (rendezvous over the servers' names, skipping servers in a backoff) and
// coroutine-friendly calls, one or several in parallel.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <boost/asio/awaitable.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "agent/upstream.h"

namespace stickylb::agent {

struct CallResult {
    std::error_code error;
    Reply reply;
    bool ok() const { return !error; }
};

struct UpstreamCall {
    UpstreamServer* server = nullptr;
    std::string wire;
    ReplyShape shape = ReplyShape::line;
};

class UpstreamGroup {
public:
    UpstreamGroup(boost::asio::any_io_executor executor, const std::vector<std::string>& servers,
                  UpstreamOptions options);

    std::size_t size() const { return servers_.size(); }
    UpstreamServer& server(std::size_t index) { return *servers_[index]; }
    const UpstreamServer& server(std::size_t index) const { return *servers_[index]; }

    // Every server, best first for `key`.
    std::vector<UpstreamServer*> ranked(std::string_view key);
    // The first `count` servers for `key` that are not in a backoff; if fewer
    // are up, the best-ranked ones fill in (their calls fail fast).
    std::vector<UpstreamServer*> placement(std::string_view key, std::size_t count);

    void close();

private:
    std::vector<std::unique_ptr<UpstreamServer>> servers_;
    std::vector<std::string_view> names_;
};

boost::asio::awaitable<CallResult> call(UpstreamServer& server, std::string wire, ReplyShape shape);

// A request that lives on one server: the first for `key` that is not in a
// backoff, and when it does not answer (down, connect failure, connection
// lost, timeout, a reply out of frame), the next in rank order, until one
// answers or every server was tried. `server` answered (or failed last);
// `failovers` counts the servers tried before it.
struct PlacedResult {
    CallResult result;
    UpstreamServer* server = nullptr;
    std::size_t failovers = 0;
};
boost::asio::awaitable<PlacedResult> call_first(UpstreamGroup& group, std::string_view key, std::string wire,
                                                ReplyShape shape);
// All calls at once; results in the order given.
boost::asio::awaitable<std::vector<CallResult>> call_all(std::vector<UpstreamCall> calls);

}  // namespace stickylb::agent

// SPDX-License-Identifier: Apache-2.0
#pragma once
// Where the replies to one client go. A multi-get of large values is answered
// piece by piece: put() may wait until the client has read what came before,
// so a client that never reads stops being served instead of growing the agent.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <boost/asio/awaitable.hpp>

#include <stdexcept>
#include <string_view>

namespace stickylb::agent {

class ReplySink {
public:
    virtual ~ReplySink() = default;
    // Queues `bytes` for the client. Throws ConnectionEnded when the
    // connection ends meanwhile (the client went away, a deadline or the
    // buffer limit): whatever request was being answered stops there.
    virtual boost::asio::awaitable<void> put(std::string_view bytes) = 0;
};

class ConnectionEnded : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace stickylb::agent

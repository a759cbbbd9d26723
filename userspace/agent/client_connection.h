// SPDX-License-Identifier: Apache-2.0
#pragma once
// One local client (a PHP worker's connection): reads requests, answers them in
// order, and when the connection ends, for whatever reason, releases the
// session locks it held.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <memory>

#include "agent/protocol.h"
#include "agent/session_service.h"

namespace stickylb::agent {

class Agent;

class ClientConnection {
public:
    ClientConnection(boost::asio::ip::tcp::socket socket, Agent& agent, std::uint64_t id);
    // `self` is this connection: the coroutine keeps it alive (co_spawn starts it later).
    boost::asio::awaitable<void> run(std::shared_ptr<ClientConnection> self);
    void close();  // ends run(): the locks are released on the way out

private:
    boost::asio::awaitable<bool> serve_buffered(std::string& out);

    boost::asio::ip::tcp::socket socket_;
    Agent& agent_;
    ClientState state_;
    RequestParser parser_;
};

}  // namespace stickylb::agent

// SPDX-License-Identifier: Apache-2.0
#pragma once
// One local client (a PHP worker's connection): reads requests, answers them in
// order, and when the connection ends, however it ends (the client, a
// deadline, the buffer limit, the agent stopping, an exception), releases the
// session locks it held.
//
// Bounds, so that no client can grow the agent or hold it:
//  - replies are written once kFlushBytes have queued (a multi-get is answered
//    piece by piece), and nothing more is read until the client has taken
//    them, within --client-write-timeout;
//  - a connection with no request started is closed after
//    --client-idle-timeout; a started request must arrive whole within
//    --client-request-timeout;
//  - what it buffers (the unfinished request, unread replies) is its share of
//    one BufferBudget for all connections (--max-buffered-bytes).
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <memory>
#include <optional>
#include <string>

#include "agent/agent_stats.h"
#include "agent/buffer_budget.h"
#include "agent/protocol.h"
#include "agent/reply_sink.h"
#include "agent/session_service.h"

namespace stickylb::agent {

class Agent;

class ClientConnection : public ReplySink {
public:
    // Replies queued beyond this are written before anything else is done.
    static constexpr std::size_t kFlushBytes = 256 * 1024;

    ClientConnection(boost::asio::ip::tcp::socket socket, Agent& agent, std::uint64_t id);
    // `self` is this connection: the coroutine keeps it alive (co_spawn starts it later).
    boost::asio::awaitable<void> run(std::shared_ptr<ClientConnection> self);
    // Ends run() (the locks are released on the way out); the first reason given is kept.
    void close(ConnectionEnd why);

    boost::asio::awaitable<void> put(std::string_view bytes) override;

private:
    boost::asio::awaitable<void> serve();
    // Serves every complete request buffered; returns how many, or nullopt when the connection must end.
    boost::asio::awaitable<std::optional<std::size_t>> serve_buffered();
    boost::asio::awaitable<void> flush();  // throws ConnectionEnded
    bool account();                        // the budget share follows what is buffered now; false: over the limit

    boost::beast::tcp_stream stream_;
    Agent& agent_;
    ClientState state_;
    RequestParser parser_;
    std::string out_;
    BufferBudget::Share share_;
    std::optional<ConnectionEnd> ended_;
};

}  // namespace stickylb::agent

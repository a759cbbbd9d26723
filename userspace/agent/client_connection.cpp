// SPDX-License-Identifier: Apache-2.0
#include "agent/client_connection.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>

#include "agent/agent.h"

namespace stickylb::agent {

namespace asio = boost::asio;

ClientConnection::ClientConnection(asio::ip::tcp::socket socket, Agent& agent, std::uint64_t id)
    : socket_(std::move(socket)), agent_(agent) {
    state_.id = id;
}

void ClientConnection::close() {
    boost::system::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
}

// Serves every complete request buffered; false when the connection must end.
asio::awaitable<bool> ClientConnection::serve_buffered(std::string& out) {
    for (;;) {
        RequestParser::Result result = parser_.next();
        switch (result.status) {
        case RequestParser::Status::need_more:
            co_return true;
        case RequestParser::Status::rejected:
            ++agent_.stats_.protocol_errors;
            out += result.reply;
            continue;
        case RequestParser::Status::fatal:
            ++agent_.stats_.protocol_errors;
            out += result.reply;
            co_return false;
        case RequestParser::Status::request:
            break;
        }
        const Request& request = result.request;
        ++agent_.stats_.requests[static_cast<std::size_t>(request.command)];
        if (request.command == Command::quit) co_return false;
        // Plain statements around co_await: GCC 12 mishandles temporaries of a
        // co_await inside a conditional expression.
        std::string reply;
        if (request.command == Command::stats) {
            reply = agent_.memcached_stats();
        } else {
            reply = co_await agent_.sessions_.handle(state_, request);
        }
        if (!request.noreply) out += reply;
    }
}

asio::awaitable<void> ClientConnection::run(std::shared_ptr<ClientConnection> self) {
    (void)self;  // held by the coroutine frame: alive until the locks are released
    std::array<char, 16 * 1024> buffer;
    std::string out;
    bool open = true;
    while (open) {
        boost::system::error_code error;
        std::size_t received =
            co_await socket_.async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, error));
        if (error) break;
        parser_.feed(std::string_view(buffer.data(), received));
        open = co_await serve_buffered(out);
        if (!out.empty()) {
            co_await asio::async_write(socket_, asio::buffer(out), asio::redirect_error(asio::use_awaitable, error));
            out.clear();
            if (error) break;
        }
    }
    close();
    co_await agent_.sessions_.disconnect(state_);
    agent_.connection_closed(state_.id);
}

}  // namespace stickylb::agent

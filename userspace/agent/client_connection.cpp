// SPDX-License-Identifier: Apache-2.0
#include "agent/client_connection.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>

#include <array>

#include <spdlog/spdlog.h>

#include "agent/agent.h"

namespace stickylb::agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
using Clock = std::chrono::steady_clock;

namespace {

// A reply buffer emptied after a large reply gives its memory back.
constexpr std::size_t kKeptReplyCapacity = 64 * 1024;

}  // namespace

ClientConnection::ClientConnection(asio::ip::tcp::socket socket, Agent& agent, std::uint64_t id)
    : stream_(std::move(socket)), agent_(agent), share_(agent.buffers_) {
    state_.id = id;
}

void ClientConnection::close(ConnectionEnd why) {
    if (!ended_)
        ended_ = why;
    boost::system::error_code ignored;
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    stream_.close();
}

bool ClientConnection::account() { return share_.hold(parser_.buffered_bytes() + out_.size()); }

asio::awaitable<void> ClientConnection::flush() {
    if (ended_)
        throw ConnectionEnded("connection closed");
    if (out_.empty())
        co_return;
    boost::system::error_code error;
    stream_.expires_after(agent_.config_.client_write_timeout);
    co_await asio::async_write(stream_, asio::buffer(out_), asio::redirect_error(asio::use_awaitable, error));
    stream_.expires_never();
    if (out_.capacity() > kKeptReplyCapacity) {
        std::string().swap(out_);
    } else {
        out_.clear();
    }
    account();
    if (error) {
        close(error == beast::error::timeout ? ConnectionEnd::write_timeout : ConnectionEnd::client);
        throw ConnectionEnded("writing to the client: " + error.message());
    }
}

asio::awaitable<void> ClientConnection::put(std::string_view bytes) {
    if (ended_)
        throw ConnectionEnded("connection closed");
    if (!out_.empty() && out_.size() + bytes.size() > kFlushBytes)
        co_await flush();
    out_.append(bytes);
    if (!account()) {
        close(ConnectionEnd::buffer_limit);
        throw ConnectionEnded("buffers of all client connections at --max-buffered-bytes");
    }
    if (out_.size() >= kFlushBytes)
        co_await flush();
}

asio::awaitable<std::optional<std::size_t>> ClientConnection::serve_buffered() {
    std::size_t served = 0;
    for (;;) {
        RequestParser::Result result = parser_.next();
        switch (result.status) {
        case RequestParser::Status::need_more: co_return served;
        case RequestParser::Status::rejected:
            ++agent_.stats_.protocol_errors;
            ++served;
            co_await put(result.reply);
            continue;
        case RequestParser::Status::fatal:
            ++agent_.stats_.protocol_errors;
            co_await put(result.reply);
            co_await flush();
            close(ConnectionEnd::protocol_error);
            co_return std::nullopt;
        case RequestParser::Status::request: break;
        }
        ++served;
        const Request& request = result.request;
        ++agent_.stats_.requests[static_cast<std::size_t>(request.command)];
        if (request.command == Command::quit) {
            close(ConnectionEnd::client);
            co_return std::nullopt;
        }
        // Plain statements around co_await: GCC 12 mishandles temporaries of a
        // co_await inside a conditional expression.
        if (request.command == Command::stats) {
            const std::string stats = agent_.memcached_stats();
            co_await put(stats);
        } else {
            co_await agent_.sessions_.handle(state_, request, *this);
        }
    }
}

asio::awaitable<void> ClientConnection::serve() {
    const AgentConfig& config = agent_.config_;
    std::array<char, 16 * 1024> buffer;
    std::optional<Clock::time_point> request_started;
    for (;;) {
        // The deadline of this read: the request under way must finish within
        // its own time, however slowly its bytes come; between requests the idle timeout.
        if (parser_.mid_request()) {
            if (!request_started)
                request_started = Clock::now();
            stream_.expires_at(*request_started + config.client_request_timeout);
        } else if (config.client_idle_timeout.count() > 0) {
            request_started.reset();
            stream_.expires_after(config.client_idle_timeout);
        } else {
            request_started.reset();
            stream_.expires_never();
        }
        boost::system::error_code error;
        const std::size_t received =
            co_await stream_.async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, error));
        stream_.expires_never();
        if (error == beast::error::timeout) {
            close(request_started ? ConnectionEnd::request_timeout : ConnectionEnd::idle_timeout);
            co_return;
        }
        if (error) {
            close(ConnectionEnd::client);
            co_return;
        }
        parser_.feed(std::string_view(buffer.data(), received));
        if (!account()) {
            parser_ = RequestParser();  // what it held goes; the error is all the client gets
            out_ += server_error("out of memory storing object");
            co_await flush();
            close(ConnectionEnd::buffer_limit);
            co_return;
        }
        const std::optional<std::size_t> served = co_await serve_buffered();
        if (!served)
            co_return;
        if (*served > 0)
            request_started.reset();  // a pipeline that makes progress is not slow
        co_await flush();
    }
}

asio::awaitable<void> ClientConnection::run(std::shared_ptr<ClientConnection> self) {
    (void)self;  // held by the coroutine frame: alive until the locks are released
    std::string failure;
    try {
        co_await serve();
    } catch (const ConnectionEnded&) {
        // ended_ says why
    } catch (const std::exception& error) {
        failure = error.what();
    }
    if (!failure.empty()) {
        close(ConnectionEnd::failure);
        spdlog::error("client connection {}: {}: closed, its locks released", state_.id, failure);
    }
    close(ConnectionEnd::client);  // keeps the first reason
    std::string().swap(out_);
    parser_ = RequestParser();
    share_.hold(0);
    try {
        co_await agent_.sessions_.disconnect(state_);
    } catch (const std::exception& error) {
        // Not even the release went out: stop renewing, so the locks expire within their lease.
        spdlog::error("client connection {}: releasing its locks: {}: left to expire", state_.id, error.what());
        agent_.sessions_.forget(state_);
    }
    agent_.connection_closed(state_.id, ended_.value_or(ConnectionEnd::client));
}

}  // namespace stickylb::agent

// SPDX-License-Identifier: Apache-2.0
#pragma once
// A TCP proxy on 127.0.0.1 in front of one server, for tests of what a client
// does when the replies on one of its connections are late while its other
// connections answer at once (a busy server thread, a slow network path).
//
// arm(marker): the next connection whose request bytes contain `marker` gets
// the replies that follow held back by `delay`, once. Everything else is
// forwarded as it comes. One thread pair per connection; the destructor closes
// every socket and joins every thread.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace stickylb::testing {

class ReplyDelayingProxy {
public:
    explicit ReplyDelayingProxy(std::uint16_t server_port) : server_port_(server_port) {
        listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listener_ < 0)
            throw std::runtime_error(std::string("proxy socket: ") + std::strerror(errno));
        sockaddr_in address = loopback(0);
        socklen_t length = sizeof address;
        if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
            ::listen(listener_, 16) != 0 ||
            ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
            int error = errno;
            ::close(listener_);
            throw std::runtime_error(std::string("proxy listen: ") + std::strerror(error));
        }
        port_ = ntohs(address.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }

    ~ReplyDelayingProxy() {
        stopping_ = true;
        ::shutdown(listener_, SHUT_RDWR);
        acceptor_.join();
        ::close(listener_);
        std::lock_guard guard(mutex_);
        for (auto& connection : connections_) {
            ::shutdown(connection->client, SHUT_RDWR);
            ::shutdown(connection->server, SHUT_RDWR);
        }
        for (auto& connection : connections_) {
            connection->upward.join();
            connection->downward.join();
            ::close(connection->client);
            ::close(connection->server);
        }
    }

    std::uint16_t port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

    void arm(std::string marker, std::chrono::milliseconds delay) {
        std::lock_guard guard(mutex_);
        marker_ = std::move(marker);
        delay_ = delay;
    }

private:
    struct Connection {
        int client = -1;
        int server = -1;
        std::atomic<bool> delay_replies{false};
        std::thread upward;
        std::thread downward;
    };

    static sockaddr_in loopback(std::uint16_t port) {
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return address;
    }

    static bool send_all(int fd, const char* data, std::size_t size) {
        while (size > 0) {
            ssize_t sent = ::send(fd, data, size, MSG_NOSIGNAL);
            if (sent <= 0)
                return false;
            data += sent;
            size -= static_cast<std::size_t>(sent);
        }
        return true;
    }

    void accept_loop() {
        while (!stopping_) {
            int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
            if (client < 0)
                return;
            int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_in address = loopback(server_port_);
            if (server < 0 || ::connect(server, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
                ::close(client);
                if (server >= 0)
                    ::close(server);
                continue;
            }
            auto connection = std::make_unique<Connection>();
            connection->client = client;
            connection->server = server;
            Connection* raw = connection.get();
            raw->upward = std::thread([this, raw] { forward_requests(*raw); });
            raw->downward = std::thread([this, raw] { forward_replies(*raw); });
            std::lock_guard guard(mutex_);
            connections_.push_back(std::move(connection));
        }
    }

    void forward_requests(Connection& connection) {
        char buffer[65536];
        for (;;) {
            ssize_t got = ::recv(connection.client, buffer, sizeof buffer, 0);
            if (got <= 0)
                break;
            {
                std::lock_guard guard(mutex_);
                if (!marker_.empty() &&
                    std::string_view(buffer, static_cast<std::size_t>(got)).find(marker_) != std::string_view::npos) {
                    marker_.clear();
                    armed_delay_ = delay_;
                    connection.delay_replies = true;
                }
            }
            if (!send_all(connection.server, buffer, static_cast<std::size_t>(got)))
                break;
        }
        ::shutdown(connection.server, SHUT_WR);
    }

    void forward_replies(Connection& connection) {
        char buffer[65536];
        for (;;) {
            ssize_t got = ::recv(connection.server, buffer, sizeof buffer, 0);
            if (got <= 0)
                break;
            if (connection.delay_replies.exchange(false)) {
                std::chrono::milliseconds delay;
                {
                    std::lock_guard guard(mutex_);
                    delay = armed_delay_;
                }
                std::this_thread::sleep_for(delay);
            }
            if (!send_all(connection.client, buffer, static_cast<std::size_t>(got)))
                break;
        }
        ::shutdown(connection.client, SHUT_WR);
    }

    std::uint16_t server_port_;
    std::uint16_t port_ = 0;
    int listener_ = -1;
    std::atomic<bool> stopping_{false};
    std::thread acceptor_;
    std::mutex mutex_;
    std::string marker_;
    std::chrono::milliseconds delay_{0};
    std::chrono::milliseconds armed_delay_{0};
    std::vector<std::unique_ptr<Connection>> connections_;
};

}  // namespace stickylb::testing

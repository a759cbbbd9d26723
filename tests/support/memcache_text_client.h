// SPDX-License-Identifier: Apache-2.0
#pragma once
// The tests' memcached client (text protocol), blocking with deadlines: sends raw
// commands and reads one reply framed by what the command returns. In a lab
// namespace through lab::in_network_namespace.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>

namespace stickylb::testing {

class MemcacheTextClient {
public:
    // 127.0.0.1:PORT.
    explicit MemcacheTextClient(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(10))
        : MemcacheTextClient("127.0.0.1", port, timeout) {}

    // HOST (an IPv4 or IPv6 address) PORT; timeout bounds the connect and every reply.
    MemcacheTextClient(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout)
        : timeout_(timeout) {
        sockaddr_storage address{};
        socklen_t length = 0;
        auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
        auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
        if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons(port);
            length = sizeof *v4;
        } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons(port);
            length = sizeof *v6;
        } else {
            throw std::invalid_argument("not an IP address: '" + host + "'");
        }
        const std::string where = host + ":" + std::to_string(port);
        fd_ = ::socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd_ < 0)
            throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
        // Non-blocking, so that a server that is gone fails within the timeout, not TCP's.
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), length) != 0) {
            int error = errno;
            if (error == EINPROGRESS) {
                pollfd descriptor{fd_, POLLOUT, 0};
                socklen_t size = sizeof error;
                if (::poll(&descriptor, 1, static_cast<int>(timeout_.count())) <= 0)
                    error = ETIMEDOUT;
                else if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &size) != 0)
                    error = errno;
            }
            if (error != 0) {
                ::close(fd_);
                fd_ = -1;
                throw std::runtime_error("connect " + where + ": " + std::strerror(error));
            }
        }
        ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
        int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    ~MemcacheTextClient() { close(); }
    MemcacheTextClient(const MemcacheTextClient&) = delete;
    MemcacheTextClient& operator=(const MemcacheTextClient&) = delete;

    void close() {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
    }

    void send(const std::string& bytes) {
        std::size_t sent = 0;
        while (sent < bytes.size()) {
            ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
            if (n <= 0)
                throw std::runtime_error(std::string("send: ") + std::strerror(errno));
            sent += static_cast<std::size_t>(n);
        }
    }

    // One line, "\r\n" included.
    std::string read_line() {
        for (;;) {
            auto end = buffer_.find("\r\n");
            if (end != std::string::npos) {
                std::string line = buffer_.substr(0, end + 2);
                buffer_.erase(0, end + 2);
                return line;
            }
            fill();
        }
    }

    // A get/gets reply: VALUE blocks up to and including END (or an error line).
    std::string read_values() {
        std::string out;
        for (;;) {
            std::string line = read_line();
            out += line;
            if (!line.starts_with("VALUE "))
                return out;
            // VALUE <key> <flags> <bytes> [<cas>]
            std::size_t pos = 0;
            for (int field = 0; field < 3; ++field)
                pos = line.find(' ', pos) + 1;
            std::size_t bytes = std::stoul(line.substr(pos));
            while (buffer_.size() < bytes + 2)
                fill();
            out += buffer_.substr(0, bytes + 2);
            buffer_.erase(0, bytes + 2);
        }
    }

    std::string command(const std::string& line) {
        send(line + "\r\n");
        return read_line();
    }
    std::string store(const std::string& verb, const std::string& key, const std::string& value,
                      std::uint32_t flags = 0, std::int64_t exptime = 0) {
        send(verb + ' ' + key + ' ' + std::to_string(flags) + ' ' + std::to_string(exptime) + ' ' +
             std::to_string(value.size()) + "\r\n" + value + "\r\n");
        return read_line();
    }
    std::string get_raw(const std::string& keys, const char* verb = "get") {
        send(std::string(verb) + ' ' + keys + "\r\n");
        return read_values();
    }
    // The value of one key, or nullopt if the reply was END alone.
    std::optional<std::string> get(const std::string& key) {
        std::string reply = get_raw(key);
        if (!reply.starts_with("VALUE ")) {
            if (reply != "END\r\n")
                throw std::runtime_error("get " + key + ": " + reply);
            return std::nullopt;
        }
        std::size_t header_end = reply.find("\r\n");
        std::size_t data_end = reply.rfind("\r\nEND\r\n");
        return reply.substr(header_end + 2, data_end - header_end - 2);
    }
    // Does the server close the connection (EOF) within the timeout?
    bool closed_by_peer() {
        try {
            fill();
            return false;
        } catch (const std::runtime_error&) {
            return true;
        }
    }

private:
    void fill() {
        pollfd descriptor{fd_, POLLIN, 0};
        int ready = ::poll(&descriptor, 1, static_cast<int>(timeout_.count()));
        if (ready <= 0)
            throw std::runtime_error("no reply within " + std::to_string(timeout_.count()) + " ms");
        char chunk[16384];
        ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
        if (n <= 0)
            throw std::runtime_error("connection closed");
        buffer_.append(chunk, static_cast<std::size_t>(n));
    }

    int fd_ = -1;
    std::chrono::milliseconds timeout_;
    std::string buffer_;
};

}  // namespace stickylb::testing

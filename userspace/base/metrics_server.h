// SPDX-License-Identifier: Apache-2.0
#pragma once
// Read-only HTTP/1.1 endpoint for Prometheus (Boost.Beast, async only, on the
// caller's io_context): GET /metrics answers the provider's text with
// Content-Type "text/plain; version=0.0.4; charset=utf-8" (HEAD: its headers);
// other paths 404, other methods 405, request bodies 413, oversized headers 431,
// malformed requests 400. Keep-alive is honoured; each request must arrive
// whole, and each response be taken, within the timeout (a deadline, not an idle
// timer: a client dripping a byte a second is closed all the same), or the
// connection is closed. Connections over max_connections are closed at accept.
//
// Threading: the provider and every handler run on the io_context. Call stop()
// (and the destructor) on the io_context's thread, or while it is not running.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace stickylb::metrics {

struct MetricsServerOptions {
    std::chrono::milliseconds timeout{5'000};  // per request read / response write
    std::size_t header_limit = 8 * 1024;       // request line + headers
    std::size_t max_connections = 64;          // more are accepted and closed at once
};

// "127.0.0.1:9478", "0.0.0.0:9478", "[::1]:9478", "[::]:9478" (numeric only;
// port 0 picks an ephemeral port). Throws std::invalid_argument otherwise.
boost::asio::ip::tcp::endpoint parse_listen_address(std::string_view listen);

class MetricsServer {
public:
    using Provider = std::function<std::string()>;

    // Binds and starts accepting. Throws std::invalid_argument for a bad address
    // and stickylb::SystemError ("metrics listen 127.0.0.1:9478: Address already
    // in use") if it cannot listen.
    MetricsServer(boost::asio::io_context& io, std::string_view listen, Provider provider,
                  MetricsServerOptions options = {});
    ~MetricsServer();  // stop()
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    boost::asio::ip::tcp::endpoint local_endpoint() const;
    std::uint16_t port() const { return local_endpoint().port(); }  // the bound port (for ":0")

    // Closes the listener and every connection; pending operations end with
    // operation_aborted. Idempotent.
    void stop();

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace stickylb::metrics

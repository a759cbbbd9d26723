// SPDX-License-Identifier: Apache-2.0
#include "base/metrics_server.h"

#include <array>
#include <charconv>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "base/errors.h"
#include "base/host_port.h"

namespace stickylb::metrics {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

namespace {
constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::size_t kDrainLimit = 64 * 1024;  // bytes read (and discarded) before a graceful close
}  // namespace

tcp::endpoint parse_listen_address(std::string_view listen) {
    auto fail = [&](const std::string& why) {
        throw std::invalid_argument("metrics listen \"" + std::string(listen) + "\": " + why +
                                    " (expected IPv4:port or [IPv6]:port)");
    };
    HostPort parsed;
    try {
        parsed = parse_host_port(listen, PortZero::allowed);
    } catch (const std::invalid_argument& error) {
        fail(error.what());
    }
    boost::system::error_code address_ec;
    auto address = asio::ip::make_address(parsed.host, address_ec);
    if (address_ec)
        fail("not a numeric address");
    return {address, parsed.port};
}

class Session;

struct MetricsServer::Impl : std::enable_shared_from_this<MetricsServer::Impl> {
    Impl(asio::io_context& io, std::string listen, Provider provider, MetricsServerOptions options)
        : io(io), acceptor(io), retry(io), listen(std::move(listen)), provider(std::move(provider)), options(options) {}

    void accept();

    asio::io_context& io;
    tcp::acceptor acceptor;
    asio::steady_timer retry;  // after an accept error (EMFILE...), so the loop does not spin
    std::string listen;
    Provider provider;
    MetricsServerOptions options;
    bool stopped = false;
    std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
};

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(std::shared_ptr<MetricsServer::Impl> server, tcp::socket socket)
        : server_(std::move(server)), stream_(std::move(socket)) {}
    ~Session() { server_->sessions.erase(this); }

    void start() {
        server_->sessions.emplace(this, weak_from_this());
        read();
    }

    void close() {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
        stream_.close();
    }

private:
    void read() {
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(server_->options.header_limit));
        parser_->body_limit(0);
        stream_.expires_after(server_->options.timeout);
        http::async_read(stream_, buffer_, *parser_,
                         [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
    }

    void on_read(beast::error_code ec) {
        if (server_->stopped)
            return;
        if (ec) {
            if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
                return respond_error(http::status::request_header_fields_too_large, "request headers too large\n");
            }
            if (ec == http::error::body_limit || ec == http::error::unexpected_body) {
                return respond_error(http::status::payload_too_large, "request bodies are not accepted\n");
            }
            bool parse_error = ec.category() == http::make_error_code(http::error::bad_target).category() &&
                               ec != http::error::end_of_stream && ec != http::error::partial_message;
            if (parse_error)
                return respond_error(http::status::bad_request, "bad request\n");
            return close();  // peer closed, timeout, socket error, stop()
        }
        handle(parser_->release());
    }

    void handle(const http::request<http::empty_body>& request) {
        response_ = {};
        response_.version(request.version());
        response_.keep_alive(request.keep_alive());
        response_.set(http::field::content_type, "text/plain; charset=utf-8");
        std::string_view target(request.target().data(), request.target().size());
        if (auto query = target.find('?'); query != std::string_view::npos)
            target = target.substr(0, query);
        const bool head = request.method() == http::verb::head;
        if (request.method() != http::verb::get && !head) {
            response_.result(http::status::method_not_allowed);
            response_.set(http::field::allow, "GET, HEAD");
            response_.body() = "method not allowed: /metrics is read-only (GET, HEAD)\n";
        } else if (target != "/metrics") {
            response_.result(http::status::not_found);
            response_.body() = "not found: metrics are at /metrics\n";
        } else {
            try {
                response_.body() = server_->provider();
                response_.result(http::status::ok);
                response_.set(http::field::content_type, kContentType);
            } catch (const std::exception& e) {
                response_.result(http::status::internal_server_error);
                response_.body() = std::string("metrics unavailable: ") + e.what() + "\n";
            }
        }
        response_.prepare_payload();
        if (head)
            response_.body().clear();  // the length of what GET would send, no body
        write(!response_.keep_alive());
    }

    void respond_error(http::status status, std::string body) {
        response_ = {};
        response_.version(11);
        response_.result(status);
        response_.keep_alive(false);
        response_.set(http::field::content_type, "text/plain; charset=utf-8");
        response_.body() = std::move(body);
        response_.prepare_payload();
        write(true);
    }

    void write(bool close_after) {
        stream_.expires_after(server_->options.timeout);
        http::async_write(stream_, response_,
                          [self = shared_from_this(), close_after](beast::error_code ec, std::size_t) {
                              if (ec || self->server_->stopped)
                                  return self->close();
                              if (close_after)
                                  return self->graceful_close();
                              self->read();
                          });
    }

    // Half-close, then read and discard what the client still sends (bounded by
    // bytes and the timeout) so that closing does not reset the connection and
    // destroy the response before the client reads it.
    void graceful_close() {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        stream_.expires_after(server_->options.timeout);
        drain();
    }

    void drain() {
        stream_.async_read_some(asio::buffer(scratch_),
                                [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                    self->drained_ += n;
                                    if (ec || self->server_->stopped || self->drained_ > kDrainLimit)
                                        return self->close();
                                    self->drain();
                                });
    }

    std::shared_ptr<MetricsServer::Impl> server_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::empty_body>> parser_;
    http::response<http::string_body> response_;
    std::array<char, 4096> scratch_{};
    std::size_t drained_ = 0;
};

void MetricsServer::Impl::accept() {
    acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
        if (self->stopped || ec == asio::error::operation_aborted)
            return;
        if (ec) {
            self->retry.expires_after(std::chrono::milliseconds(100));
            self->retry.async_wait([self](beast::error_code wait_ec) {
                if (!wait_ec && !self->stopped)
                    self->accept();
            });
            return;
        }
        if (self->sessions.size() >= self->options.max_connections) {
            beast::error_code ignored;
            socket.close(ignored);
        } else {
            std::make_shared<Session>(self, std::move(socket))->start();
        }
        self->accept();
    });
}

MetricsServer::MetricsServer(asio::io_context& io, std::string_view listen, Provider provider,
                             MetricsServerOptions options)
    : impl_(std::make_shared<Impl>(io, std::string(listen), std::move(provider), options)) {
    tcp::endpoint endpoint = parse_listen_address(listen);
    const std::string context = "metrics listen " + std::string(listen);
    beast::error_code ec;
    auto check = [&] {
        if (ec)
            throw SystemError(context, ec.value());
    };
    impl_->acceptor.open(endpoint.protocol(), ec);
    check();
    impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    check();
    impl_->acceptor.bind(endpoint, ec);
    check();
    impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    check();
    impl_->accept();
}

MetricsServer::~MetricsServer() { stop(); }

tcp::endpoint MetricsServer::local_endpoint() const {
    beast::error_code ec;
    auto endpoint = impl_->acceptor.local_endpoint(ec);
    return ec ? tcp::endpoint{} : endpoint;
}

void MetricsServer::stop() {
    if (impl_->stopped)
        return;
    impl_->stopped = true;
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
    impl_->retry.cancel();
    std::vector<std::shared_ptr<Session>> live;
    for (auto& [_, weak] : impl_->sessions) {
        if (auto session = weak.lock())
            live.push_back(std::move(session));
    }
    for (auto& session : live)
        session->close();
}

}  // namespace stickylb::metrics

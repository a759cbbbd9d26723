// SPDX-License-Identifier: Apache-2.0
#include "daemon/control_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

namespace stickylb {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using nlohmann::json;

namespace {

class RequestError : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string error_line(const std::string& message) {
    return json{{"ok", false}, {"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

bool control_peer_allowed(unsigned peer_uid, unsigned daemon_euid) {
    return peer_uid == 0 || peer_uid == daemon_euid;
}

namespace {

struct ParsedRequest {
    std::string object, verb;
    json args;
};

ParsedRequest parse_request(const std::string& line) {
    json request;
    try {
        request = json::parse(line);
    } catch (const json::parse_error& e) {
        throw RequestError(std::string("malformed request: ") + e.what());
    }
    if (!request.is_object()) throw RequestError("malformed request: not a JSON object");
    auto object = request.find("object");
    if (object == request.end() || !object->is_string())
        throw RequestError("malformed request: \"object\" missing or not a string");
    auto verb = request.find("verb");
    if (verb == request.end() || !verb->is_string())
        throw RequestError("malformed request: \"verb\" missing or not a string");
    json args = json::object();
    if (auto it = request.find("args"); it != request.end() && !it->is_null()) {
        if (!it->is_object()) throw RequestError("malformed request: \"args\" is not an object");
        args = *it;
    }
    return {object->get<std::string>(), verb->get<std::string>(), std::move(args)};
}

std::string result_line(json result) {
    return json{{"ok", true}, {"result", std::move(result)}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

void ControlServer::respond_async(const AsyncHandler& handler, const std::string& line,
                                  std::function<void(std::string)> answer) {
    auto answered = std::make_shared<bool>(false);
    auto once = [answered, answer = std::move(answer)](std::string text) {
        if (*answered) return;
        *answered = true;
        answer(std::move(text));
    };
    try {
        ParsedRequest request = parse_request(line);
        handler(request.object, request.verb, request.args, [once](json result, std::string error) {
            once(error.empty() ? result_line(std::move(result)) : error_line(error));
        });
    } catch (const std::exception& e) {
        once(error_line(e.what()));
    } catch (...) {
        once(error_line("internal error"));
    }
}

std::string ControlServer::respond(const Handler& handler, const std::string& line) {
    try {
        ParsedRequest request = parse_request(line);
        return result_line(handler(request.object, request.verb, request.args));
    } catch (const std::exception& e) {
        return error_line(e.what());
    } catch (...) {
        return error_line("internal error");
    }
}

// One connection: read a line, answer it, read the next, until EOF, an error,
// the idle timeout or stop(). `server_` is null for connections refused at
// accept time (they only get their error line).
class ControlServer::Session : public std::enable_shared_from_this<Session> {
public:
    Session(ControlServer* server, local::socket socket, std::chrono::milliseconds idle_timeout)
        : server_(server),
          socket_(std::move(socket)),
          timer_(socket_.get_executor()),
          buffer_(kMaxRequestBytes + 1),  // + the newline
          idle_timeout_(idle_timeout) {}

    void start() {
        ucred credentials{};
        socklen_t length = sizeof credentials;
        if (::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
            write(error_line(std::string("cannot read peer credentials: ") + std::strerror(errno)), true);
            return;
        }
        if (!control_peer_allowed(credentials.uid, ::geteuid())) {
            write(error_line("permission denied: uid " + std::to_string(credentials.uid) +
                             " may not use the control socket"),
                  true);
            return;
        }
        read();
    }

    void refuse(const std::string& message) { write(error_line(message), true); }

    // Closes without telling the server (the server is the caller).
    void close() {
        if (closed_) return;
        closed_ = true;
        boost::system::error_code ignored;
        timer_.cancel(ignored);
        socket_.shutdown(local::socket::shutdown_both, ignored);
        socket_.close(ignored);
    }

private:
    void finish() {
        if (closed_) return;
        close();
        if (server_) server_->remove(shared_from_this());
    }

    void read() {
        if (closed_) return;
        timer_.expires_after(idle_timeout_);
        timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
            if (ec || self->closed_) return;
            // A wait completed just before being re-armed: not idle after all.
            if (self->timer_.expiry() > std::chrono::steady_clock::now()) return;
            self->finish();
        });
        asio::async_read_until(socket_, buffer_, '\n',
                               [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                                   self->on_read(ec, n);
                               });
    }

    void on_read(const boost::system::error_code& ec, std::size_t n) {
        if (closed_) return;
        if (ec == asio::error::not_found) {  // the buffer filled up without a newline
            timer_.cancel();
            write(error_line("request too long (limit " + std::to_string(kMaxRequestBytes) +
                             " bytes per line)"),
                  true);
            return;
        }
        if (ec) {  // EOF (a partial last line is dropped) or a socket error
            finish();
            return;
        }
        std::string line(asio::buffers_begin(buffer_.data()), asio::buffers_begin(buffer_.data()) + n);
        buffer_.consume(n);
        line.pop_back();  // '\n'
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) {
            read();
            return;
        }
        timer_.cancel();
        ControlServer::respond_async(server_->handler_, line, [self = shared_from_this()](std::string answer) {
            if (self->closed_) return;
            self->write(std::move(answer), false);
        });
    }

    void write(std::string line, bool close_after) {
        auto message = std::make_shared<std::string>(std::move(line));
        message->push_back('\n');
        asio::async_write(socket_, asio::buffer(*message),
                          [self = shared_from_this(), message, close_after](const boost::system::error_code& ec,
                                                                           std::size_t) {
                              if (self->closed_) return;
                              if (ec || close_after) {
                                  self->finish();
                                  return;
                              }
                              self->read();
                          });
    }

    ControlServer* server_;
    local::socket socket_;
    asio::steady_timer timer_;
    asio::streambuf buffer_;
    std::chrono::milliseconds idle_timeout_;
    bool closed_ = false;
};

namespace {

ControlServer::AsyncHandler answering_at_once(ControlServer::Handler handler) {
    if (!handler) return nullptr;
    return [handler = std::move(handler)](const std::string& object, const std::string& verb, const json& args,
                                          ControlServer::Reply reply) { reply(handler(object, verb, args), ""); };
}

}  // namespace

ControlServer::ControlServer(asio::io_context& io, const std::string& path, Handler handler)
    : ControlServer(io, path, answering_at_once(std::move(handler))) {}

ControlServer::ControlServer(asio::io_context& io, const std::string& path, AsyncHandler handler)
    : io_(io), path_(path), handler_(std::move(handler)), acceptor_(io) {
    namespace fs = std::filesystem;
    if (!handler_) throw std::invalid_argument("control socket " + path + ": no handler");
    try {
        local::endpoint endpoint(path);  // throws if the path is too long for sun_path
        fs::path parent = fs::path(path).parent_path();
        if (!parent.empty()) fs::create_directories(parent);

        struct stat st{};
        if (::lstat(path.c_str(), &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) throw std::runtime_error("exists and is not a socket");
            local::socket probe(io);
            boost::system::error_code ec;
            probe.connect(endpoint, ec);
            if (!ec) throw std::runtime_error("another process is listening on it");
            if (::unlink(path.c_str()) != 0 && errno != ENOENT)
                throw std::runtime_error(std::string("cannot remove stale socket: ") + std::strerror(errno));
        }
        acceptor_.open(endpoint.protocol());
        acceptor_.bind(endpoint);
        if (::chmod(path.c_str(), 0600) != 0) {
            int error = errno;
            ::unlink(path.c_str());
            throw std::runtime_error(std::string("chmod 0600: ") + std::strerror(error));
        }
        acceptor_.listen();
    } catch (const std::exception& e) {
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        throw std::runtime_error("control socket " + path + ": " + e.what());
    }
    accept();
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, local::socket socket) {
        if (stopped_ || ec == asio::error::operation_aborted) return;
        if (!ec) {
            if (sessions_.size() >= kMaxConnections) {
                auto refused = std::make_shared<Session>(nullptr, std::move(socket), idle_timeout_);
                refused->refuse("too many connections (limit " + std::to_string(kMaxConnections) + ")");
            } else {
                auto session = std::make_shared<Session>(this, std::move(socket), idle_timeout_);
                sessions_.insert(session);
                session->start();
            }
        }
        accept();
    });
}

void ControlServer::remove(const std::shared_ptr<Session>& session) { sessions_.erase(session); }

void ControlServer::stop() {
    if (stopped_) return;
    stopped_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    auto sessions = std::move(sessions_);
    sessions_.clear();
    for (const auto& session : sessions) session->close();
    ::unlink(path_.c_str());
}

}  // namespace stickylb

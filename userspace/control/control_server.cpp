// SPDX-License-Identifier: Apache-2.0
#include "control/control_server.h"

#include "base/bounded_json.h"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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

bool control_peer_allowed(unsigned peer_uid, unsigned daemon_euid) { return peer_uid == 0 || peer_uid == daemon_euid; }

bool control_peer_allowed(const ControlPeer& peer, unsigned daemon_euid, std::optional<unsigned> group) {
    if (control_peer_allowed(peer.uid, daemon_euid))
        return true;
    if (!group)
        return false;
    return peer.gid == *group || std::find(peer.groups.begin(), peer.groups.end(), *group) != peer.groups.end();
}

unsigned control_group_id(const std::string& name) {
    std::vector<char> buffer(16 * 1024);
    group entry{};
    group* found = nullptr;
    int error = 0;
    while ((error = ::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found)) == ERANGE &&
           buffer.size() < 1024 * 1024)
        buffer.resize(buffer.size() * 2);
    if (error != 0)
        throw std::runtime_error("control socket group " + name + ": " + std::strerror(error));
    if (found == nullptr)
        throw std::runtime_error("control socket group " + name + ": no such group");
    return found->gr_gid;
}

namespace {

// The connecting process's credentials; its supplementary groups only when a
// group is configured (they are all that could matter then).
ControlPeer peer_of(int fd, bool with_groups) {
    ucred credentials{};
    socklen_t length = sizeof credentials;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0)
        throw std::runtime_error(std::string("cannot read peer credentials: ") + std::strerror(errno));
    ControlPeer peer{credentials.uid, credentials.gid, {}};
    if (!with_groups)
        return peer;
    std::vector<gid_t> groups(64);
    for (;;) {
        socklen_t bytes = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &bytes) == 0) {
            groups.resize(bytes / sizeof(gid_t));
            break;
        }
        if (errno != ERANGE || bytes <= groups.size() * sizeof(gid_t))
            throw std::runtime_error(std::string("cannot read peer groups: ") + std::strerror(errno));
        groups.resize(bytes / sizeof(gid_t));  // the kernel said how many there are
    }
    peer.groups.assign(groups.begin(), groups.end());
    return peer;
}

struct ParsedRequest {
    std::string object, verb;
    json args;
};

ParsedRequest parse_request(const std::string& line) {
    json request;
    try {
        request = parse_json_bounded(line, ControlServer::kMaxRequestDepth);
    } catch (const JsonTooDeep& e) {
        throw RequestError(std::string("malformed request: ") + e.what());
    } catch (const json::parse_error& e) {
        throw RequestError(std::string("malformed request: ") + e.what());
    }
    if (!request.is_object())
        throw RequestError("malformed request: not a JSON object");
    auto object = request.find("object");
    if (object == request.end() || !object->is_string())
        throw RequestError("malformed request: \"object\" missing or not a string");
    auto verb = request.find("verb");
    if (verb == request.end() || !verb->is_string())
        throw RequestError("malformed request: \"verb\" missing or not a string");
    json args = json::object();
    if (auto it = request.find("args"); it != request.end() && !it->is_null()) {
        if (!it->is_object())
            throw RequestError("malformed request: \"args\" is not an object");
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
        if (*answered)
            return;
        *answered = true;
        answer(std::move(text));
    };
    try {
        ParsedRequest request = parse_request(line);
        handler(request.object, request.verb, request.args, [once](json result, const std::string& error) {
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
          idle_timeout_(idle_timeout),
          tokens_(server ? server->options_.rate_burst : 0),
          refilled_(std::chrono::steady_clock::now()) {}

    void start() {
        const std::optional<unsigned> group = server_->options_.group;
        ControlPeer peer;
        try {
            peer = peer_of(socket_.native_handle(), group.has_value());
        } catch (const std::exception& e) {
            write(error_line(e.what()), true);
            return;
        }
        if (!control_peer_allowed(peer, ::geteuid(), group)) {
            write(error_line("permission denied: uid " + std::to_string(peer.uid) + " may not use the control socket"),
                  true);
            return;
        }
        read();
    }

    void refuse(const std::string& message) { write(error_line(message), true); }

    // Closes without telling the server (the server is the caller).
    void close() {
        if (closed_)
            return;
        closed_ = true;
        boost::system::error_code ignored;
        timer_.cancel(ignored);
        socket_.shutdown(local::socket::shutdown_both, ignored);
        socket_.close(ignored);
    }

private:
    void finish() {
        if (closed_)
            return;
        close();
        if (server_)
            server_->remove(shared_from_this());
    }

    // new_request: a request is awaited from now, within the idle timeout; a
    // blank line read meanwhile does not move that deadline.
    void read(bool new_request = true) {
        if (closed_)
            return;
        if (!new_request) {
            asio::async_read_until(socket_, buffer_, '\n',
                                   [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                                       self->on_read(ec, n);
                                   });
            return;
        }
        timer_.expires_after(idle_timeout_);
        timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
            if (ec || self->closed_)
                return;
            // A wait completed just before being re-armed: not idle after all.
            if (self->timer_.expiry() > std::chrono::steady_clock::now())
                return;
            self->finish();
        });
        asio::async_read_until(
            socket_, buffer_, '\n',
            [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) { self->on_read(ec, n); });
    }

    void on_read(const boost::system::error_code& ec, std::size_t n) {
        if (closed_)
            return;
        if (ec == asio::error::not_found) {  // the buffer filled up without a newline
            timer_.cancel();
            write(error_line("request too long (limit " + std::to_string(kMaxRequestBytes) + " bytes per line)"), true);
            return;
        }
        if (ec) {  // EOF (a partial last line is dropped) or a socket error
            finish();
            return;
        }
        std::string line(asio::buffers_begin(buffer_.data()), asio::buffers_begin(buffer_.data()) + n);
        buffer_.consume(n);
        line.pop_back();  // '\n'
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) {
            read(/*new_request=*/false);
            return;
        }
        timer_.cancel();
        if (!take_token()) {
            const ControlOptions& options = server_->options_;
            write(error_line("rate limit exceeded (" + std::to_string(static_cast<long>(options.rate_burst)) +
                             " requests at once, then " + std::to_string(static_cast<long>(options.rate_per_second)) +
                             " per second per connection)"),
                  true);
            return;
        }
        ControlServer::respond_async(server_->handler_, line, [self = shared_from_this()](std::string answer) {
            if (self->closed_)
                return;
            self->write(std::move(answer), false);
        });
    }

    // The token bucket: refilled for the time since the last request.
    bool take_token() {
        const auto now = std::chrono::steady_clock::now();
        const double elapsed = std::chrono::duration<double>(now - refilled_).count();
        refilled_ = now;
        tokens_ = std::min(server_->options_.rate_burst, tokens_ + elapsed * server_->options_.rate_per_second);
        if (tokens_ < 1)
            return false;
        tokens_ -= 1;
        return true;
    }

    void write(std::string line, bool close_after) {
        auto message = std::make_shared<std::string>(std::move(line));
        message->push_back('\n');
        asio::async_write(
            socket_, asio::buffer(*message),
            [self = shared_from_this(), message, close_after](const boost::system::error_code& ec, std::size_t) {
                if (self->closed_)
                    return;
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
    double tokens_;
    std::chrono::steady_clock::time_point refilled_;
    bool closed_ = false;
};

namespace {

ControlServer::AsyncHandler answering_at_once(ControlServer::Handler handler) {
    if (!handler)
        return nullptr;
    return [handler = std::move(handler)](const std::string& object, const std::string& verb, const json& args,
                                          ControlServer::Reply reply) { reply(handler(object, verb, args), ""); };
}

}  // namespace

ControlServer::ControlServer(asio::io_context& io, const std::string& path, Handler handler, ControlOptions options)
    : ControlServer(io, path, answering_at_once(std::move(handler)), options) {}

ControlServer::ControlServer(asio::io_context& io, const std::string& path, AsyncHandler handler,
                             ControlOptions options)
    : path_(path), handler_(std::move(handler)), options_(options), acceptor_(io) {
    namespace fs = std::filesystem;
    if (!handler_)
        throw std::invalid_argument("control socket " + path + ": no handler");
    if (!(options_.rate_burst >= 1) || !(options_.rate_per_second > 0))
        throw std::invalid_argument("control socket " + path + ": rate limit needs a burst >= 1 and a rate > 0");
    try {
        local::endpoint endpoint(path);  // throws if the path is too long for sun_path
        fs::path parent = fs::path(path).parent_path();
        if (!parent.empty())
            fs::create_directories(parent);

        struct stat st {};
        if (::lstat(path.c_str(), &st) == 0) {
            if (!S_ISSOCK(st.st_mode))
                throw std::runtime_error("exists and is not a socket");
            local::socket probe(io);
            boost::system::error_code ec;
            probe.connect(endpoint, ec);
            if (!ec)
                throw std::runtime_error("another process is listening on it");
            if (::unlink(path.c_str()) != 0 && errno != ENOENT)
                throw std::runtime_error(std::string("cannot remove stale socket: ") + std::strerror(errno));
        }
        acceptor_.open(endpoint.protocol());
        acceptor_.bind(endpoint);
        const auto unlink_and_fail = [&](const std::string& what) {
            const int error = errno;
            ::unlink(path.c_str());
            throw std::runtime_error(what + ": " + std::strerror(error));
        };
        // chown before chmod: the group's members get in only once the group is right.
        if (options_.group && ::chown(path.c_str(), static_cast<uid_t>(-1), *options_.group) != 0)
            unlink_and_fail("chown to group " + std::to_string(*options_.group));
        const mode_t mode = options_.group ? 0660 : 0600;
        if (::chmod(path.c_str(), mode) != 0)
            unlink_and_fail(options_.group ? "chmod 0660" : "chmod 0600");
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
        if (stopped_ || ec == asio::error::operation_aborted)
            return;
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
    if (stopped_)
        return;
    stopped_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    auto sessions = std::move(sessions_);
    sessions_.clear();
    for (const auto& session : sessions)
        session->close();
    ::unlink(path_.c_str());
}

}  // namespace stickylb

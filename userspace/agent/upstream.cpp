// SPDX-License-Identifier: Apache-2.0
// UpstreamServer: lazily opened, pipelined connections to one memcached server.
//
// Ownership: UpstreamServer owns an Impl through a shared_ptr; every Connection
// holds a shared_ptr to the Impl and every async operation holds a shared_ptr
// to its Connection, so an operation that completes after the UpstreamServer is
// gone still finds live memory. The destructor calls close(), which marks every
// Connection closed (their late handlers then return without doing anything)
// and drops them from the Impl, which breaks the Impl <-> Connection cycle.
//
// Completion: callers' handlers are always posted to the executor, never run
// inline, and capture nothing of ours; so a handler may call call() or close()
// or destroy the UpstreamServer, and handlers still queued when the server is
// destroyed run normally (with connection_lost for those close() failed).
//
// When a connection fails, its requests complete in the order they were
// queued: with timeout for those whose deadline passed, protocol for the one
// whose reply did not frame, connect_failed if the connection never opened,
// and connection_lost for everything else that was pending on it.
//
// Matching is positional, so each request must draw exactly the reply its
// shape says. Shape none suits classic noreply (memcached then suppresses even
// errors); a quiet meta command ("q") still draws error lines, which would be
// taken as the next request's reply, or, with nothing awaiting, close the
// connection as out of step (protocol).
//
// Reply::line for the values and stats shapes is the line that ended the
// reply ("END" or an error line): the VALUE and STAT lines are parsed into
// values and stats_lines.
//
// Counters: `connects` counts connections established, `connect_failures`
// failed attempts (resolve, connect or connect timeout), `errors` requests
// completed with an error, fast server_down failures included.
#include "agent/upstream.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <deque>
#include <iterator>
#include <stdexcept>

#include "base/host_port.h"

namespace stickylb::agent {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::chrono::milliseconds initial_backoff{100};
constexpr std::chrono::milliseconds max_backoff{2000};
constexpr std::size_t read_chunk = 16 * 1024;

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }

template <class Integer>
bool parse_decimal(std::string_view text, Integer& value) {
    if (text.empty())
        return false;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    return error == std::errc{} && end == text.data() + text.size();
}

// Splits off the next space-separated token of `rest`.
std::string_view next_token(std::string_view& rest) {
    while (!rest.empty() && rest.front() == ' ')
        rest.remove_prefix(1);
    auto end = std::min(rest.find(' '), rest.size());
    auto token = rest.substr(0, end);
    rest.remove_prefix(end);
    return token;
}

}  // namespace

// ---------------------------------------------------------------- ServerAddress

std::string ServerAddress::name() const { return HostPort{host, port}.text(); }

ServerAddress ServerAddress::parse(std::string_view text) {
    try {
        HostPort parsed = parse_host_port(text);
        return ServerAddress{std::move(parsed.host), parsed.port};
    } catch (const std::invalid_argument& error) {
        throw std::invalid_argument(std::string("memcached server ") + error.what());
    }
}

// ---------------------------------------------------------------- errors

namespace {

class UpstreamCategory : public std::error_category {
public:
    const char* name() const noexcept override { return "stickylb.upstream"; }
    std::string message(int value) const override {
        switch (static_cast<UpstreamError>(value)) {
        case UpstreamError::server_down: return "memcached server marked down (connect backoff)";
        case UpstreamError::connect_failed: return "could not connect to the memcached server";
        case UpstreamError::timeout: return "memcached request timed out";
        case UpstreamError::connection_lost: return "connection to the memcached server lost";
        case UpstreamError::protocol: return "memcached reply does not frame as expected";
        }
        return "unknown upstream error";
    }
};

}  // namespace

const std::error_category& upstream_category() {
    static const UpstreamCategory category;
    return category;
}

std::error_code make_error_code(UpstreamError error) { return {static_cast<int>(error), upstream_category()}; }

// ---------------------------------------------------------------- Reply

std::string_view Reply::meta_code() const {
    std::string_view rest = line;
    return next_token(rest);
}

std::optional<std::string_view> Reply::flag(char name) const {
    std::string_view rest = line;
    auto code = next_token(rest);
    if (code.size() != 2)
        return std::nullopt;  // ERROR, CLIENT_ERROR ...: no flags
    if (code == "VA")
        next_token(rest);  // the data length
    for (auto token = next_token(rest); !token.empty(); token = next_token(rest)) {
        if (token.front() == name)
            return token.substr(1);
    }
    return std::nullopt;
}

// ---------------------------------------------------------------- framing

namespace {

// Bytes read and not yet framed: one contiguous region, compacted or grown
// only when the free space behind it runs short.
class ReadBuffer {
public:
    asio::mutable_buffer prepare(std::size_t min_free) {
        if (storage_.size() - tail_ < min_free) {
            if (head_ > 0) {
                std::memmove(storage_.data(), storage_.data() + head_, tail_ - head_);
                tail_ -= head_;
                head_ = 0;
            }
            if (storage_.size() - tail_ < min_free)
                storage_.resize(std::max(storage_.size() * 2, tail_ + min_free));
        }
        return asio::buffer(storage_.data() + tail_, storage_.size() - tail_);
    }
    void commit(std::size_t bytes) { tail_ += bytes; }
    std::string_view data() const { return {storage_.data() + head_, tail_ - head_}; }
    std::size_t size() const { return tail_ - head_; }
    void consume(std::size_t bytes) {
        head_ += bytes;
        if (head_ == tail_) {
            head_ = tail_ = 0;
            if (storage_.size() > 4 * read_chunk) {  // after one large reply, do not keep its memory
                storage_.resize(read_chunk);
                storage_.shrink_to_fit();
            }
        }
    }

private:
    std::vector<char> storage_;
    std::size_t head_ = 0;
    std::size_t tail_ = 0;
};

// Frames one reply at a time, resuming where it stopped when more bytes arrive.
class ReplyFramer {
public:
    enum class Status { need_more, complete, invalid };

    Status parse(ReadBuffer& in, ReplyShape shape, std::size_t max_bytes, Reply& reply) {
        auto status = step(in, shape, max_bytes, reply);
        if (status != Status::need_more)
            *this = ReplyFramer{};
        return status;
    }

private:
    enum class Stage { line, meta_data, value_data };

    Status step(ReadBuffer& in, ReplyShape shape, std::size_t max_bytes, Reply& reply) {
        for (;;) {
            if (stage_ != Stage::line) {
                if (in.size() < data_bytes_ + 2)
                    return Status::need_more;
                auto block = in.data().substr(0, data_bytes_ + 2);
                if (block.substr(data_bytes_) != "\r\n")
                    return Status::invalid;
                auto& target = stage_ == Stage::meta_data ? reply.data : reply.values.back().data;
                target.assign(block.data(), data_bytes_);
                in.consume(block.size());
                if (stage_ == Stage::meta_data)
                    return Status::complete;
                stage_ = Stage::line;
                continue;
            }
            auto available = in.data();
            auto end = available.find("\r\n", scanned_);
            if (end == std::string_view::npos) {
                if (reply_bytes_ + available.size() > max_bytes)
                    return Status::invalid;
                scanned_ = available.empty() ? 0 : available.size() - 1;  // a '\r' may end it
                return Status::need_more;
            }
            std::string line(available.substr(0, end));
            in.consume(end + 2);
            scanned_ = 0;
            reply_bytes_ += end + 2;
            if (reply_bytes_ > max_bytes)
                return Status::invalid;

            switch (shape) {
            case ReplyShape::line:
            case ReplyShape::none: reply.line = std::move(line); return Status::complete;
            case ReplyShape::meta:
                if (starts_with(line, "VA ")) {
                    std::string_view rest = std::string_view(line).substr(3);
                    if (!parse_decimal(next_token(rest), data_bytes_) || !expect_data(max_bytes))
                        return Status::invalid;
                    stage_ = Stage::meta_data;
                    reply.line = std::move(line);
                    continue;
                }
                reply.line = std::move(line);
                return Status::complete;
            case ReplyShape::values:
                if (starts_with(line, "VALUE ")) {
                    std::string_view rest = std::string_view(line).substr(6);
                    Reply::Value value;
                    value.key = std::string(next_token(rest));
                    auto flags = next_token(rest);
                    auto bytes = next_token(rest);
                    auto cas = next_token(rest);
                    if (value.key.empty() || !parse_decimal(flags, value.flags) || !parse_decimal(bytes, data_bytes_))
                        return Status::invalid;
                    if (!cas.empty()) {
                        std::uint64_t unique = 0;
                        if (!parse_decimal(cas, unique))
                            return Status::invalid;
                        value.cas = unique;
                    }
                    if (!expect_data(max_bytes))
                        return Status::invalid;
                    reply.values.push_back(std::move(value));
                    stage_ = Stage::value_data;
                    continue;
                }
                reply.line = std::move(line);  // END, or an error line
                return Status::complete;
            case ReplyShape::stats:
                if (starts_with(line, "STAT ")) {
                    reply.stats_lines.push_back(std::move(line));
                    continue;
                }
                reply.line = std::move(line);  // END, or a single-line answer (RESET, OK, an error)
                return Status::complete;
            }
            return Status::invalid;
        }
    }

    bool expect_data(std::size_t max_bytes) {
        if (data_bytes_ > max_bytes || reply_bytes_ + data_bytes_ + 2 > max_bytes)
            return false;
        reply_bytes_ += data_bytes_ + 2;
        return true;
    }

    Stage stage_ = Stage::line;
    std::size_t data_bytes_ = 0;   // the data block being waited for, without its "\r\n"
    std::size_t reply_bytes_ = 0;  // bytes of this reply framed or announced so far
    std::size_t scanned_ = 0;      // bytes at the front known to hold no "\r\n"
};

struct Pending {
    std::uint64_t sequence = 0;
    std::string wire;  // emptied once copied into a write
    ReplyShape shape = ReplyShape::line;
    UpstreamServer::Handler done;
    Clock::time_point deadline;
};

class Connection;

}  // namespace

// ---------------------------------------------------------------- Impl

struct UpstreamServer::Impl : std::enable_shared_from_this<UpstreamServer::Impl> {
    Impl(asio::any_io_executor executor_, ServerAddress address_, UpstreamOptions options_)
        : executor(std::move(executor_)),
          address(std::move(address_)),
          name(address.name()),
          options(options_),
          connections(std::max<std::size_t>(options.connections, 1)) {}

    void call(std::string wire, ReplyShape shape, Handler done);
    void close();
    bool up() const { return Clock::now() >= down_until; }

    // Every completion goes through here: posted, never inline, counted.
    void complete(Handler done, std::error_code error, Reply reply = {}) {
        if (error)
            ++counters.errors;
        if (!done)
            return;
        asio::post(executor, [done = std::move(done), error, reply = std::move(reply)]() mutable {
            done(error, std::move(reply));
        });
    }

    void connect_succeeded() {
        ++counters.connects;
        down_until = {};
        backoff = initial_backoff;
    }

    void connect_failed() {
        ++counters.connect_failures;
        auto now = Clock::now();
        if (closed || now < down_until)
            return;  // another connection's failure already started this backoff
        down_until = now + backoff;
        backoff = std::min(backoff * 2, max_backoff);
    }

    void forget(const Connection* connection, std::size_t slot);

    asio::any_io_executor executor;
    ServerAddress address;
    std::string name;
    UpstreamOptions options;
    UpstreamCounters counters;
    std::vector<std::shared_ptr<Connection>> connections;  // null: not open
    std::size_t next_connection = 0;
    std::uint64_t next_sequence = 0;
    Clock::time_point down_until{};
    std::chrono::milliseconds backoff = initial_backoff;
    bool closed = false;
};

// ---------------------------------------------------------------- Connection

namespace {

// One TCP connection: resolve + connect under connect_timeout, then requests
// written in queue order (everything queued while a write is in flight goes
// out in the next single write) and replies matched to them in that order.
class Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(std::shared_ptr<UpstreamServer::Impl> server, std::size_t slot)
        : server_(std::move(server)),
          slot_(slot),
          socket_(server_->executor),
          resolver_(server_->executor),
          connect_timer_(server_->executor),
          deadline_timer_(server_->executor) {}

    void open() {
        connect_timer_.expires_after(server_->options.connect_timeout);
        connect_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
            if (!error && !self->closed_ && !self->connected_)
                self->on_connect_failed();
        });
        boost::system::error_code not_numeric;
        auto numeric = asio::ip::make_address(server_->address.host, not_numeric);
        if (!not_numeric) {
            socket_.async_connect(
                tcp::endpoint(numeric, server_->address.port),
                [self = shared_from_this()](const boost::system::error_code& error) { self->on_connected(error); });
            return;
        }
        resolver_.async_resolve(server_->address.host, std::to_string(server_->address.port),
                                tcp::resolver::numeric_service,
                                [self = shared_from_this()](const boost::system::error_code& error,
                                                            const tcp::resolver::results_type& results) {
                                    if (self->closed_)
                                        return;
                                    if (error)
                                        return self->on_connect_failed();
                                    asio::async_connect(self->socket_, results,
                                                        [self](const boost::system::error_code& error,
                                                               const tcp::endpoint&) { self->on_connected(error); });
                                });
    }

    void enqueue(Pending request) {
        queued_.push_back(std::move(request));
        arm_deadline();
        write();
    }

    // Closes the connection and completes everything pending on it (see the
    // top of the file for which request gets which error). Idempotent.
    void fail(UpstreamError cause) {
        if (closed_)
            return;
        closed_ = true;
        boost::system::error_code ignored;
        socket_.close(ignored);
        resolver_.cancel();
        connect_timer_.cancel();
        deadline_timer_.cancel();
        server_->forget(this, slot_);

        std::optional<std::uint64_t> unframed;
        if (cause == UpstreamError::protocol && !awaiting_.empty())
            unframed = awaiting_.front().sequence;
        std::vector<Pending> requests;
        requests.reserve(awaiting_.size() + written_noreply_.size() + queued_.size());
        for (auto* source : {&awaiting_, &queued_})
            std::move(source->begin(), source->end(), std::back_inserter(requests));
        std::move(written_noreply_.begin(), written_noreply_.end(), std::back_inserter(requests));
        awaiting_.clear();
        queued_.clear();
        written_noreply_.clear();
        std::sort(requests.begin(), requests.end(),
                  [](const Pending& a, const Pending& b) { return a.sequence < b.sequence; });

        auto now = Clock::now();
        for (auto& request : requests) {
            auto error = UpstreamError::connection_lost;
            if (cause == UpstreamError::connect_failed)
                error = UpstreamError::connect_failed;
            else if (cause == UpstreamError::timeout && request.deadline <= now)
                error = UpstreamError::timeout;
            else if (unframed == request.sequence)
                error = UpstreamError::protocol;
            server_->complete(std::move(request.done), error);
        }
    }

private:
    void on_connect_failed() {
        server_->connect_failed();
        fail(UpstreamError::connect_failed);
    }

    void on_connected(const boost::system::error_code& error) {
        if (closed_)
            return;
        if (error)
            return on_connect_failed();
        connected_ = true;
        connect_timer_.cancel();
        server_->connect_succeeded();
        boost::system::error_code ignored;
        socket_.set_option(tcp::no_delay(true), ignored);
        read();
        write();
    }

    void write() {
        if (!connected_ || writing_ || queued_.empty())
            return;
        writing_ = true;
        if (queued_.size() == 1) {
            write_buffer_ = std::move(queued_.front().wire);
        } else {
            write_buffer_.clear();
            for (auto& request : queued_)
                write_buffer_ += request.wire;
        }
        // Requests move to awaiting_ before their bytes leave: a reply can never
        // precede its request there, whatever order the handlers run in.
        for (auto& request : queued_) {
            request.wire = {};
            if (request.shape == ReplyShape::none)
                written_noreply_.push_back(std::move(request));
            else
                awaiting_.push_back(std::move(request));
        }
        queued_.clear();
        asio::async_write(socket_, asio::buffer(write_buffer_),
                          [self = shared_from_this()](const boost::system::error_code& error, std::size_t) {
                              self->on_written(error);
                          });
    }

    void on_written(const boost::system::error_code& error) {
        writing_ = false;
        if (closed_)
            return;
        if (error)
            return fail(UpstreamError::connection_lost);
        for (auto& request : written_noreply_)
            server_->complete(std::move(request.done), {});
        written_noreply_.clear();
        write();
    }

    void read() {
        socket_.async_read_some(in_.prepare(read_chunk),
                                [self = shared_from_this()](const boost::system::error_code& error, std::size_t bytes) {
                                    self->on_read(error, bytes);
                                });
    }

    void on_read(const boost::system::error_code& error, std::size_t bytes) {
        if (closed_)
            return;
        if (error)  // with nothing pending (memcached's idle timeout) this closes quietly
            return fail(UpstreamError::connection_lost);
        in_.commit(bytes);
        while (in_.size() > 0) {
            if (awaiting_.empty())
                return fail(UpstreamError::protocol);  // bytes nobody asked for: the stream is out of step
            auto status = framer_.parse(in_, awaiting_.front().shape, server_->options.max_reply_bytes, reply_);
            if (status == ReplyFramer::Status::need_more)
                break;
            if (status == ReplyFramer::Status::invalid)
                return fail(UpstreamError::protocol);
            server_->complete(std::move(awaiting_.front().done), {}, std::exchange(reply_, Reply{}));
            awaiting_.pop_front();
        }
        read();
    }

    std::optional<Clock::time_point> earliest_deadline() const {
        std::optional<Clock::time_point> earliest;
        auto consider = [&](const auto& requests) {
            if (!requests.empty() && (!earliest || requests.front().deadline < *earliest))
                earliest = requests.front().deadline;
        };
        consider(awaiting_);
        consider(written_noreply_);
        consider(queued_);
        return earliest;
    }

    // One timer per connection, set for the oldest request: deadlines are
    // queue time + a constant, so a later request never expires earlier.
    void arm_deadline() {
        if (deadline_armed_ || closed_)
            return;
        auto earliest = earliest_deadline();
        if (!earliest)
            return;
        deadline_armed_ = true;
        deadline_timer_.expires_at(*earliest);
        deadline_timer_.async_wait([self = shared_from_this()](const boost::system::error_code&) {
            self->deadline_armed_ = false;
            self->on_deadline();
        });
    }

    void on_deadline() {
        if (closed_)
            return;
        auto earliest = earliest_deadline();
        auto now = Clock::now();
        if (earliest && *earliest <= now) {
            if (connected_)
                return fail(UpstreamError::timeout);
            // Nothing written yet, so nothing to fall out of step: fail only the
            // expired requests and let the connect (and its own timeout) go on.
            while (!queued_.empty() && queued_.front().deadline <= now) {
                server_->complete(std::move(queued_.front().done), UpstreamError::timeout);
                queued_.pop_front();
            }
        }
        arm_deadline();
    }

    std::shared_ptr<UpstreamServer::Impl> server_;
    std::size_t slot_;
    tcp::socket socket_;
    tcp::resolver resolver_;
    asio::steady_timer connect_timer_;
    asio::steady_timer deadline_timer_;
    bool connected_ = false;
    bool closed_ = false;
    bool writing_ = false;
    bool deadline_armed_ = false;

    std::deque<Pending> queued_;            // not written yet
    std::vector<Pending> written_noreply_;  // noreply requests in the write in flight
    std::deque<Pending> awaiting_;          // written (or being written), reply expected
    std::string write_buffer_;
    ReadBuffer in_;
    ReplyFramer framer_;
    Reply reply_;  // the reply being framed for awaiting_.front()
};

}  // namespace

void UpstreamServer::Impl::forget(const Connection* connection, std::size_t slot) {
    if (slot < connections.size() && connections[slot].get() == connection)
        connections[slot].reset();
}

void UpstreamServer::Impl::call(std::string wire, ReplyShape shape, Handler done) {
    ++counters.requests;
    if (closed)
        return complete(std::move(done), UpstreamError::connection_lost);
    auto now = Clock::now();
    if (now < down_until)
        return complete(std::move(done), UpstreamError::server_down);
    auto slot = next_connection++ % connections.size();
    auto connection = connections[slot];
    if (!connection) {
        connection = std::make_shared<Connection>(shared_from_this(), slot);
        connections[slot] = connection;
        connection->open();
    }
    connection->enqueue(
        Pending{next_sequence++, std::move(wire), shape, std::move(done), now + options.request_timeout});
}

void UpstreamServer::Impl::close() {
    closed = true;
    auto open = connections;  // fail() clears the slots
    for (auto& connection : open) {
        if (connection)
            connection->fail(UpstreamError::connection_lost);
    }
}

// ---------------------------------------------------------------- UpstreamServer

UpstreamServer::UpstreamServer(asio::any_io_executor executor, ServerAddress address, UpstreamOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(address), options)) {}

UpstreamServer::~UpstreamServer() { close(); }

const ServerAddress& UpstreamServer::address() const { return impl_->address; }
const std::string& UpstreamServer::name() const { return impl_->name; }
bool UpstreamServer::up() const { return impl_->up(); }
const UpstreamCounters& UpstreamServer::counters() const { return impl_->counters; }

void UpstreamServer::call(std::string wire, ReplyShape shape, Handler done) {
    impl_->call(std::move(wire), shape, std::move(done));
}

void UpstreamServer::close() { impl_->close(); }

}  // namespace stickylb::agent

// SPDX-License-Identifier: Apache-2.0
#include "agent/protocol.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <climits>
#include <cstring>
#include <span>
#include <system_error>

namespace stickylb::agent {
namespace {

// Decisions where this parser is stricter than, or differs from, memcached
// 1.6.18 (checked against a live server):
// - A wrong number of tokens is "CLIENT_ERROR bad command line format" (memcached
//   says "ERROR"), and so is a trailing token that is not "noreply" (memcached
//   ignores it) or a flags value above 2^32-1 (memcached wraps it).
// - Keys with control characters are refused (memcached only splits on spaces).
// - A storage command whose line is refused but whose <bytes> token is readable
//   has its data block skipped, so the data is never parsed as commands
//   (memcached 1.6 only does this for "object too large").
// - A command line longer than the limit ends the connection with
//   "CLIENT_ERROR line too long" (memcached closes silently, and only when it
//   has not seen the line's end within its read buffer). Whether a line is too
//   long depends only on its length, never on how it was split across reads.
//   After it, the parser ignores further input and next() says need_more.
// - A get/gets with more than max_keys_per_get keys is refused with
//   "CLIENT_ERROR too many keys" (memcached has no such limit).
// Like memcached, an error caused by a line that ends in "noreply" is not
// answered: a client that asked for no reply does not read one, and an
// unexpected reply would be taken as the answer to its next request. Such
// requests come back as `rejected` with an empty reply.

constexpr std::string_view kBadFormat = "bad command line format";
constexpr std::string_view kNoreply = "noreply";
// memcached refuses a <bytes> above INT_MAX - 2 as a bad command line, without
// skipping any data block; below that, a block is skipped however large.
constexpr std::uint64_t kMaxDataBytes = INT_MAX - 2;
// A buffer emptied after a large request gives its memory back rather than
// holding it for the connection's lifetime.
constexpr std::size_t kKeptCapacity = 64 * 1024;
// Consumed bytes are erased once they are at least this many and at least half
// the buffer: the erase then moves no more than it frees.
constexpr std::size_t kCompactAfter = 4096;

struct CommandSpelling {
    std::string_view name;
    Command command;
};
constexpr std::array<CommandSpelling, 16> kCommands{{
    {"get", Command::get},
    {"gets", Command::gets},
    {"set", Command::set},
    {"add", Command::add},
    {"replace", Command::replace},
    {"append", Command::append},
    {"prepend", Command::prepend},
    {"cas", Command::cas},
    {"delete", Command::del},
    {"touch", Command::touch},
    {"incr", Command::incr},
    {"decr", Command::decr},
    {"version", Command::version},
    {"quit", Command::quit},
    {"verbosity", Command::verbosity},
    {"stats", Command::stats},
}};

std::optional<Command> find_command(std::string_view name) {
    for (const auto& spelling : kCommands) {
        if (spelling.name == name)
            return spelling.command;
    }
    return std::nullopt;
}

// Arguments a command needs before an optional trailing "noreply" (so that
// "delete noreply" deletes the key "noreply"); 0 when it takes no "noreply".
std::size_t arguments_before_noreply(Command command) {
    switch (command) {
    case Command::set:
    case Command::add:
    case Command::replace:
    case Command::append:
    case Command::prepend: return 4;
    case Command::cas: return 5;
    case Command::del:
    case Command::verbosity: return 1;
    case Command::touch:
    case Command::incr:
    case Command::decr: return 2;
    default: return 0;
    }
}

std::string_view last_token(std::string_view line) {
    line = line.substr(0, line.find_last_not_of(' ') + 1);  // npos + 1 == 0: all spaces
    return line.substr(line.rfind(' ') + 1);                // npos + 1 == 0: one token
}

// The whole token, in plain decimal: no sign for unsigned types, no '+', no spaces.
template <typename Number>
std::optional<Number> parse_number(std::string_view token) {
    Number value{};
    const char* end = token.data() + token.size();
    auto [stop, error] = std::from_chars(token.data(), end, value);
    if (token.empty() || error != std::errc{} || stop != end)
        return std::nullopt;
    return value;
}

}  // namespace

std::string_view command_name(Command command) {
    for (const auto& spelling : kCommands) {
        if (spelling.command == command)
            return spelling.name;
    }
    return "unknown";
}

bool is_storage(Command command) {
    switch (command) {
    case Command::set:
    case Command::add:
    case Command::replace:
    case Command::append:
    case Command::prepend:
    case Command::cas: return true;
    default: return false;
    }
}

std::string client_error(std::string_view message) {
    std::string line;
    line.reserve(message.size() + 15);
    line.append("CLIENT_ERROR ").append(message).append("\r\n");
    return line;
}

std::string server_error(std::string_view message) {
    std::string line;
    line.reserve(message.size() + 15);
    line.append("SERVER_ERROR ").append(message).append("\r\n");
    return line;
}

std::string value_reply(std::string_view key, std::uint32_t flags, std::string_view data,
                        std::optional<std::uint64_t> cas) {
    auto append_number = [](std::string& out, std::uint64_t value) {
        char digits[20];
        out.push_back(' ');
        out.append(digits, std::to_chars(digits, digits + sizeof digits, value).ptr);
    };
    std::string reply;
    reply.reserve(key.size() + data.size() + 80);
    reply.append("VALUE ").append(key);
    append_number(reply, flags);
    append_number(reply, data.size());
    if (cas)
        append_number(reply, *cas);
    reply.append("\r\n").append(data).append("\r\n");
    return reply;
}

std::optional<std::string> key_problem(std::string_view key, const ProtocolLimits& limits) {
    if (key.empty())
        return "key is empty";
    if (key.size() > limits.max_key_bytes) {
        return "key is " + std::to_string(key.size()) + " bytes, longer than the limit of " +
               std::to_string(limits.max_key_bytes);
    }
    for (std::size_t i = 0; i < key.size(); ++i) {
        const auto byte = static_cast<unsigned char>(key[i]);
        if (byte <= 0x20 || byte == 0x7f) {
            static constexpr char kHex[] = "0123456789abcdef";
            return std::string("key contains a space or control character (0x") + kHex[byte >> 4] + kHex[byte & 0xf] +
                   ") at offset " + std::to_string(i);
        }
    }
    return std::nullopt;
}

RequestParser::RequestParser(ProtocolLimits limits) : limits_(limits) {
    // Multi-gets carry many keys on one line: their lines may be as long as
    // max_keys_per_get keys of the longest size with their separating spaces,
    // plus room for "gets" and the line end. Every other line keeps the plain
    // limit, so a client that never ends its line is cut off after 2 KiB.
    multiget_line_bytes_ =
        std::max(limits_.max_line_bytes, limits_.max_keys_per_get * (limits_.max_key_bytes + 1) + 16);
}

void RequestParser::feed(std::string_view bytes) {
    if (phase_ == Phase::closed)
        return;
    if (consumed_ == buffer_.size()) {
        if (buffer_.capacity() > kKeptCapacity) {
            std::string().swap(buffer_);
        } else {
            buffer_.clear();
        }
        consumed_ = 0;
    } else if (consumed_ >= kCompactAfter && consumed_ * 2 >= buffer_.size()) {
        buffer_.erase(0, consumed_);
        consumed_ = 0;
    }
    buffer_.append(bytes);
}

std::size_t RequestParser::buffered_bytes() const {
    const std::size_t partial_data = phase_ == Phase::data ? pending_.data.size() : 0;
    return buffer_.size() - consumed_ + partial_data;
}

bool RequestParser::mid_request() const {
    if (phase_ == Phase::closed)
        return false;
    return phase_ != Phase::line || buffer_.size() > consumed_;
}

RequestParser::Result RequestParser::next() {
    for (;;) {
        switch (phase_) {
        case Phase::closed: return {};
        case Phase::line: {
            std::optional<std::string_view> line = take_line();
            if (!line)
                return line_too_long() ? fail_line_too_long() : Result{};
            Result result = parse_line(*line);
            if (result.status != Status::need_more)
                return result;
            break;  // a storage command: its data block follows
        }
        case Phase::data: {
            const std::string_view unread = std::string_view(buffer_).substr(consumed_);
            const std::size_t wanted = data_bytes_ - pending_.data.size();
            const std::size_t taken = std::min(wanted, unread.size());
            pending_.data.append(unread.data(), taken);
            consumed_ += taken;
            if (taken < wanted || unread.size() - taken < 2)
                return {};
            const bool terminated = unread.substr(taken, 2) == "\r\n";
            Result result;
            if (terminated) {
                consumed_ += 2;
                result.status = Status::request;
                result.request = std::move(pending_);
                phase_ = Phase::line;
            } else {
                // Where the block should have ended there is something
                // else: the client miscounted. What follows is junk up to
                // the next line end, counted from the block's expected end
                // (so "helloX\r\n" for 5 bytes loses only "X\r\n").
                result = reject(client_error("bad data chunk"), pending_.noreply);
                resync_skipped_ = 0;
                phase_ = Phase::resync;
            }
            pending_ = Request{};
            return result;
        }
        case Phase::swallow: {
            const std::size_t skipped = std::min(swallow_, buffer_.size() - consumed_);
            consumed_ += skipped;
            swallow_ -= skipped;
            if (swallow_ > 0)
                return {};
            phase_ = Phase::line;
            break;
        }
        case Phase::resync: {
            // The junk is discarded like a command line would be, under the
            // same length limit.
            const std::size_t unread = buffer_.size() - consumed_;
            const void* newline = std::memchr(buffer_.data() + consumed_, '\n', unread);
            const std::size_t junk =
                newline ? static_cast<std::size_t>(static_cast<const char*>(newline) - (buffer_.data() + consumed_))
                        : unread;
            resync_skipped_ += junk;
            consumed_ += junk;
            if (resync_skipped_ > limits_.max_line_bytes + 1)
                return fail_line_too_long();
            if (!newline)
                return {};
            consumed_ += 1;
            phase_ = Phase::line;
            break;
        }
        }
    }
}

std::optional<std::string_view> RequestParser::take_line() {
    const std::size_t unread = buffer_.size() - consumed_;
    const char* start = buffer_.data() + consumed_;
    const void* newline = std::memchr(start + line_scanned_, '\n', unread - line_scanned_);
    if (!newline) {
        line_scanned_ = unread;
        return std::nullopt;
    }
    std::size_t length = static_cast<std::size_t>(static_cast<const char*>(newline) - start);
    consumed_ += length + 1;
    line_scanned_ = 0;
    if (length > 0 && start[length - 1] == '\r')
        --length;
    return std::string_view(start, length);
}

std::size_t RequestParser::line_limit(std::string_view line_start) const {
    // Decided on the first max_line_bytes bytes only, so that an unfinished
    // line and the same line finished get the same limit.
    line_start = line_start.substr(0, limits_.max_line_bytes);
    const std::size_t first = line_start.find_first_not_of(' ');
    if (first == std::string_view::npos)
        return limits_.max_line_bytes;
    line_start.remove_prefix(first);
    if (line_start.starts_with("get ") || line_start.starts_with("gets "))
        return multiget_line_bytes_;
    return limits_.max_line_bytes;
}

bool RequestParser::line_too_long() const {
    // An unfinished line may still hold its final '\r'.
    const std::string_view unread = std::string_view(buffer_).substr(consumed_);
    return unread.size() > limits_.max_line_bytes + 1 && unread.size() > line_limit(unread) + 1;
}

RequestParser::Result RequestParser::fail_line_too_long() {
    phase_ = Phase::closed;
    std::string().swap(buffer_);
    consumed_ = 0;
    line_scanned_ = 0;
    Result result;
    result.status = Status::fatal;
    result.reply = client_error("line too long");
    return result;
}

RequestParser::Result RequestParser::reject(std::string reply, bool noreply) {
    Result result;
    result.status = Status::rejected;
    if (!noreply)
        result.reply = std::move(reply);
    return result;
}

RequestParser::Result RequestParser::parse_line(std::string_view line) {
    if (line.size() > line_limit(line))
        return fail_line_too_long();

    // Tokens beyond what any command accepts are not stored: every command but
    // get/gets is refused by its token count already, get/gets by its key count.
    const std::size_t max_tokens = std::max<std::size_t>(8, limits_.max_keys_per_get + 1);
    tokens_.clear();
    bool too_many_tokens = false;
    std::size_t position = 0;
    while (position < line.size()) {
        const std::size_t start = line.find_first_not_of(' ', position);
        if (start == std::string_view::npos)
            break;
        if (tokens_.size() == max_tokens) {
            too_many_tokens = true;
            break;
        }
        std::size_t end = line.find(' ', start);
        if (end == std::string_view::npos)
            end = line.size();
        tokens_.push_back(line.substr(start, end - start));
        position = end;
    }

    if (tokens_.empty())
        return reject("ERROR\r\n", false);
    const std::optional<Command> command = find_command(tokens_[0]);
    if (!command)
        return reject("ERROR\r\n", false);
    const std::size_t before_noreply = arguments_before_noreply(*command);
    const bool noreply = before_noreply > 0 && tokens_.size() - 1 > before_noreply && last_token(line) == kNoreply;

    Result result;
    result.status = Status::request;
    Request& request = result.request;
    request.command = *command;
    const std::span<const std::string_view> args(tokens_.data() + 1, tokens_.size() - 1);
    auto valid_key = [&](std::string_view key) { return !key_problem(key, limits_); };
    auto bad_format = [&] { return reject(client_error(kBadFormat), noreply); };

    switch (*command) {
    case Command::get:
    case Command::gets: {
        if (args.empty())
            return bad_format();
        if (too_many_tokens || args.size() > limits_.max_keys_per_get) {
            return reject(client_error("too many keys"), false);
        }
        if (!std::all_of(args.begin(), args.end(), valid_key))
            return bad_format();
        request.keys.assign(args.begin(), args.end());
        return result;
    }
    case Command::set:
    case Command::add:
    case Command::replace:
    case Command::append:
    case Command::prepend:
    case Command::cas: return parse_storage(request, noreply);
    case Command::del: {
        if (args.empty())
            return bad_format();
        // "delete <key> 0" is an old form memcached still accepts.
        const bool valid_tail = args.size() == 1 || (args.size() == 2 && (args[1] == "0" || noreply)) ||
                                (args.size() == 3 && args[1] == "0" && noreply);
        if (!valid_tail) {
            return reject(client_error("bad command line format.  Usage: delete <key> [noreply]"), noreply);
        }
        if (!valid_key(args[0]))
            return bad_format();
        request.keys.emplace_back(args[0]);
        request.noreply = noreply;
        return result;
    }
    case Command::touch:
    case Command::incr:
    case Command::decr: {
        if (args.size() != 2 + (noreply ? 1 : 0) || !valid_key(args[0]))
            return bad_format();
        request.keys.emplace_back(args[0]);
        request.noreply = noreply;
        if (*command == Command::touch) {
            const auto exptime = parse_number<std::int64_t>(args[1]);
            if (!exptime)
                return reject(client_error("invalid exptime argument"), noreply);
            request.exptime = *exptime;
        } else {
            const auto delta = parse_number<std::uint64_t>(args[1]);
            if (!delta)
                return reject(client_error("invalid numeric delta argument"), noreply);
            request.delta = *delta;
        }
        return result;
    }
    case Command::version:
    case Command::quit:
        if (!args.empty())
            return bad_format();
        return result;
    case Command::verbosity:
        if (args.size() != 1 + (noreply ? 1 : 0) || !parse_number<std::uint32_t>(args[0]))
            return bad_format();
        request.argument = args[0];
        request.noreply = noreply;
        return result;
    case Command::stats:
        if (args.size() > 1)
            return bad_format();
        if (!args.empty())
            request.argument = args[0];
        return result;
    }
    return reject("ERROR\r\n", false);
}

RequestParser::Result RequestParser::parse_storage(Request& request, bool noreply) {
    // key flags exptime bytes [cas] [noreply]
    const std::span<const std::string_view> args(tokens_.data() + 1, tokens_.size() - 1);
    auto arg = [&](std::size_t i) { return i < args.size() ? args[i] : std::string_view(); };
    const std::size_t fields = request.command == Command::cas ? 5 : 4;
    const std::uint64_t bytes = parse_number<std::uint64_t>(arg(3)).value_or(kMaxDataBytes + 1);
    const bool block_follows = bytes <= kMaxDataBytes;

    auto refuse = [&](std::string reply) {
        // The client sends the data block anyway: skip it rather than read
        // it as commands.
        if (block_follows) {
            swallow_ = bytes + 2;
            phase_ = Phase::swallow;
        }
        return reject(std::move(reply), noreply);
    };

    const auto flags = parse_number<std::uint32_t>(arg(1));
    const auto exptime = parse_number<std::int64_t>(arg(2));
    const auto cas_unique = parse_number<std::uint64_t>(arg(4));
    const bool valid = args.size() == fields + (noreply ? 1 : 0) && !key_problem(args[0], limits_) && flags &&
                       exptime && block_follows && (request.command != Command::cas || cas_unique);
    if (!valid)
        return refuse(client_error(kBadFormat));
    if (bytes > limits_.max_value_bytes)
        return refuse(server_error("object too large for cache"));

    request.keys.emplace_back(args[0]);
    request.flags = *flags;
    request.exptime = *exptime;
    if (request.command == Command::cas)
        request.cas_unique = *cas_unique;
    request.noreply = noreply;
    pending_ = std::move(request);
    // The block grows as it arrives: a client that announces 1 MiB and sends
    // nothing holds nothing.
    pending_.data.reserve(std::min<std::size_t>(bytes, kKeptCapacity));
    data_bytes_ = bytes;
    phase_ = Phase::data;
    return {};
}

}  // namespace stickylb::agent

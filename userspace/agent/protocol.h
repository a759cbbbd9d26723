// SPDX-License-Identifier: Apache-2.0
#pragma once
// The memcached text protocol as stickylb-agent's clients speak it
// (memcached's doc/protocol.txt, "Commands"): an incremental request parser
// that validates what it reads, and the reply lines the agent writes.
//
// Limits follow memcached's defaults: keys 1..250 bytes of printable ASCII
// without spaces or control characters, values up to 1 MiB, command lines up
// to 2048 bytes. Bad input never desynchronises the stream: the parser answers
// the request with an error reply, skips exactly what belongs to it (a storage
// command's data block when its length was readable) and goes on with the next
// command. Only input it cannot frame at all (a command line with no "\r\n"
// within the limit) ends the connection, as memcached does.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stickylb::agent {

enum class Command {
    get,
    gets,  // keys..., one or more
    set,
    add,
    replace,
    append,
    prepend,
    cas,    // key flags exptime bytes [cas] [noreply] + data
    del,    // "delete" key [0] [noreply]
    touch,  // key exptime [noreply]
    incr,
    decr,  // key delta [noreply]
    version,
    quit,
    verbosity,
    stats,  // verbosity level [noreply]; stats [argument]
};

std::string_view command_name(Command command);  // the wire spelling: "delete" for del
// set, add, replace, append, prepend, cas: the commands that carry a data block.
bool is_storage(Command command);

struct ProtocolLimits {
    std::size_t max_key_bytes = 250;
    std::size_t max_value_bytes = 1024 * 1024;
    std::size_t max_line_bytes = 2048;  // a command line, without its "\r\n"
    std::size_t max_keys_per_get = 1024;
};

struct Request {
    Command command = Command::version;
    std::vector<std::string> keys;  // get/gets: 1..N; storage, delete, touch, incr/decr: exactly 1
    std::uint32_t flags = 0;        // storage: client flags (0..2^32-1)
    std::int64_t exptime = 0;       // storage, touch: as sent (may be negative: expired at once)
    std::uint64_t cas_unique = 0;   // cas
    std::uint64_t delta = 0;        // incr/decr: 64-bit unsigned
    std::string data;               // storage: the data block, without its "\r\n"
    bool noreply = false;           // storage, delete, touch, incr/decr, verbosity
    std::string argument;           // stats: its optional argument ("" if none); verbosity: the level
};

class RequestParser {
public:
    explicit RequestParser(ProtocolLimits limits = {});

    // Appends received bytes; then call next() until it says need_more.
    void feed(std::string_view bytes);

    enum class Status {
        need_more,  // no complete request buffered
        request,    // `request` holds a valid request
        rejected,   // `reply` holds the error to send ("ERROR\r\n", "CLIENT_ERROR ...\r\n",
                    // "SERVER_ERROR object too large for cache\r\n"); the stream goes on
        fatal,      // `reply` holds the error to send, then close the connection
    };
    struct Result {
        Status status = Status::need_more;
        Request request;
        std::string reply;
    };
    Result next();

    std::size_t buffered_bytes() const;  // bytes fed but not consumed yet
    // Part of a request has arrived (a line, a data block, or a refused block
    // being skipped) and the rest has not.
    bool mid_request() const;

private:
    enum class Phase {
        line,     // reading a command line
        data,     // reading the data block of `pending_`
        swallow,  // skipping the data block of a rejected storage command
        resync,   // after a bad data chunk: skipping to the next line end
        closed,   // after a fatal error: input is ignored
    };
    std::optional<std::string_view> take_line();
    std::size_t line_limit(std::string_view line_start) const;
    bool line_too_long() const;
    Result parse_line(std::string_view line);
    Result parse_storage(Request& request, bool noreply);
    Result reject(std::string reply, bool noreply);
    Result fail_line_too_long();

    ProtocolLimits limits_;
    std::size_t multiget_line_bytes_ = 0;  // line limit for get/gets
    std::string buffer_;
    std::size_t consumed_ = 0;      // start of unparsed input in buffer_
    std::size_t line_scanned_ = 0;  // bytes after consumed_ already searched for '\n'
    Phase phase_ = Phase::line;
    Request pending_;             // storage command waiting for its data block
    std::size_t data_bytes_ = 0;  // length of pending_'s data block
    std::size_t swallow_ = 0;     // bytes of a rejected data block still to skip
    std::size_t resync_skipped_ = 0;
    std::vector<std::string_view> tokens_;  // of the line being parsed; kept for its capacity
};

// Reply pieces, "\r\n" included.
std::string value_reply(std::string_view key, std::uint32_t flags, std::string_view data,
                        std::optional<std::uint64_t> cas = std::nullopt);  // "VALUE k f n [cas]\r\ndata\r\n"
inline constexpr std::string_view kEnd = "END\r\n";
inline constexpr std::string_view kStored = "STORED\r\n";
inline constexpr std::string_view kNotStored = "NOT_STORED\r\n";
inline constexpr std::string_view kExists = "EXISTS\r\n";
inline constexpr std::string_view kNotFound = "NOT_FOUND\r\n";
inline constexpr std::string_view kDeleted = "DELETED\r\n";
inline constexpr std::string_view kTouched = "TOUCHED\r\n";
inline constexpr std::string_view kOk = "OK\r\n";
std::string client_error(std::string_view message);  // "CLIENT_ERROR message\r\n"
std::string server_error(std::string_view message);  // "SERVER_ERROR message\r\n"

// A key as memcached accepts it; returns the problem, or nullopt when valid.
std::optional<std::string> key_problem(std::string_view key, const ProtocolLimits& limits = {});

}  // namespace stickylb::agent

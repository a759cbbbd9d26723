// SPDX-License-Identifier: Apache-2.0
// stickylb-agent's memcached text protocol parser (agent/protocol.h) on
// arbitrary client bytes. The first six input bytes pick the limits (the
// defaults, or small ones that make every limit reachable) and how the rest is
// cut into reads. Invariants:
// - the results do not depend on how the bytes were split into reads;
// - a request never carries a key memcached would refuse (empty, too long, a
//   space or control character): such a key could split one memcached command
//   into two; keys per command as the protocol says; data within the limit;
// - an error reply is one protocol line ("ERROR", "CLIENT_ERROR ...",
//   "SERVER_ERROR ...", ending in "\r\n"), or empty for noreply;
// - after a fatal error nothing more is parsed;
// - what the parser buffers stays bounded by the limits (a client cannot make
//   the agent hold more than one line or one value).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "agent/protocol.h"
#include "fuzz/fuzz_check.h"

namespace {

using namespace stickylb::agent;
using Status = RequestParser::Status;

struct Outcome {
    Status status;
    Request request;
    std::string reply;
    bool operator==(const Outcome& other) const {
        return status == other.status && reply == other.reply && request.command == other.request.command &&
               request.keys == other.request.keys && request.flags == other.request.flags &&
               request.exptime == other.request.exptime && request.cas_unique == other.request.cas_unique &&
               request.delta == other.request.delta && request.data == other.request.data &&
               request.noreply == other.request.noreply && request.argument == other.request.argument;
    }
};

void check_outcome(const Outcome& outcome, const ProtocolLimits& limits) {
    if (outcome.status == Status::request) {
        const Request& request = outcome.request;
        for (const auto& key : request.keys)
            FUZZ_CHECK(!key_problem(key, limits), "every key of a request is one memcached accepts");
        for (const auto& key : request.keys) {
            FUZZ_CHECK(std::none_of(key.begin(), key.end(),
                                    [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; }),
                       "no key holds a space or control character");
        }
        if (request.command == Command::get || request.command == Command::gets) {
            FUZZ_CHECK(!request.keys.empty() && request.keys.size() <= limits.max_keys_per_get, "1..N keys per get");
        } else if (is_storage(request.command) || request.command == Command::del ||
                   request.command == Command::touch || request.command == Command::incr ||
                   request.command == Command::decr) {
            FUZZ_CHECK(request.keys.size() == 1, "one key per command");
        } else {
            FUZZ_CHECK(request.keys.empty(), "no keys for version, quit, verbosity, stats");
        }
        FUZZ_CHECK(request.data.size() <= limits.max_value_bytes, "values within the limit");
        if (!is_storage(request.command))
            FUZZ_CHECK(request.data.empty(), "only storage commands carry data");
        return;
    }
    const std::string& reply = outcome.reply;
    if (outcome.status == Status::rejected && reply.empty())
        return;  // noreply
    FUZZ_CHECK(reply.size() >= 2 && reply.ends_with("\r\n"), "an error reply ends in \\r\\n");
    FUZZ_CHECK(reply.find('\n') == reply.size() - 1, "an error reply is one line");
    FUZZ_CHECK(reply == "ERROR\r\n" || reply.starts_with("CLIENT_ERROR ") || reply.starts_with("SERVER_ERROR "),
               "an error reply is ERROR, CLIENT_ERROR or SERVER_ERROR");
}

// Feeds the chunks, draining the parser after each; returns every outcome.
std::vector<Outcome> run(const ProtocolLimits& limits, const std::vector<std::string_view>& chunks) {
    const std::size_t multiget_line =
        std::max(limits.max_line_bytes, limits.max_keys_per_get * (limits.max_key_bytes + 1) + 16);
    const std::size_t bound = std::max(multiget_line, limits.max_value_bytes) + 2;
    RequestParser parser(limits);
    std::vector<Outcome> outcomes;
    bool closed = false;
    for (std::string_view chunk : chunks) {
        parser.feed(chunk);
        for (;;) {
            RequestParser::Result result = parser.next();
            if (result.status == Status::need_more)
                break;
            FUZZ_CHECK(!closed, "nothing is parsed after a fatal error");
            Outcome outcome{result.status, std::move(result.request), std::move(result.reply)};
            check_outcome(outcome, limits);
            closed = outcome.status == Status::fatal;
            outcomes.push_back(std::move(outcome));
        }
        FUZZ_CHECK(parser.buffered_bytes() <= bound, "the parser holds at most one line or one value");
    }
    return outcomes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Header: [small limits?] [key] [value] [line] [keys per get] [chunk size]
    constexpr std::size_t kHeader = 6;
    if (size < kHeader)
        return 0;
    ProtocolLimits limits;
    if (data[0] & 1) {
        limits.max_key_bytes = 1 + data[1] % 16;
        limits.max_value_bytes = data[2] % 65;
        limits.max_line_bytes = 8 + data[3] % 57;
        limits.max_keys_per_get = 1 + data[4] % 8;
    }
    const std::size_t cut = 1 + data[5] % 7;  // the read size of the split run
    std::string_view input(reinterpret_cast<const char*>(data) + kHeader, size - kHeader);

    std::vector<Outcome> whole = run(limits, {input});
    std::vector<std::string_view> chunks;
    for (std::size_t at = 0; at < input.size(); at += cut)
        chunks.push_back(input.substr(at, cut));
    std::vector<Outcome> split = run(limits, chunks);
    FUZZ_CHECK(whole == split, "the same outcomes however the input was split into reads");
    return 0;
}

// SPDX-License-Identifier: Apache-2.0
#include "agent/protocol.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace stickylb::agent {
namespace {

using Status = RequestParser::Status;
using Result = RequestParser::Result;
using namespace std::string_literals;

std::string escaped(std::string_view bytes) {
    std::string out;
    for (const char c : bytes) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '\r') {
            out += "\\r";
        } else if (c == '\n') {
            out += "\\n";
        } else if (byte < 0x20 || byte >= 0x7f) {
            static constexpr char kHex[] = "0123456789abcdef";
            out += "\\x";
            out += kHex[byte >> 4];
            out += kHex[byte & 0xf];
        } else {
            out += c;
        }
    }
    return out;
}

// Every field, so that comparing descriptions compares results.
std::string describe(const Result& result) {
    switch (result.status) {
    case Status::need_more: return "need_more";
    case Status::rejected: return "rejected '" + escaped(result.reply) + "'";
    case Status::fatal: return "fatal '" + escaped(result.reply) + "'";
    case Status::request: break;
    }
    const Request& r = result.request;
    std::string out = "request " + std::string(command_name(r.command)) + " keys=[";
    for (const auto& key : r.keys)
        out += escaped(key) + ",";
    out += "] flags=" + std::to_string(r.flags) + " exptime=" + std::to_string(r.exptime) +
           " cas=" + std::to_string(r.cas_unique) + " delta=" + std::to_string(r.delta) +
           " noreply=" + std::to_string(r.noreply) + " argument='" + escaped(r.argument) + "' data='" +
           escaped(r.data) + "'";
    return out;
}

// Feeds `input` `chunk` bytes at a time, taking every result after each feed.
std::vector<Result> parse_in_chunks(std::string_view input, std::size_t chunk, ProtocolLimits limits = {}) {
    RequestParser parser(limits);
    std::vector<Result> results;
    for (std::size_t offset = 0; offset < input.size(); offset += chunk) {
        parser.feed(input.substr(offset, chunk));
        for (Result result = parser.next(); result.status != Status::need_more; result = parser.next()) {
            results.push_back(std::move(result));
        }
    }
    return results;
}

std::vector<std::string> describe_all(const std::vector<Result>& results) {
    std::vector<std::string> out;
    for (const auto& result : results)
        out.push_back(describe(result));
    return out;
}

std::vector<Result> parse(std::string_view input, ProtocolLimits limits = {}) {
    return parse_in_chunks(input, std::max<std::size_t>(input.size(), 1), limits);
}

// Whole and byte-at-a-time feeding must agree; returns the results.
std::vector<Result> parse_both_ways(std::string_view input, ProtocolLimits limits = {}) {
    std::vector<Result> whole = parse(input, limits);
    EXPECT_EQ(describe_all(whole), describe_all(parse_in_chunks(input, 1, limits))) << escaped(input);
    return whole;
}

Request only_request(std::string_view input) {
    const std::vector<Result> results = parse_both_ways(input);
    EXPECT_EQ(results.size(), 1u) << escaped(input);
    if (results.empty())
        return {};
    EXPECT_EQ(results[0].status, Status::request) << describe(results[0]);
    return results[0].request;
}

const std::string kVersionRequest =
    "request version keys=[] flags=0 exptime=0 cas=0 delta=0 noreply=0 argument='' data=''";

TEST(AgentProtocol, GetAndGetsCarryEveryKey) {
    Request get = only_request("get session:abc\r\n");
    EXPECT_EQ(get.command, Command::get);
    EXPECT_EQ(get.keys, std::vector<std::string>{"session:abc"});

    Request gets = only_request("gets a bb ccc\r\n");
    EXPECT_EQ(gets.command, Command::gets);
    EXPECT_EQ(gets.keys, (std::vector<std::string>{"a", "bb", "ccc"}));
    EXPECT_FALSE(gets.noreply);
}

TEST(AgentProtocol, StorageCommandsCarryEveryField) {
    const std::pair<std::string, Command> commands[] = {{"set", Command::set},
                                                        {"add", Command::add},
                                                        {"replace", Command::replace},
                                                        {"append", Command::append},
                                                        {"prepend", Command::prepend}};
    for (const auto& [name, command] : commands) {
        Request r = only_request(name + " sess 4294967295 -1 5\r\nhello\r\n");
        EXPECT_EQ(r.command, command) << name;
        EXPECT_EQ(r.keys, std::vector<std::string>{"sess"});
        EXPECT_EQ(r.flags, 4294967295u);
        EXPECT_EQ(r.exptime, -1);
        EXPECT_EQ(r.data, "hello");
        EXPECT_FALSE(r.noreply);

        Request quiet = only_request(name + " sess 7 1440 0 noreply\r\n\r\n");
        EXPECT_EQ(quiet.command, command);
        EXPECT_EQ(quiet.flags, 7u);
        EXPECT_EQ(quiet.exptime, 1440);
        EXPECT_EQ(quiet.data, "");
        EXPECT_TRUE(quiet.noreply);
    }
}

TEST(AgentProtocol, CasCarriesItsUniqueValue) {
    Request r = only_request("cas k 3 9223372036854775807 2 18446744073709551615\r\nhi\r\n");
    EXPECT_EQ(r.command, Command::cas);
    EXPECT_EQ(r.keys, std::vector<std::string>{"k"});
    EXPECT_EQ(r.flags, 3u);
    EXPECT_EQ(r.exptime, 9223372036854775807);
    EXPECT_EQ(r.cas_unique, 18446744073709551615ull);
    EXPECT_EQ(r.data, "hi");
    EXPECT_FALSE(r.noreply);
    EXPECT_TRUE(only_request("cas k 0 0 2 12 noreply\r\nhi\r\n").noreply);
}

TEST(AgentProtocol, DeleteAcceptsTheOldZeroAndNoreply) {
    for (const std::string line : {"delete k\r\n", "delete k 0\r\n"}) {
        Request r = only_request(line);
        EXPECT_EQ(r.command, Command::del);
        EXPECT_EQ(r.keys, std::vector<std::string>{"k"});
        EXPECT_FALSE(r.noreply);
    }
    for (const std::string line : {"delete k noreply\r\n", "delete k 0 noreply\r\n"}) {
        Request r = only_request(line);
        EXPECT_EQ(r.keys, std::vector<std::string>{"k"});
        EXPECT_TRUE(r.noreply) << line;
    }
    // With nothing after it, "noreply" is the key.
    Request key_named_noreply = only_request("delete noreply\r\n");
    EXPECT_EQ(key_named_noreply.keys, std::vector<std::string>{"noreply"});
    EXPECT_FALSE(key_named_noreply.noreply);
}

TEST(AgentProtocol, TouchIncrDecr) {
    Request touch = only_request("touch k -30\r\n");
    EXPECT_EQ(touch.command, Command::touch);
    EXPECT_EQ(touch.keys, std::vector<std::string>{"k"});
    EXPECT_EQ(touch.exptime, -30);
    EXPECT_FALSE(touch.noreply);
    EXPECT_TRUE(only_request("touch k 60 noreply\r\n").noreply);

    Request incr = only_request("incr counter 18446744073709551615\r\n");
    EXPECT_EQ(incr.command, Command::incr);
    EXPECT_EQ(incr.keys, std::vector<std::string>{"counter"});
    EXPECT_EQ(incr.delta, 18446744073709551615ull);
    EXPECT_FALSE(incr.noreply);

    Request decr = only_request("decr counter 0 noreply\r\n");
    EXPECT_EQ(decr.command, Command::decr);
    EXPECT_EQ(decr.delta, 0u);
    EXPECT_TRUE(decr.noreply);
}

TEST(AgentProtocol, VersionQuitVerbosityStats) {
    EXPECT_EQ(only_request("version\r\n").command, Command::version);
    EXPECT_EQ(only_request("quit\r\n").command, Command::quit);

    Request verbosity = only_request("verbosity 1\r\n");
    EXPECT_EQ(verbosity.command, Command::verbosity);
    EXPECT_EQ(verbosity.argument, "1");
    EXPECT_FALSE(verbosity.noreply);
    EXPECT_TRUE(only_request("verbosity 0 noreply\r\n").noreply);

    Request stats = only_request("stats\r\n");
    EXPECT_EQ(stats.command, Command::stats);
    EXPECT_EQ(stats.argument, "");
    EXPECT_EQ(only_request("stats settings\r\n").argument, "settings");
}

TEST(AgentProtocol, SpacesAndBareNewlinesAreToleratedLikeMemcached) {
    Request r = only_request("  set   k  1   2  3  \nabc\r\n");
    EXPECT_EQ(r.command, Command::set);
    EXPECT_EQ(r.keys, std::vector<std::string>{"k"});
    EXPECT_EQ(r.flags, 1u);
    EXPECT_EQ(r.exptime, 2);
    EXPECT_EQ(r.data, "abc");
    EXPECT_EQ(only_request("get a   b\n").keys, (std::vector<std::string>{"a", "b"}));
}

TEST(AgentProtocol, DataBlocksAreBinarySafe) {
    const std::string data = "a\r\nb\0c\r\n\n\r"s;
    Request r = only_request("set k 0 0 " + std::to_string(data.size()) + "\r\n" + data + "\r\n");
    EXPECT_EQ(r.data, data);
    EXPECT_EQ(only_request("set k 0 0 2\r\n\r\n\r\n").data, "\r\n");
    EXPECT_EQ(only_request("set k 0 0 4\r\nget \r\n").data, "get ");
}

TEST(AgentProtocol, PipelinedRequestsComeOutInOrder) {
    const std::vector<Result> results = parse_both_ways("get a\r\nset b 0 0 1\r\nx\r\ndelete c\r\nversion\r\n");
    ASSERT_EQ(results.size(), 4u);
    EXPECT_EQ(results[0].request.command, Command::get);
    EXPECT_EQ(results[1].request.command, Command::set);
    EXPECT_EQ(results[1].request.data, "x");
    EXPECT_EQ(results[2].request.command, Command::del);
    EXPECT_EQ(results[3].request.command, Command::version);
}

struct BadRequest {
    std::string input;  // one request, its data block included
    std::string reply;
};

// Each is answered with its reply, and the "version" sent after it still parses.
TEST(AgentProtocol, BadRequestsAreAnsweredAndTheStreamGoesOn) {
    const std::string bad_format = "CLIENT_ERROR bad command line format\r\n";
    const std::string too_large = "SERVER_ERROR object too large for cache\r\n";
    const std::string long_key(251, 'k');
    const std::vector<BadRequest> cases = {
        {"\r\n", "ERROR\r\n"},
        {"   \r\n", "ERROR\r\n"},
        {"GET k\r\n", "ERROR\r\n"},
        {"flush_all\r\n", "ERROR\r\n"},
        {"get\r\n", bad_format},
        {"gets   \r\n", bad_format},
        {"get " + long_key + "\r\n", bad_format},
        {"get ok k\x01y\r\n", bad_format},
        {"get k\x7f\r\n", bad_format},
        {"get k\ty\r\n", bad_format},
        {"get k\r\r\n", bad_format},
        // Storage lines: the data block is skipped when <bytes> can be read.
        {"set k 0 0\r\n", bad_format},
        {"set k 0 0 5 noreply extra\r\nhello\r\n", bad_format},
        {"set k 0 0 5 extra\r\nhello\r\n", bad_format},
        {"set k 0 0 5 a b c d e f g\r\nhello\r\n", bad_format},
        {"set k abc 0 5\r\nhello\r\n", bad_format},
        {"set k -1 0 5\r\nhello\r\n", bad_format},
        {"set k 4294967296 0 5\r\nhello\r\n", bad_format},
        {"set k 0 1.5 5\r\nhello\r\n", bad_format},
        {"set k 0 +5 5\r\nhello\r\n", bad_format},
        {"set k 0 9223372036854775808 5\r\nhello\r\n", bad_format},
        {"set k 0 0 -1\r\n", bad_format},
        {"set k 0 0 x5\r\n", bad_format},
        {"set k 0 0 2147483646\r\n", bad_format},  // beyond memcached's INT_MAX - 2: no block follows
        {"set " + long_key + " 0 0 5\r\nhello\r\n", bad_format},
        {"add k\x01 0 0 5\r\nhello\r\n", bad_format},
        {"cas k 0 0 5\r\nhello\r\n", bad_format},
        {"cas k 0 0 5 abc\r\nhello\r\n", bad_format},
        {"cas k 0 0 5 -1\r\nhello\r\n", bad_format},
        {"set k 0 0 1048577\r\n" + std::string(1048577, 'v') + "\r\n", too_large},
        {"set k 0 0 5\r\nhelloXX\r\n", "CLIENT_ERROR bad data chunk\r\n"},
        {"delete\r\n", bad_format},
        {"delete k 1\r\n", "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"},
        {"delete k noreply x\r\n", "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"},
        {"delete k 0 x\r\n", "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"},
        {"delete " + long_key + "\r\n", bad_format},
        {"touch k\r\n", bad_format},
        {"touch k 1 2\r\n", bad_format},
        {"touch k abc\r\n", "CLIENT_ERROR invalid exptime argument\r\n"},
        {"touch k\x01 1\r\n", bad_format},
        {"incr k\r\n", bad_format},
        {"incr k abc\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n"},
        {"incr k -1\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n"},
        {"decr k 18446744073709551616\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n"},
        {"version extra\r\n", bad_format},
        {"quit now\r\n", bad_format},
        {"verbosity\r\n", bad_format},
        {"verbosity x\r\n", bad_format},
        {"verbosity 1 2\r\n", bad_format},
        {"stats a b\r\n", bad_format},
    };
    for (const auto& bad : cases) {
        const std::vector<Result> results = parse_both_ways(bad.input + "version\r\n");
        ASSERT_EQ(results.size(), 2u) << escaped(bad.input);
        EXPECT_EQ(results[0].status, Status::rejected) << escaped(bad.input);
        EXPECT_EQ(results[0].reply, bad.reply) << escaped(bad.input);
        EXPECT_EQ(describe(results[1]), kVersionRequest) << escaped(bad.input);
    }
}

TEST(AgentProtocol, KeysUpTo250PrintableBytesAreAccepted) {
    const std::string longest(250, 'k');
    EXPECT_EQ(only_request("get " + longest + "\r\n").keys, std::vector<std::string>{longest});
    EXPECT_EQ(only_request("set " + longest + " 0 0 1\r\nx\r\n").keys, std::vector<std::string>{longest});
    // Bytes above 0x7f are not control characters: UTF-8 keys pass, as in memcached.
    EXPECT_EQ(only_request("get s\xc3\xa9ssion\r\n").keys, std::vector<std::string>{"s\xc3\xa9ssion"});
}

TEST(AgentProtocol, OversizedValueIsSkippedWhateverHowItArrives) {
    const std::string value(1024 * 1024 + 1, 'v');
    const std::string input = "set k 0 0 " + std::to_string(value.size()) + "\r\n" + value + "\r\nget k\r\n";
    for (const std::size_t chunk : {std::size_t{7}, std::size_t{4096}, input.size()}) {
        const std::vector<Result> results = parse_in_chunks(input, chunk);
        ASSERT_EQ(results.size(), 2u);
        EXPECT_EQ(results[0].reply, "SERVER_ERROR object too large for cache\r\n");
        EXPECT_EQ(results[1].request.command, Command::get);
    }
    // The largest value allowed is accepted.
    const std::string largest(1024 * 1024, 'v');
    EXPECT_EQ(only_request("set k 0 0 1048576\r\n" + largest + "\r\n").data, largest);
}

TEST(AgentProtocol, ErrorsOnNoreplyLinesAreNotAnswered) {
    // As memcached: a client that asked for no reply must not get one, or it
    // would read it as the answer to its next request.
    const std::vector<std::string> inputs = {
        "set k abc 0 5 noreply\r\nhello\r\n",
        "set k 0 0 2000000 noreply\r\n" + std::string(2000000, 'v') + "\r\n",
        "set k 0 0 5 noreply\r\nhelloXX\r\n",
        "delete k 1 noreply\r\n",
        "incr k x noreply\r\n",
        "touch k x noreply\r\n",
    };
    for (const auto& input : inputs) {
        const std::vector<Result> results = parse(input + "version\r\n");
        ASSERT_EQ(results.size(), 2u) << escaped(input.substr(0, 40));
        EXPECT_EQ(results[0].status, Status::rejected);
        EXPECT_EQ(results[0].reply, "") << escaped(input.substr(0, 40));
        EXPECT_EQ(describe(results[1]), kVersionRequest);
    }
}

TEST(AgentProtocol, BadDataChunkSkipsToTheNextLineEndFromWhereTheBlockShouldEnd) {
    const std::string chunk_error = "rejected 'CLIENT_ERROR bad data chunk\\r\\n'";
    // One byte too many: only "X\r\n" is lost.
    EXPECT_EQ(describe_all(parse_both_ways("set k 0 0 5\r\nhelloX\r\nversion\r\n")),
              (std::vector<std::string>{chunk_error, kVersionRequest}));
    // Terminated by a bare "\n": the next line is intact.
    EXPECT_EQ(describe_all(parse_both_ways("set k 0 0 5\r\nhello\nversion\r\n")),
              (std::vector<std::string>{chunk_error, kVersionRequest}));
    // Too short: the block swallows the start of the next line, and the rest of
    // that line is lost with it.
    EXPECT_EQ(describe_all(parse_both_ways("set k 0 0 5\r\nhel\r\nget x\r\nversion\r\n")),
              (std::vector<std::string>{chunk_error, kVersionRequest}));
    // Junk without a line end is an unending command line.
    const std::vector<Result> endless = parse_both_ways("set k 0 0 1\r\nxyz" + std::string(3000, 'j'));
    EXPECT_EQ(describe_all(endless),
              (std::vector<std::string>{chunk_error, "fatal 'CLIENT_ERROR line too long\\r\\n'"}));
}

TEST(AgentProtocol, CommandLinesLongerThanTheLimitEndTheConnection) {
    const std::string at_limit(2048, 'x');
    EXPECT_EQ(describe_all(parse_both_ways(at_limit + "\r\nversion\r\n")),
              (std::vector<std::string>{"rejected 'ERROR\\r\\n'", kVersionRequest}));

    const std::string fatal = "fatal 'CLIENT_ERROR line too long\\r\\n'";
    EXPECT_EQ(describe_all(parse_both_ways(at_limit + "x\r\nversion\r\n")), std::vector<std::string>{fatal});
    EXPECT_EQ(describe_all(parse_both_ways(at_limit + "xx")), std::vector<std::string>{fatal});
    // The limit holds before the line ends, so an endless line costs bounded memory.
    RequestParser parser;
    parser.feed(at_limit + "\r");
    EXPECT_EQ(parser.next().status, Status::need_more);
    parser.feed("x");
    EXPECT_EQ(describe(parser.next()), fatal);
    // After a fatal error the connection is done: nothing more is parsed.
    parser.feed("version\r\n");
    EXPECT_EQ(parser.next().status, Status::need_more);
    EXPECT_EQ(parser.buffered_bytes(), 0u);
}

TEST(AgentProtocol, MultiGetLinesMayCarryMaxKeysOfMaxLength) {
    std::string line = "get";
    std::vector<std::string> keys;
    for (int i = 0; i < 1024; ++i) {
        std::string key = std::to_string(i) + std::string(250 - std::to_string(i).size(), 'k');
        line += " " + key;
        keys.push_back(std::move(key));
    }
    const std::vector<Result> results = parse(line + "\r\n");
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].request.keys, keys);
    EXPECT_EQ(describe_all(parse_in_chunks(line + "\r\n", 1)), describe_all(results));

    EXPECT_EQ(describe_all(parse_both_ways(line + " k\r\nversion\r\n")),
              (std::vector<std::string>{"rejected 'CLIENT_ERROR too many keys\\r\\n'", kVersionRequest}));
    std::string short_keys = "gets";
    for (int i = 0; i < 5000; ++i)
        short_keys += " k";
    EXPECT_EQ(describe_all(parse_both_ways(short_keys + "\r\nversion\r\n")),
              (std::vector<std::string>{"rejected 'CLIENT_ERROR too many keys\\r\\n'", kVersionRequest}));

    // Beyond what max_keys_per_get keys of max_key_bytes can fill, even a get line is cut off.
    const std::string endless = "get " + std::string(1024 * 251 + 16, 'k');
    EXPECT_EQ(describe_all(parse_both_ways(endless)),
              std::vector<std::string>{"fatal 'CLIENT_ERROR line too long\\r\\n'"});
}

TEST(AgentProtocol, BufferedBytesCountWhatIsNotYetARequest) {
    RequestParser parser;
    parser.feed("get a\r\nset k 0 0 10\r\n01234");
    EXPECT_EQ(parser.next().status, Status::request);
    EXPECT_EQ(parser.next().status, Status::need_more);
    EXPECT_EQ(parser.buffered_bytes(), 5u);
    parser.feed("56789\r");
    EXPECT_EQ(parser.next().status, Status::need_more);
    EXPECT_EQ(parser.buffered_bytes(), 11u);
    parser.feed("\nver");
    Result set = parser.next();
    EXPECT_EQ(set.request.data, "0123456789");
    EXPECT_EQ(parser.next().status, Status::need_more);
    EXPECT_EQ(parser.buffered_bytes(), 3u);

    // A long pipelined stream never accumulates.
    std::size_t requests = 0;
    for (int i = 0; i < 20000; ++i) {
        parser.feed("sion\r\nget key\r\nver");
        for (Result r = parser.next(); r.status != Status::need_more; r = parser.next()) {
            ASSERT_EQ(r.status, Status::request);
            ++requests;
        }
        ASSERT_EQ(parser.buffered_bytes(), 3u);
    }
    EXPECT_EQ(requests, 40000u);
}

// A mixed pipeline with every kind of framing: feeding it a byte at a time, or
// in any split, gives exactly what feeding it whole gives.
TEST(AgentProtocol, ByteAtATimeEqualsWhole) {
    const std::string pipeline =
        "get a b c\r\n"
        "set k 1 -1 6\r\na\r\nb\0c\r\n"s
        "cas k 2 3 0 99 noreply\r\n\r\n"
        "set k abc 0 3\r\nxyz\r\n"
        "set k 0 0 3\r\nxyzW\r\n"
        "\r\n"
        "  delete   k 0 noreply  \n"
        "touch k 10\r\n"
        "incr k 5\r\ndecr k x\r\n"
        "set k 0 0 1048577\r\n" +
        std::string(1048577, '\n') +
        "\r\n"
        "get " +
        std::string(251, 'k') +
        "\r\n"
        "verbosity 1 noreply\r\nstats items\r\nversion\r\nquit\r\n";
    const std::vector<Result> results = parse(pipeline);
    std::string outline;
    for (const auto& r : results) {
        outline += r.status == Status::request ? std::string(command_name(r.request.command)) : escaped(r.reply);
        outline += ";";
    }
    EXPECT_EQ(outline,
              "get;set;cas;CLIENT_ERROR bad command line format\\r\\n;CLIENT_ERROR bad data chunk\\r\\n;"
              "ERROR\\r\\n;delete;touch;incr;CLIENT_ERROR invalid numeric delta argument\\r\\n;"
              "SERVER_ERROR object too large for cache\\r\\n;CLIENT_ERROR bad command line format\\r\\n;"
              "verbosity;stats;version;quit;");
    const std::vector<std::string> whole = describe_all(results);
    EXPECT_EQ(describe_all(parse_in_chunks(pipeline, 1)), whole);
    for (const std::size_t chunk : {2, 3, 5, 13, 4096}) {
        EXPECT_EQ(describe_all(parse_in_chunks(pipeline, chunk)), whole) << chunk;
    }
}

// Random inputs built from request fragments, mutated: the parser never
// crashes, never hands out a request with a bad key, keeps its buffer bounded,
// and does not depend on how the input is split.
TEST(AgentProtocol, RandomInputsNeverBreakTheParser) {
    const std::vector<std::string> fragments = {
        "get a b\r\n",
        "gets k\r\n",
        "set k 1 2 3\r\nabc\r\n",
        "cas k 0 0 1 5\r\nx\r\n",
        "append k 0 0 2 noreply\r\nyz\r\n",
        "delete k 0\r\n",
        "touch k -1\r\n",
        "incr k 9\r\n",
        "decr k 1 noreply\r\n",
        "version\r\n",
        "stats\r\n",
        "verbosity 1\r\n",
        "quit\r\n",
        "set k 0 0 40\r\n",
        "get kkkkkkkkkk\r\n",
        "\r\n",
        "\n",
        "\r",
        " ",
        "noreply",
        "get ",
        "set ",
        "0 ",
        "18446744073709551616 ",
        std::string(1, '\0'),
        "\x7f",
        std::string(60, 'x'),
    };
    std::mt19937 rng(20240611);
    auto pick = [&](std::size_t bound) { return std::uniform_int_distribution<std::size_t>(0, bound - 1)(rng); };
    const ProtocolLimits small{.max_key_bytes = 8, .max_value_bytes = 32, .max_line_bytes = 48, .max_keys_per_get = 4};

    std::size_t requests = 0;
    for (int iteration = 0; iteration < 20000; ++iteration) {
        const ProtocolLimits limits = iteration % 2 ? small : ProtocolLimits{};
        std::string input;
        for (std::size_t n = 1 + pick(8); n > 0; --n)
            input += fragments[pick(fragments.size())];
        for (std::size_t n = pick(4); n > 0 && !input.empty(); --n) {
            const std::size_t at = pick(input.size());
            switch (pick(3)) {
            case 0: input[at] = static_cast<char>(pick(256)); break;
            case 1: input.erase(at, 1 + pick(3)); break;
            default: input.insert(at, 1 + pick(3), static_cast<char>(pick(256))); break;
            }
        }

        const std::size_t multiget_line = limits.max_keys_per_get * (limits.max_key_bytes + 1) + 16;
        const std::size_t bound = std::max({limits.max_line_bytes, multiget_line, limits.max_value_bytes}) + 2;
        RequestParser parser(limits);
        std::vector<std::string> split;
        for (std::size_t offset = 0; offset < input.size();) {
            const std::size_t chunk = 1 + pick(16);
            parser.feed(std::string_view(input).substr(offset, chunk));
            offset += chunk;
            for (Result r = parser.next(); r.status != Status::need_more; r = parser.next()) {
                split.push_back(describe(r));
                if (r.status == Status::request) {
                    ++requests;
                    for (const auto& key : r.request.keys) {
                        ASSERT_EQ(key_problem(key, limits), std::nullopt) << escaped(input);
                    }
                    ASSERT_LE(r.request.keys.size(), limits.max_keys_per_get);
                    ASSERT_LE(r.request.data.size(), limits.max_value_bytes);
                } else {
                    ASSERT_TRUE(r.reply.empty() || r.reply == "ERROR\r\n" || r.reply.starts_with("CLIENT_ERROR ") ||
                                r.reply.starts_with("SERVER_ERROR "))
                        << escaped(r.reply);
                }
            }
            ASSERT_LE(parser.buffered_bytes(), bound) << escaped(input);
        }
        ASSERT_EQ(split, describe_all(parse(input, limits))) << escaped(input);
    }
    EXPECT_GT(requests, 20000u);  // the inputs are not all noise
}

TEST(AgentProtocol, ReplyPieces) {
    EXPECT_EQ(value_reply("k", 42, "a\r\nb"), "VALUE k 42 4\r\na\r\nb\r\n");
    EXPECT_EQ(value_reply("sess", 4294967295u, "", 18446744073709551615ull),
              "VALUE sess 4294967295 0 18446744073709551615\r\n\r\n");
    EXPECT_EQ(client_error("bad data chunk"), "CLIENT_ERROR bad data chunk\r\n");
    EXPECT_EQ(server_error("out of memory"), "SERVER_ERROR out of memory\r\n");
    EXPECT_EQ(command_name(Command::del), "delete");
    EXPECT_EQ(command_name(Command::gets), "gets");
    EXPECT_EQ(command_name(Command::stats), "stats");
}

TEST(AgentProtocol, KeyProblemsNameTheProblem) {
    EXPECT_EQ(key_problem("session:abc"), std::nullopt);
    EXPECT_EQ(key_problem(std::string(250, 'k')), std::nullopt);
    EXPECT_EQ(key_problem(""), "key is empty");
    EXPECT_EQ(key_problem(std::string(251, 'k')), "key is 251 bytes, longer than the limit of 250");
    EXPECT_EQ(key_problem("ab\x01"), "key contains a space or control character (0x01) at offset 2");
    EXPECT_EQ(key_problem("a b"), "key contains a space or control character (0x20) at offset 1");
    EXPECT_EQ(key_problem("\x7f"), "key contains a space or control character (0x7f) at offset 0");
    EXPECT_EQ(key_problem("abcd", ProtocolLimits{.max_key_bytes = 3}), "key is 4 bytes, longer than the limit of 3");
}

// The agent and the fuzzer decide by it which requests carry a data block to forward.
TEST(AgentProtocol, ExactlyTheSixStorageCommandsCarryData) {
    const std::set<Command> storage = {Command::set,    Command::add,     Command::replace,
                                       Command::append, Command::prepend, Command::cas};
    for (Command command : {Command::get, Command::gets, Command::set, Command::add, Command::replace, Command::append,
                            Command::prepend, Command::cas, Command::del, Command::touch, Command::incr, Command::decr,
                            Command::version, Command::quit, Command::verbosity, Command::stats}) {
        EXPECT_EQ(is_storage(command), storage.contains(command)) << command_name(command);
    }
}

}  // namespace
}  // namespace stickylb::agent

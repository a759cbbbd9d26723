// SPDX-License-Identifier: Apache-2.0
#include "session/flow_exception_chunks.h"

#include <algorithm>
#include <charconv>

#include "base/input_checks.h"
#include "session/fleet_roster.h"

namespace stickylb::fleet {
namespace {

constexpr std::string_view kMagic = "stickylb-flow-exceptions 1 ";
constexpr std::size_t kMaxLineBytes = kMaxObservationKeyBytes + 8;
constexpr std::string_view kAffinityPrefix = "a ";
// Last-seen times past this (the year 5138) are not a clock's.
constexpr std::uint64_t kMaxSeenSeconds = 100'000'000'000;

[[noreturn]] void refuse(const std::string& why) { throw ExceptionChunkError("flow exception chunk: " + why); }

std::string header(std::string_view host, std::uint64_t version, std::size_t chunk, std::size_t chunks) {
    return std::string(kMagic) + std::string(host) + " " + std::to_string(version) + " " + std::to_string(chunk) + " " +
           std::to_string(chunks) + "\n";
}

template <typename Number>
Number number(std::string_view text, Number max, const char* what) {
    Number value{};
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc() || end != text.data() + text.size() || value > max)
        refuse(std::string(what) + " \"" + std::string(text.substr(0, 40)) + "\" is not a number up to " +
               std::to_string(max));
    return value;
}

}  // namespace

std::string exception_chunk_key(std::string_view fleet, std::string_view host, std::uint64_t version,
                                std::size_t chunk) {
    return roster_key(fleet) + ":flows:" + std::string(host) + ":" + std::to_string(version) + ":" +
           std::to_string(chunk);
}

std::vector<std::string> encode_exception_chunks(std::string_view host, std::uint64_t version,
                                                 std::span<const FlowException> exceptions,
                                                 std::size_t max_chunk_bytes) {
    // Bodies first: the header names the number of chunks.
    std::vector<std::string> bodies(1);
    const std::string* group = nullptr;  // the backend line the current body is under
    const std::size_t room = max_chunk_bytes - header(host, version, kMaxExceptionChunks, kMaxExceptionChunks).size();
    const std::size_t count = std::min(exceptions.size(), kMaxExceptions);
    for (std::size_t i = 0; i < count; ++i) {
        const FlowException& exception = exceptions[i];
        std::string line = exception.kind == ExceptionKind::affinity
                               ? std::string(kAffinityPrefix) + exception.client.to_string() + " " +
                                     std::to_string(exception.seen_s) + "\n"
                               : exception.client.to_string() + " " + std::to_string(exception.client_port) + "\n";
        const std::string group_line = "b " + exception.backend + "\n";
        if (bodies.back().size() + line.size() + group_line.size() > room) {
            if (bodies.size() == kMaxExceptionChunks)
                break;
            bodies.emplace_back();
            group = nullptr;
        }
        if (!group || *group != exception.backend) {
            bodies.back() += group_line;
            group = &exception.backend;
        }
        bodies.back() += line;
    }
    std::vector<std::string> chunks;
    for (std::size_t chunk = 0; chunk < bodies.size(); ++chunk)
        chunks.push_back(header(host, version, chunk, bodies.size()) + bodies[chunk]);
    return chunks;
}

std::vector<FlowException> decode_exception_chunk(std::string_view text, std::string_view host, std::uint64_t version,
                                                  std::size_t chunk, std::size_t chunks) {
    if (text.size() > kMaxExceptionChunkBytes)
        refuse(std::to_string(text.size()) + " bytes, more than " + std::to_string(kMaxExceptionChunkBytes));
    const std::string expected = header(host, version, chunk, chunks);
    if (text.substr(0, expected.size()) != expected)
        refuse("not chunk " + std::to_string(chunk) + " of " + std::to_string(chunks) + " of version " +
               std::to_string(version) + " of host " + std::string(host));
    text.remove_prefix(expected.size());
    std::vector<FlowException> exceptions;
    std::string backend;
    while (!text.empty()) {
        const std::size_t end = text.find('\n');
        if (end == std::string_view::npos)
            refuse("the last line has no newline");
        const std::string_view line = text.substr(0, end);
        text.remove_prefix(end + 1);
        if (line.size() > kMaxLineBytes)
            refuse("a line of more than " + std::to_string(kMaxLineBytes) + " bytes");
        if (line.starts_with("b ")) {
            backend = line.substr(2);
            if (!printable_word(backend, kMaxObservationKeyBytes))
                refuse("a backend key that is empty, too long or not printable");
            continue;
        }
        if (backend.empty())
            refuse("an exception before any backend line");
        FlowException exception;
        exception.backend = backend;
        std::string_view entry = line;
        if (entry.starts_with(kAffinityPrefix)) {
            exception.kind = ExceptionKind::affinity;
            entry.remove_prefix(kAffinityPrefix.size());
        }
        const std::size_t space = entry.find(' ');
        if (space == std::string_view::npos)
            refuse(exception.kind == ExceptionKind::affinity ? "an affinity line without a time"
                                                             : "a flow line without a port");
        try {
            exception.client = IpAddress::parse(entry.substr(0, space));
        } catch (const std::exception&) {
            refuse("\"" + std::string(entry.substr(0, std::min<std::size_t>(space, 40))) + "\" is not an address");
        }
        if (exception.kind == ExceptionKind::affinity)
            exception.seen_s = static_cast<std::int64_t>(
                number<std::uint64_t>(entry.substr(space + 1), kMaxSeenSeconds, "last-seen time"));
        else
            exception.client_port = number<std::uint16_t>(entry.substr(space + 1), 65535, "port");
        exceptions.push_back(std::move(exception));
    }
    return exceptions;
}

}  // namespace stickylb::fleet

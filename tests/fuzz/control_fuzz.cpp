// SPDX-License-Identifier: Apache-2.0
// The control socket's request protocol (control/control_server.h) on arbitrary
// bytes, one request line at a time as a connection frames them (split at '\n',
// a trailing '\r' stripped, blank lines skipped). Invariants for every line:
// - the response is exactly one line (no '\n': the client reads up to the first)
//   of JSON, an object with a boolean "ok";
// - "ok":true exactly when the line is a JSON object with string "object" and
//   "verb" and an object or null "args", nested at most kMaxRequestDepth levels
//   (checked against an independent parse),
//   and then the handler saw those very values;
// - "ok":false carries a non-empty string "error";
// - an async handler that answers twice still produces one answer.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "control/control_server.h"
#include "fuzz/fuzz_check.h"

namespace {

using nlohmann::json;
using stickylb::ControlServer;

// The request as the protocol defines it, or discarded if it is not one.
json expected_request(const std::string& line) {
    int deepest = 0;
    json request = json::parse(
        line,
        [&deepest](int depth, json::parse_event_t, json&) {
            deepest = std::max(deepest, depth);
            return true;
        },
        /*allow_exceptions=*/false);
    if (request.is_discarded() || !request.is_object() || deepest > ControlServer::kMaxRequestDepth)
        return json(json::value_t::discarded);
    auto object = request.find("object");
    auto verb = request.find("verb");
    if (object == request.end() || !object->is_string() || verb == request.end() || !verb->is_string())
        return json(json::value_t::discarded);
    json args = json::object();
    if (auto it = request.find("args"); it != request.end() && !it->is_null()) {
        if (!it->is_object())
            return json(json::value_t::discarded);
        args = *it;
    }
    return json{{"object", *object}, {"verb", *verb}, {"args", args}};
}

json parse_response(const std::string& response) {
    FUZZ_CHECK(response.find('\n') == std::string::npos, "a response is one line");
    json parsed = json::parse(response, nullptr, /*allow_exceptions=*/false);
    FUZZ_CHECK(!parsed.is_discarded() && parsed.is_object(), "a response is a JSON object");
    FUZZ_CHECK(parsed.contains("ok") && parsed["ok"].is_boolean(), "a response has a boolean ok");
    if (!parsed["ok"].get<bool>()) {
        FUZZ_CHECK(
            parsed.contains("error") && parsed["error"].is_string() && !parsed["error"].get<std::string>().empty(),
            "a refusal says why");
    }
    return parsed;
}

void fuzz_line(const std::string& line) {
    json expected = expected_request(line);
    json seen;
    ControlServer::Handler echo = [&](const std::string& object, const std::string& verb, const json& args) {
        seen = json{{"object", object}, {"verb", verb}, {"args", args}};
        if (verb == "throw")
            throw std::runtime_error("handler failed");
        return seen;
    };
    json response = parse_response(ControlServer::respond(echo, line));
    bool ok = response["ok"].get<bool>();
    if (expected.is_discarded()) {
        FUZZ_CHECK(!ok && seen.is_null(), "a malformed request is refused without reaching the handler");
        return;
    }
    FUZZ_CHECK(seen == expected, "the handler sees the request's object, verb and args");
    if (expected["verb"] == "throw") {
        FUZZ_CHECK(!ok && response["error"] == "handler failed", "a handler's exception is the error");
        return;
    }
    // The result went through the response's UTF-8 replacement: compare when
    // the request's strings were valid UTF-8 (re-dumping strictly succeeds).
    FUZZ_CHECK(ok, "a well-formed request reaches the handler's result");
    try {
        (void)expected.dump();
    } catch (const json::type_error&) {
        return;
    }
    FUZZ_CHECK(response["result"] == expected, "the result is passed through unchanged");

    int answers = 0;
    ControlServer::AsyncHandler twice = [](const std::string&, const std::string&, const json& args,
                                           ControlServer::Reply reply) {
        reply(args, "");
        reply(nullptr, "second answer");
    };
    ControlServer::respond_async(twice, line, [&](std::string answer) {
        ++answers;
        (void)parse_response(answer);
    });
    FUZZ_CHECK(answers == 1, "one answer per request");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    while (!input.empty()) {
        std::size_t end = input.find('\n');
        std::string line(input.substr(0, end));
        input.remove_prefix(end == std::string_view::npos ? input.size() : end + 1);
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos)
            continue;
        fuzz_line(line);
    }
    return 0;
}

// SPDX-License-Identifier: Apache-2.0
// The `stickylb` command line grammar (cli/grammar.h) on arbitrary argv: the
// input is split at NUL bytes into words. Invariants:
// - parse_command_line either returns or throws UsageError (printed as
//   "Error: ...", exit code 2): no other exception, so no crash and no exit 1;
// - a request names an object and a verb of command_tree(), with args that are
//   exactly the verb's parameters, every required one present;
// - the request, written back as canonical words (OBJECT VERB positionals
//   keyword value... flag...), parses to the same request (prefixes and argument
//   order do not change meaning);
// - the request's wire form (as the CLI sends it) is one line of JSON.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cli/grammar.h"
#include "fuzz/fuzz_check.h"

namespace {

using namespace stickylb::cli;

const Verb* find_verb(const Request& request, const Object** object_out) {
    for (const auto& object : command_tree()) {
        if (object.name != request.object)
            continue;
        *object_out = &object;
        for (const auto& verb : object.verbs)
            if (verb.name == request.verb)
                return &verb;
    }
    return nullptr;
}

std::string word_of(const nlohmann::json& value) { return value.is_string() ? value.get<std::string>() : value.dump(); }

void check_request(const Request& request) {
    const Object* object = nullptr;
    const Verb* verb = find_verb(request, &object);
    FUZZ_CHECK(object != nullptr, "the request's object is in the command tree");
    if (object->verbs.empty())
        return;  // `version`: a command by itself
    FUZZ_CHECK(verb != nullptr, "the request's verb belongs to its object");
    FUZZ_CHECK(request.args.is_object(), "args is an object");
    for (const auto& item : request.args.items()) {
        FUZZ_CHECK(
            std::any_of(verb->params.begin(), verb->params.end(), [&](const Param& p) { return p.key == item.key(); }),
            "every arg is a parameter of the verb");
    }
    std::vector<std::string> canonical{request.object, request.verb};
    for (const auto& param : verb->params) {
        FUZZ_CHECK(!param.required || request.args.contains(param.key), "required parameters are present");
        if (!request.args.contains(param.key))
            continue;
        const auto& value = request.args[param.key];
        switch (param.kind) {
        case Param::Kind::positional: canonical.push_back(word_of(value)); break;
        case Param::Kind::keyword:
            canonical.push_back(param.key);
            canonical.push_back(word_of(value));
            break;
        case Param::Kind::flag:
            FUZZ_CHECK(value == true, "a flag is true when given");
            canonical.push_back(param.key);
            break;
        }
        if (param.type == Param::Type::weight)
            FUZZ_CHECK(value.is_number_unsigned() && value.get<unsigned>() <= 65535, "a weight is 0..65535");
    }
    // Positionals come first and in order: a canonical line of an optional
    // positional that is absent while a later one is present cannot exist.
    std::string help;
    auto again = parse_command(canonical, &help);
    FUZZ_CHECK(again.has_value(), "the canonical words are a request");
    FUZZ_CHECK(again->object == request.object && again->verb == request.verb && again->args == request.args,
               "the canonical words mean the same request");
    std::string wire = request.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    FUZZ_CHECK(wire.find('\n') == std::string::npos, "the request is one line on the wire");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<std::string> argv;
    std::string_view input(reinterpret_cast<const char*>(data), size);
    while (!input.empty() && argv.size() < 64) {
        std::size_t end = input.find('\0');
        argv.emplace_back(input.substr(0, end));
        input.remove_prefix(end == std::string_view::npos ? input.size() : end + 1);
    }
    Invocation invocation;
    try {
        invocation = parse_command_line(argv);
    } catch (const UsageError& error) {
        FUZZ_CHECK(*error.what() != '\0', "a usage error says what is wrong");
        return 0;
    }
    if (invocation.action == Invocation::Action::help) {
        FUZZ_CHECK(!invocation.text.empty(), "help has a text");
        return 0;
    }
    if (invocation.action == Invocation::Action::request)
        check_request(invocation.request);
    return 0;
}

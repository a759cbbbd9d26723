// SPDX-License-Identifier: Apache-2.0
#pragma once
// The grammar of the `stickylb` CLI, bpftool style:
//
//   stickylb [OPTIONS] OBJECT COMMAND [ARGS]
//
// The command tree is data (command_tree()): the parser, the help texts and the
// tests that keep the man page and the bash completion in step all read it.
// Objects and commands match by unambiguous prefix (`stickylb b sh` is
// `stickylb backend show`); an exact name always wins. Every command becomes one
// control-socket request {object, verb, args} (see control/control_server.h).
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace stickylb::cli {

inline constexpr std::string_view kDefaultSocket = "/run/stickylb/control.sock";
std::string_view cli_version();

// Bad command line: printed as "Error: <message>", exit code 2.
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// One argument of a command.
//  positional: the next word is the value (VIP NAME)
//  keyword:    `key VALUE`, optional unless `required` (vip VIP, weight N)
//  flag:       the word alone, sets key to true (force)
struct Param {
    enum class Kind { positional, keyword, flag };
    enum class Type { text, address, weight };  // weight: integer 0..65535
    Kind kind;
    std::string key;   // the args key in the request (snake_case), also the keyword
    std::string meta;  // the placeholder in usage: VIP, NAME, ADDR, N
    Type type = Type::text;
    bool required = false;
};

struct Verb {
    std::string name;
    std::string summary;
    std::vector<Param> params;
    std::string usage() const;  // "drain VIP NAME [force]"
};

struct Object {
    std::string name;
    std::string summary;
    std::vector<Verb> verbs;  // empty: the object is a command by itself (version)
};

// Every object and its verbs. `help` is not listed: it exists at every level.
const std::vector<Object>& command_tree();

// Resolves a possibly abbreviated word among candidates: the exact match, else
// the only one it is a prefix of. Throws UsageError (unknown / ambiguous);
// `what` names the kind of word in the message ("object", "command for backend").
std::string match_prefix(const std::string& word, const std::vector<std::string>& candidates, const std::string& what);

struct Options {
    bool json = false;
    bool pretty = false;  // implies json
    std::string socket = std::string(kDefaultSocket);
};

struct Request {
    std::string object;
    std::string verb;
    nlohmann::json args = nlohmann::json::object();
    nlohmann::json to_json() const;  // {"object":..,"verb":..,"args":{..}}
};

struct Invocation {
    enum class Action { request, help, version };
    Options options;
    Action action = Action::help;
    Request request;   // action == request (and version: the daemon's version request)
    std::string text;  // action == help: what to print
};

// argv without the program name. Options come before OBJECT. Throws UsageError.
Invocation parse_command_line(const std::vector<std::string>& argv);

// Just OBJECT COMMAND [ARGS] (options stripped): the request. Throws UsageError;
// help words yield std::nullopt with `help_text` filled in.
std::optional<Request> parse_command(const std::vector<std::string>& words, std::string* help_text);

std::string usage_text();                                       // stickylb help
std::string object_help(const Object& object);                  // stickylb backend help
std::string verb_help(const Object& object, const Verb& verb);  // stickylb backend drain help

}  // namespace stickylb::cli

// SPDX-License-Identifier: Apache-2.0
#include "cli/grammar.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <sstream>

#ifndef STICKYLB_VERSION
#define STICKYLB_VERSION "unknown"
#endif

namespace stickylb::cli {

using nlohmann::json;

std::string_view cli_version() { return STICKYLB_VERSION; }

namespace {

using Kind = Param::Kind;
using Type = Param::Type;

Param positional(std::string key, std::string meta, bool required = true, Type type = Type::text) {
    return Param{Kind::positional, std::move(key), std::move(meta), type, required};
}
Param keyword(std::string key, std::string meta, Type type = Type::text, bool required = false) {
    return Param{Kind::keyword, std::move(key), std::move(meta), type, required};
}
Param flag(std::string key) { return Param{Kind::flag, std::move(key), "", Type::text, false}; }

std::vector<Object> build_tree() {
    const Param vip_filter = keyword("vip", "VIP");
    const Param table_filters[] = {vip_filter, keyword("backend", "NAME"), keyword("client", "ADDR", Type::address)};
    return {
        {"vip",
         "virtual services",
         {{"show", "list VIPs (or one VIP) with their settings", {positional("vip", "VIP", false)}}}},
        {"backend",
         "the backends of each VIP",
         {
             {"show", "list backends with state, weight and health", {vip_filter, keyword("name", "NAME")}},
             {"drain",
              "take a backend out of the ring; its flows and affinities stay (force: its affinity clients move now)",
              {positional("vip", "VIP"), positional("name", "NAME"), flag("force")}},
             {"enable",
              "put a drained backend back into the ring",
              {positional("vip", "VIP"), positional("name", "NAME")}},
             {"set",
              "change a backend's weight (0..65535)",
              {positional("vip", "VIP"), positional("name", "NAME"), keyword("weight", "N", Type::weight, true)}},
         }},
        {"flow",
         "the connection table (5-tuple to backend)",
         {
             {"show", "list flows", {table_filters[0], table_filters[1], table_filters[2]}},
             {"flush", "delete flows (all, or one VIP's)", {vip_filter}},
         }},
        {"affinity",
         "the client affinity table of persistent VIPs",
         {
             {"show", "list client affinities", {table_filters[0], table_filters[1], table_filters[2]}},
             {"flush", "delete affinities (all, or one VIP's)", {vip_filter}},
             {"save", "save the affinity table to memcached now", {}},
             {"restore", "add the last snapshot's affinities to the table (live entries win)", {}},
         }},
        {"session",
         "session coordination with memcached",
         {{"show", "membership views, epochs, incarnations, memcached servers, snapshots", {}}}},
        {"cluster",
         "the fleet of LB hosts this one announces with",
         {{"show", "this host's standing: its config fingerprint against its peers', each VIP's ring and route", {}}}},
        {"stats", "data plane counters", {{"show", "global counters, or one VIP's and its backends'", {vip_filter}}}},
        {"health", "health checks", {{"show", "health check state of each backend", {vip_filter}}}},
        {"version", "print the CLI's and the daemon's version", {}},
    };
}

std::vector<std::string> object_names(bool with_help) {
    std::vector<std::string> names;
    for (const auto& object : command_tree())
        names.push_back(object.name);
    if (with_help)
        names.emplace_back("help");
    return names;
}

std::vector<std::string> verb_names(const Object& object) {
    std::vector<std::string> names;
    for (const auto& verb : object.verbs)
        names.push_back(verb.name);
    names.emplace_back("help");
    return names;
}

const Object& find_object(const std::string& name) {
    for (const auto& object : command_tree())
        if (object.name == name)
            return object;
    throw UsageError("unknown object '" + name + "'");
}

json validate(const Param& param, const std::string& value, const std::string& where) {
    if (value.empty())
        throw UsageError(where + ": " + param.meta + " must not be empty");
    switch (param.type) {
    case Type::text: return value;
    case Type::address: {
        unsigned char buffer[16];
        char text[INET6_ADDRSTRLEN];
        if (::inet_pton(AF_INET, value.c_str(), buffer) == 1) {
            ::inet_ntop(AF_INET, buffer, text, sizeof text);
            return std::string(text);
        }
        if (::inet_pton(AF_INET6, value.c_str(), buffer) == 1) {
            ::inet_ntop(AF_INET6, buffer, text, sizeof text);
            return std::string(text);
        }
        throw UsageError(where + ": '" + value + "' is not an IPv4 or IPv6 address");
    }
    case Type::weight: {
        bool digits =
            value.size() <= 5 && std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
        unsigned long number = digits ? std::stoul(value) : 0;
        if (!digits || number > 65535)
            throw UsageError(where + ": weight must be an integer from 0 to 65535, not '" + value + "'");
        return static_cast<std::uint16_t>(number);
    }
    }
    return value;
}

Request parse_args(const Object& object, const Verb& verb, const std::vector<std::string>& words) {
    const std::string where = object.name + " " + verb.name;
    Request request{object.name, verb.name, json::object()};
    std::size_t i = 0;
    for (const auto& param : verb.params) {
        if (param.kind != Kind::positional)
            continue;
        if (i < words.size()) {
            request.args[param.key] = validate(param, words[i++], where);
        } else if (param.required) {
            throw UsageError(where + ": missing " + param.meta + " (usage: stickylb " + object.name + " " +
                             verb.usage() + ")");
        }
    }
    std::vector<std::string> names;
    for (const auto& param : verb.params)
        if (param.kind != Kind::positional)
            names.push_back(param.key);
    while (i < words.size()) {
        const std::string& word = words[i++];
        if (names.empty())
            throw UsageError(where + ": unexpected argument '" + word + "' (usage: stickylb " + object.name + " " +
                             verb.usage() + ")");
        std::string name = match_prefix(word, names, "argument for " + where);
        const Param& param = *std::find_if(verb.params.begin(), verb.params.end(),
                                           [&](const Param& p) { return p.kind != Kind::positional && p.key == name; });
        if (request.args.contains(param.key))
            throw UsageError(where + ": '" + param.key + "' given twice");
        if (param.kind == Kind::flag) {
            request.args[param.key] = true;
            continue;
        }
        if (i >= words.size())
            throw UsageError(where + ": '" + param.key + "' needs a value (" + param.meta + ")");
        request.args[param.key] = validate(param, words[i++], where);
    }
    for (const auto& param : verb.params)
        if (param.required && !request.args.contains(param.key))
            throw UsageError(where + ": missing '" + param.key + " " + param.meta + "' (usage: stickylb " +
                             object.name + " " + verb.usage() + ")");
    return request;
}

}  // namespace

std::string Verb::usage() const {
    std::string text = name;
    for (const auto& param : params) {
        std::string part;
        switch (param.kind) {
        case Kind::positional: part = param.meta; break;
        case Kind::keyword: part = param.key + " " + param.meta; break;
        case Kind::flag: part = param.key; break;
        }
        text += " " + (param.required ? part : "[" + part + "]");
    }
    return text;
}

const std::vector<Object>& command_tree() {
    static const std::vector<Object> tree = build_tree();
    return tree;
}

std::string match_prefix(const std::string& word, const std::vector<std::string>& candidates, const std::string& what) {
    if (word.empty())
        throw UsageError("empty " + what);
    std::vector<std::string> matches;
    for (const auto& candidate : candidates) {
        if (candidate == word)
            return candidate;
        if (candidate.compare(0, word.size(), word) == 0)
            matches.push_back(candidate);
    }
    if (matches.size() == 1)
        return matches.front();
    std::string list;
    for (const auto& name : matches.empty() ? candidates : matches)
        list += (list.empty() ? "" : ", ") + name;
    if (matches.empty())
        throw UsageError("unknown " + what + " '" + word + "' (one of: " + list + ")");
    throw UsageError("ambiguous " + what + " '" + word + "': " + list);
}

json Request::to_json() const { return json{{"object", object}, {"verb", verb}, {"args", args}}; }

std::string usage_text() {
    std::ostringstream out;
    out << "Usage: stickylb [OPTIONS] OBJECT { COMMAND | help }\n"
           "       stickylb help\n"
           "       stickylb version\n\n"
           "OBJECT := {";
    bool first = true;
    for (const auto& object : command_tree()) {
        out << (first ? " " : " | ") << object.name;
        first = false;
    }
    out << " }\n"
           "OPTIONS := { -j|--json | -p|--pretty | -s|--socket PATH | -h|--help | -V|--version }\n\n"
           "Commands:\n";
    for (const auto& object : command_tree()) {
        if (object.verbs.empty())
            out << "  stickylb " << object.name << "\n";
        for (const auto& verb : object.verbs)
            out << "  stickylb " << object.name << " " << verb.usage() << "\n";
    }
    out << "\nObjects and commands may be abbreviated to any unambiguous prefix (stickylb b sh).\n"
           "Default socket: "
        << kDefaultSocket << "\n";
    return out.str();
}

std::string object_help(const Object& object) {
    std::ostringstream out;
    std::string lead = "Usage: ";
    for (const auto& verb : object.verbs) {
        out << lead << "stickylb " << object.name << " " << verb.usage() << "\n";
        lead = "       ";
    }
    if (object.verbs.empty()) {
        out << lead << "stickylb " << object.name << "\n";
        lead = "       ";
    }
    out << lead << "stickylb " << object.name << " help\n\n" << object.name << ": " << object.summary << "\n";
    for (const auto& verb : object.verbs)
        out << "  " << verb.name << std::string(8 - std::min<std::size_t>(7, verb.name.size()), ' ') << verb.summary
            << "\n";
    return out.str();
}

std::string verb_help(const Object& object, const Verb& verb) {
    std::ostringstream out;
    out << "Usage: stickylb " << object.name << " " << verb.usage() << "\n\n" << verb.summary << "\n";
    for (const auto& param : verb.params) {
        if (param.type == Type::weight)
            out << "  " << param.meta << ": an integer from 0 to 65535\n";
        if (param.type == Type::address)
            out << "  " << param.meta << ": an IPv4 or IPv6 address\n";
        if (param.meta == "VIP" && param.kind == Kind::positional)
            out << "  VIP: the VIP's name\n";
    }
    return out.str();
}

std::optional<Request> parse_command(const std::vector<std::string>& words, std::string* help_text) {
    auto help = [&](std::string text) -> std::optional<Request> {
        if (help_text)
            *help_text = std::move(text);
        return std::nullopt;
    };
    if (words.empty())
        throw UsageError("missing OBJECT (try 'stickylb help')");
    std::string object_name = match_prefix(words[0], object_names(true), "object");
    if (object_name == "help")
        return help(usage_text());
    const Object& object = find_object(object_name);

    if (object.verbs.empty()) {  // version
        if (words.size() == 2 && words[1] == "help")
            return help(object_help(object));
        if (words.size() > 1)
            throw UsageError(object.name + ": unexpected argument '" + words[1] + "'");
        return Request{object.name, "show", json::object()};
    }
    // `stickylb backend` alone runs the first command (show), like bpftool.
    std::string verb_name = words.size() > 1 ? match_prefix(words[1], verb_names(object), "command for " + object.name)
                                             : object.verbs.front().name;
    if (verb_name == "help")
        return help(object_help(object));
    const Verb& verb =
        *std::find_if(object.verbs.begin(), object.verbs.end(), [&](const Verb& v) { return v.name == verb_name; });
    std::vector<std::string> rest(words.begin() + std::min<std::ptrdiff_t>(2, words.size()), words.end());
    if (rest.size() == 1 && rest[0] == "help")
        return help(verb_help(object, verb));
    return parse_args(object, verb, rest);
}

Invocation parse_command_line(const std::vector<std::string>& argv) {
    Invocation invocation;
    Options& options = invocation.options;
    std::size_t i = 0;
    bool want_help = false, want_version = false;
    for (; i < argv.size(); ++i) {
        const std::string& arg = argv[i];
        if (arg == "--") {
            ++i;
            break;
        }
        if (arg.size() < 2 || arg[0] != '-')
            break;
        if (arg.compare(0, 2, "--") == 0) {
            std::string name = arg.substr(2), value;
            bool has_value = false;
            if (auto eq = name.find('='); eq != std::string::npos) {
                value = name.substr(eq + 1);
                name.resize(eq);
                has_value = true;
            }
            if (name == "socket") {
                if (!has_value) {
                    if (++i >= argv.size())
                        throw UsageError("option --socket needs a PATH");
                    value = argv[i];
                }
                if (value.empty())
                    throw UsageError("option --socket needs a PATH");
                options.socket = value;
                continue;
            }
            if (has_value)
                throw UsageError("option --" + name + " takes no value");
            if (name == "json")
                options.json = true;
            else if (name == "pretty")
                options.json = options.pretty = true;
            else if (name == "help")
                want_help = true;
            else if (name == "version")
                want_version = true;
            else
                throw UsageError("unknown option '" + arg + "'");
            continue;
        }
        for (std::size_t c = 1; c < arg.size(); ++c) {
            switch (arg[c]) {
            case 'j': options.json = true; break;
            case 'p': options.json = options.pretty = true; break;
            case 'h': want_help = true; break;
            case 'V': want_version = true; break;
            case 's': {
                std::string value = arg.substr(c + 1);
                if (value.empty()) {
                    if (++i >= argv.size())
                        throw UsageError("option -s needs a PATH");
                    value = argv[i];
                }
                if (value.empty())
                    throw UsageError("option -s needs a PATH");
                options.socket = value;
                c = arg.size();
                break;
            }
            default: throw UsageError(std::string("unknown option '-") + arg[c] + "'");
            }
        }
    }
    if (want_help) {
        invocation.action = Invocation::Action::help;
        invocation.text = usage_text();
        return invocation;
    }
    std::vector<std::string> words(argv.begin() + std::min(i, argv.size()), argv.end());
    if (want_version)
        words = {"version"};
    auto request = parse_command(words, &invocation.text);
    if (!request) {
        invocation.action = Invocation::Action::help;
        return invocation;
    }
    invocation.request = std::move(*request);
    invocation.action =
        invocation.request.object == "version" ? Invocation::Action::version : Invocation::Action::request;
    return invocation;
}

}  // namespace stickylb::cli

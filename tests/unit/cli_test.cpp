// SPDX-License-Identifier: Apache-2.0
// The stickylb CLI: grammar (prefix matching, help, validation, the requests it
// builds), output, the built binary's exit codes, and the man page and bash
// completion kept in step with the command tree.
#include "cli/grammar.h"
#include "cli/output.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace stickylb::cli {
namespace {

using nlohmann::json;

std::vector<std::string> split(const std::string& text) {
    std::istringstream in(text);
    std::vector<std::string> words;
    for (std::string word; in >> word;)
        words.push_back(word);
    return words;
}

Request parse(const std::string& line) {
    std::string help;
    auto request = parse_command(split(line), &help);
    if (!request)
        throw std::runtime_error("got help instead of a request: " + help);
    return *request;
}

std::string help_for(const std::string& line) {
    std::string help;
    auto request = parse_command(split(line), &help);
    EXPECT_FALSE(request.has_value()) << line;
    return help;
}

std::string usage_error(const std::string& line) {
    try {
        parse_command_line(split(line));
    } catch (const UsageError& e) {
        return e.what();
    }
    ADD_FAILURE() << "no usage error for: " << line;
    return "";
}

std::string read_file(const std::string& relative) {
    std::ifstream in(std::string(STICKYLB_SOURCE_DIR) + "/" + relative);
    EXPECT_TRUE(in) << relative;
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

// --- the command tree -------------------------------------------------------

TEST(CliGrammar, TreeHasTheDocumentedObjectsAndVerbs) {
    std::map<std::string, std::vector<std::string>> tree;
    for (const auto& object : command_tree())
        for (const auto& verb : object.verbs)
            tree[object.name].push_back(verb.name);
    EXPECT_EQ(tree["vip"], (std::vector<std::string>{"show"}));
    EXPECT_EQ(tree["backend"], (std::vector<std::string>{"show", "drain", "enable", "set"}));
    EXPECT_EQ(tree["flow"], (std::vector<std::string>{"show", "flush"}));
    EXPECT_EQ(tree["affinity"], (std::vector<std::string>{"show", "flush", "save", "restore"}));
    EXPECT_EQ(tree["session"], (std::vector<std::string>{"show"}));
    EXPECT_EQ(tree["cluster"], (std::vector<std::string>{"show"}));
    EXPECT_EQ(tree["stats"], (std::vector<std::string>{"show"}));
    EXPECT_EQ(tree["health"], (std::vector<std::string>{"show"}));
    EXPECT_EQ(command_tree().size(), 9u);  // + version
}

TEST(CliGrammar, UsageStrings) {
    const auto& backend = command_tree()[1];
    ASSERT_EQ(backend.name, "backend");
    EXPECT_EQ(backend.verbs[0].usage(), "show [vip VIP] [name NAME]");
    EXPECT_EQ(backend.verbs[1].usage(), "drain VIP NAME [force]");
    EXPECT_EQ(backend.verbs[2].usage(), "enable VIP NAME");
    EXPECT_EQ(backend.verbs[3].usage(), "set VIP NAME weight N");
    EXPECT_EQ(command_tree()[0].verbs[0].usage(), "show [VIP]");
}

// --- prefix matching --------------------------------------------------------

TEST(CliGrammar, PrefixMatching) {
    EXPECT_EQ(parse("b sh").to_json(), parse("backend show").to_json());
    EXPECT_EQ(parse("b sh").object, "backend");
    EXPECT_EQ(parse("b sh").verb, "show");
    EXPECT_EQ(parse("aff fl").object, "affinity");
    EXPECT_EQ(parse("aff fl").verb, "flush");
    EXPECT_EQ(parse("st").object, "stats");  // no verb: the first one (show)
    EXPECT_EQ(parse("st").verb, "show");
    EXPECT_EQ(parse("b dr web w1 f").args, (json{{"vip", "web"}, {"name", "w1"}, {"force", true}}));
    EXPECT_EQ(match_prefix("show", {"show", "showall"}, "x"), "show");  // exact wins
}

TEST(CliGrammar, AmbiguousAndUnknownPrefixes) {
    EXPECT_NE(usage_error("h").find("ambiguous object 'h': health, help"), std::string::npos);
    EXPECT_NE(usage_error("backend s web").find("ambiguous command for backend 's': show, set"), std::string::npos);
    EXPECT_EQ(parse("f f").verb, "flush");  // flow has one f-verb
    EXPECT_NE(usage_error("nope show").find("unknown object 'nope'"), std::string::npos);
    // Session commands share first letters with older ones: only unambiguous prefixes work.
    EXPECT_NE(usage_error("s show").find("ambiguous object 's': session, stats"), std::string::npos);
    EXPECT_NE(usage_error("affinity s").find("ambiguous command for affinity 's': show, save"), std::string::npos);
    EXPECT_EQ(parse("se").to_json(), parse("session show").to_json());
    EXPECT_EQ(parse("aff sa").verb, "save");
    EXPECT_EQ(parse("aff r").verb, "restore");
    EXPECT_NE(usage_error("backend frobnicate").find("unknown command for backend 'frobnicate'"), std::string::npos);
}

// --- help -------------------------------------------------------------------

TEST(CliGrammar, HelpAtEveryLevel) {
    EXPECT_EQ(help_for("help"), usage_text());
    EXPECT_EQ(parse_command_line({"-h"}).text, usage_text());
    EXPECT_EQ(parse_command_line({"--help", "backend"}).action, Invocation::Action::help);
    for (const auto& object : command_tree()) {
        std::string help = help_for(object.name + " help");
        EXPECT_NE(help.find("stickylb " + object.name + " help"), std::string::npos) << help;
        EXPECT_NE(usage_text().find("stickylb " + object.name), std::string::npos);
        for (const auto& verb : object.verbs) {
            EXPECT_NE(help.find("stickylb " + object.name + " " + verb.usage()), std::string::npos) << help;
            std::string verb_text = help_for(object.name + " " + verb.name + " help");
            EXPECT_EQ(verb_text.rfind("Usage: stickylb " + object.name + " " + verb.usage() + "\n", 0), 0u)
                << verb_text;
            EXPECT_NE(usage_text().find("stickylb " + object.name + " " + verb.usage()), std::string::npos);
        }
    }
    EXPECT_NE(help_for("b dr help").find("drain VIP NAME [force]"), std::string::npos);
    EXPECT_NE(help_for("backend set help").find("0 to 65535"), std::string::npos);
}

// --- arguments --------------------------------------------------------------

TEST(CliGrammar, WeightMustBeAnIntegerUpTo65535) {
    EXPECT_EQ(parse("backend set web w1 weight 0").args["weight"], 0);
    EXPECT_EQ(parse("backend set web w1 weight 65535").args["weight"], 65535);
    EXPECT_TRUE(parse("backend set web w1 weight 100").args["weight"].is_number_integer());
    for (const char* bad : {"65536", "-1", "1.5", "abc", "0x10", "999999", "+3", "1e3"})
        EXPECT_NE(usage_error(std::string("backend set web w1 weight ") + bad).find("weight must be an integer"),
                  std::string::npos)
            << bad;
    EXPECT_NE(usage_error("backend set web w1").find("missing 'weight N'"), std::string::npos);
    EXPECT_NE(usage_error("backend set web w1 weight").find("needs a value"), std::string::npos);
    EXPECT_NE(usage_error("backend set web w1 weight 1 weight 2").find("given twice"), std::string::npos);
}

TEST(CliGrammar, ArgumentValidation) {
    EXPECT_NE(usage_error("backend drain").find("missing VIP"), std::string::npos);
    EXPECT_NE(usage_error("backend drain web").find("missing NAME"), std::string::npos);
    EXPECT_NE(usage_error("backend enable web w1 extra").find("unexpected argument 'extra'"), std::string::npos);
    EXPECT_NE(usage_error("vip show web more").find("unexpected argument 'more'"), std::string::npos);
    EXPECT_NE(usage_error("flow show client not-an-ip").find("not an IPv4 or IPv6 address"), std::string::npos);
    EXPECT_NE(usage_error("flow show vip").find("needs a value"), std::string::npos);
    EXPECT_NE(usage_error("version extra").find("unexpected argument"), std::string::npos);
    EXPECT_NE(usage_error("-x vip").find("unknown option"), std::string::npos);
    EXPECT_NE(usage_error("-s").find("needs a PATH"), std::string::npos);
    EXPECT_NE(usage_error("").find("missing OBJECT"), std::string::npos);
    // Clients are normalised; VIPs are names, sent as strings even when numeric.
    EXPECT_EQ(parse("flow show client 2001:DB8:0:0::1").args["client"], "2001:db8::1");
    EXPECT_EQ(parse("vip show 80").args["vip"], "80");
}

// --- requests ---------------------------------------------------------------

TEST(CliGrammar, RequestsForCommands) {
    EXPECT_EQ(parse("backend drain web web2 force").to_json(),
              json::parse(R"({"object":"backend","verb":"drain","args":{"vip":"web","name":"web2","force":true}})"));
    EXPECT_EQ(parse("backend drain web web2").to_json(),
              json::parse(R"({"object":"backend","verb":"drain","args":{"vip":"web","name":"web2"}})"));
    EXPECT_EQ(parse("backend set web web1 weight 200").to_json(),
              json::parse(R"({"object":"backend","verb":"set","args":{"vip":"web","name":"web1","weight":200}})"));
    EXPECT_EQ(parse("backend enable web web1").to_json(),
              json::parse(R"({"object":"backend","verb":"enable","args":{"vip":"web","name":"web1"}})"));
    EXPECT_EQ(parse("backend show name web1 vip web").to_json(),
              json::parse(R"({"object":"backend","verb":"show","args":{"vip":"web","name":"web1"}})"));
    EXPECT_EQ(parse("flow show vip web backend web1 client 192.0.2.10").to_json(),
              json::parse(R"({"object":"flow","verb":"show",
                              "args":{"vip":"web","backend":"web1","client":"192.0.2.10"}})"));
    EXPECT_EQ(parse("affinity flush vip web").to_json(),
              json::parse(R"({"object":"affinity","verb":"flush","args":{"vip":"web"}})"));
    EXPECT_EQ(parse("flow flush").to_json(), json::parse(R"({"object":"flow","verb":"flush","args":{}})"));
    EXPECT_EQ(parse("vip show web").to_json(), json::parse(R"({"object":"vip","verb":"show","args":{"vip":"web"}})"));
    EXPECT_EQ(parse("stats show vip web").to_json(),
              json::parse(R"({"object":"stats","verb":"show","args":{"vip":"web"}})"));
    EXPECT_EQ(parse("health").to_json(), json::parse(R"({"object":"health","verb":"show","args":{}})"));
    EXPECT_EQ(parse("session show").to_json(), json::parse(R"({"object":"session","verb":"show","args":{}})"));
    EXPECT_EQ(parse("affinity save").to_json(), json::parse(R"({"object":"affinity","verb":"save","args":{}})"));
    EXPECT_EQ(parse("affinity restore").to_json(), json::parse(R"({"object":"affinity","verb":"restore","args":{}})"));
    EXPECT_NE(usage_error("affinity save vip web").find("unexpected argument 'vip'"), std::string::npos);
}

TEST(CliGrammar, Options) {
    auto invocation = parse_command_line({"-p", "-s", "/tmp/x.sock", "b", "sh"});
    EXPECT_TRUE(invocation.options.json);
    EXPECT_TRUE(invocation.options.pretty);
    EXPECT_EQ(invocation.options.socket, "/tmp/x.sock");
    EXPECT_EQ(invocation.action, Invocation::Action::request);
    EXPECT_EQ(invocation.request.object, "backend");

    invocation = parse_command_line({"--json", "--socket=/a", "flow", "show"});
    EXPECT_TRUE(invocation.options.json);
    EXPECT_FALSE(invocation.options.pretty);
    EXPECT_EQ(invocation.options.socket, "/a");
    EXPECT_EQ(parse_command_line({"-js/b", "vip"}).options.socket, "/b");
    EXPECT_EQ(parse_command_line({"vip"}).options.socket, std::string(kDefaultSocket));
    EXPECT_EQ(parse_command_line({"-V"}).action, Invocation::Action::version);
    EXPECT_EQ(parse_command_line({"ver"}).action, Invocation::Action::version);
    EXPECT_EQ(parse_command_line({"version"}).request.to_json(),
              json::parse(R"({"object":"version","verb":"show","args":{}})"));
}

// --- output -----------------------------------------------------------------

TEST(CliOutput, PlainPrintsOneLinePerElement) {
    auto result = nlohmann::ordered_json::parse(R"([
        {"name":"web1","address":"10.0.0.1","state":"up","weight":100,"stats":{"packets":5}},
        {"name":"web2","address":"10.0.0.2","state":"draining","weight":0,"tags":["a","b"],"note":null}])");
    EXPECT_EQ(format_plain(result),
              "name web1  address 10.0.0.1  state up  weight 100  stats.packets 5\n"
              "name web2  address 10.0.0.2  state draining  weight 0  tags a,b  note -\n");
}

TEST(CliOutput, PlainObjectsAndScalars) {
    auto result = nlohmann::ordered_json::parse(R"({"packets":10,"vip":"web",
        "backends":[{"name":"w1","packets":4}],"flags":{"persistent":true}})");
    EXPECT_EQ(format_plain(result),
              "packets 10\nvip web\nbackends:\n  name w1  packets 4\nflags:\n  persistent true\n");
    EXPECT_EQ(format_plain(nlohmann::ordered_json("done")), "done\n");
    EXPECT_EQ(format_plain(nlohmann::ordered_json()), "");
    EXPECT_EQ(format_plain(nlohmann::ordered_json::array()), "");
}

TEST(CliOutput, JsonAsIs) {
    auto result = nlohmann::ordered_json::parse(R"({"b":1,"a":[1,2]})");
    EXPECT_EQ(format_result(result, OutputFormat::json), "{\"b\":1,\"a\":[1,2]}\n");
    EXPECT_EQ(format_result(result, OutputFormat::pretty), result.dump(2) + "\n");
}

// --- the built binary ---------------------------------------------------------

struct CliRun {
    int status;
    std::string output;  // stdout and stderr
};

CliRun run_cli(const std::string& args) {
    std::string command = std::string(STICKYLB_CLI_PATH) + " " + args + " 2>&1";
    FILE* pipe = ::popen(command.c_str(), "r");
    if (!pipe)
        return {-1, ""};
    std::string output;
    std::array<char, 4096> buffer;
    while (std::size_t n = std::fread(buffer.data(), 1, buffer.size(), pipe))
        output.append(buffer.data(), n);
    int status = ::pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(CliBinary, DaemonUnreachable) {
    const std::string path = ::testing::TempDir() + "stickylb-no-daemon.sock";
    std::remove(path.c_str());
    CliRun run = run_cli("-s " + path + " backend show");
    EXPECT_EQ(run.status, 1);
    EXPECT_EQ(run.output, "Error: cannot reach stickylbd at " + path + ": No such file or directory\n");
    run = run_cli("--socket " + path + " -j b dr web web1");
    EXPECT_EQ(run.status, 1);
    EXPECT_EQ(run.output.rfind("Error: cannot reach stickylbd at " + path, 0), 0u) << run.output;
}

// A reply nested 200,000 levels deep (a daemon gone wrong, or someone else on
// the socket) is an error, not a stack overflow.
TEST(CliBinary, ADeeplyNestedReplyIsRefused) {
    const std::string path = ::testing::TempDir() + "stickylb-deep-" + std::to_string(::getpid()) + ".sock";
    std::remove(path.c_str());
    const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ASSERT_EQ(::listen(listener, 1), 0);
    std::thread server([listener] {
        const int peer = ::accept(listener, nullptr, nullptr);
        if (peer < 0)
            return;
        char request[4096];
        (void)::recv(peer, request, sizeof request, 0);
        const std::string reply =
            "{\"ok\":true,\"result\":" + std::string(200000, '[') + std::string(200000, ']') + "}\n";
        for (std::size_t sent = 0; sent < reply.size();) {
            const ssize_t n = ::send(peer, reply.data() + sent, reply.size() - sent, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            sent += static_cast<std::size_t>(n);
        }
        ::close(peer);
    });
    const CliRun run = run_cli("-s " + path + " backend show");
    server.join();
    ::close(listener);
    std::remove(path.c_str());
    EXPECT_EQ(run.status, 1);
    EXPECT_EQ(run.output, "Error: invalid response from stickylbd: nested deeper than 32 levels\n");
}

TEST(CliBinary, ExitCodes) {
    CliRun run = run_cli("backend set web w1 weight 70000");
    EXPECT_EQ(run.status, 2);
    EXPECT_EQ(run.output.rfind("Error: backend set: weight must be an integer", 0), 0u) << run.output;
    run = run_cli("h");
    EXPECT_EQ(run.status, 2);
    EXPECT_EQ(run.output, "Error: ambiguous object 'h': health, help\n");
    run = run_cli("");
    EXPECT_EQ(run.status, 2);
    run = run_cli("backend help");
    EXPECT_EQ(run.status, 0);
    EXPECT_EQ(run.output, help_for("backend help"));
    run = run_cli("-s /nonexistent/stickylb.sock version");
    EXPECT_EQ(run.status, 0);
    EXPECT_NE(run.output.find("stickylb v" + std::string(cli_version())), std::string::npos);
}

// --- documentation in step with the grammar -------------------------------------

TEST(CliDocs, ManPageCoversEveryCommand) {
    const std::string man = read_file("docs/man/stickylb.8");
    for (const auto& object : command_tree()) {
        if (object.verbs.empty()) {
            EXPECT_NE(man.find("stickylb " + object.name), std::string::npos) << object.name;
        }
        std::string upper;
        for (char c : object.name)
            upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        EXPECT_NE(man.find(".SH " + upper + " COMMAND"), std::string::npos) << "no section for " << object.name;
        for (const auto& verb : object.verbs) {
            EXPECT_NE(man.find(object.name + " " + verb.name), std::string::npos)
                << "man page lacks \"" << object.name << " " << verb.name << "\"";
            for (const auto& param : verb.params) {
                if (param.kind != Param::Kind::positional) {
                    EXPECT_NE(man.find("\\fB" + param.key), std::string::npos)
                        << object.name << " " << verb.name << " " << param.key;
                }
            }
        }
    }
    for (const char* option : {"\\-\\-json", "\\-\\-pretty", "\\-\\-socket", "\\-\\-help", "\\-\\-version"})
        EXPECT_NE(man.find(option), std::string::npos) << option;
}

std::set<std::string> words_of(const std::string& text) {
    auto words = split(text);
    return {words.begin(), words.end()};
}

TEST(CliDocs, CompletionListsExactlyTheGrammar) {
    const std::string script = read_file("tools/completion/stickylb.bash");
    std::smatch match;
    ASSERT_TRUE(std::regex_search(script, match, std::regex("local objects=\"([^\"]*)\"")));
    std::set<std::string> objects{"help"};
    for (const auto& object : command_tree())
        objects.insert(object.name);
    EXPECT_EQ(words_of(match[1]), objects);

    for (const auto& object : command_tree()) {
        std::set<std::string> verbs{"help"};
        for (const auto& verb : object.verbs)
            verbs.insert(verb.name);
        std::smatch verb_match;
        ASSERT_TRUE(
            std::regex_search(script, verb_match, std::regex("\\n\\s+" + object.name + "\\) echo \"([^\"]*)\" ;;")))
            << object.name;
        EXPECT_EQ(words_of(verb_match[1]), verbs) << object.name;
        for (const auto& verb : object.verbs) {
            for (const auto& param : verb.params) {
                if (param.kind != Param::Kind::positional) {
                    EXPECT_NE(script.find(param.key), std::string::npos) << param.key;
                }
            }
        }
    }
}

}  // namespace
}  // namespace stickylb::cli

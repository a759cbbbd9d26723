// SPDX-License-Identifier: Apache-2.0
// Who may reach what (docs/security.md): the control socket's access rules and
// rate limit, and the loopback defaults of the agent's listeners. The cases that
// connect as another user fork a child that drops to `nobody`: they need root and
// skip without it.
#include "agent/agent_config.h"
#include "control/config.h"
#include "control/control_server.h"

#include <gtest/gtest.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "support/privileges.h"

namespace stickylb {
namespace {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using nlohmann::json;

constexpr unsigned kNobody = 65534;
constexpr unsigned kOperators = 54321;  // a gid for the configured group: it need not have a name

json echo(const std::string&, const std::string&, const json& args) { return args; }

TEST(ControlPeerWithGroup, RootOwnUidOrTheGroupPrimaryOrSupplementary) {
    const unsigned daemon = 0;
    EXPECT_TRUE(control_peer_allowed(ControlPeer{0, 0, {}}, daemon, std::nullopt));
    EXPECT_FALSE(control_peer_allowed(ControlPeer{1000, 1000, {kOperators}}, daemon, std::nullopt))
        << "without a configured group, groups give nothing";
    EXPECT_TRUE(control_peer_allowed(ControlPeer{1000, kOperators, {}}, daemon, kOperators));
    EXPECT_TRUE(control_peer_allowed(ControlPeer{1000, 1000, {27, kOperators}}, daemon, kOperators));
    EXPECT_FALSE(control_peer_allowed(ControlPeer{1000, 1000, {27, 100}}, daemon, kOperators));
    EXPECT_TRUE(control_peer_allowed(ControlPeer{1000, 1000, {}}, 1000, kOperators)) << "the daemon's own uid";
}

TEST(ControlGroupId, ResolvesNamesAndSaysWhichIsMissing) {
    const group* root = ::getgrgid(0);
    ASSERT_NE(root, nullptr);
    EXPECT_EQ(control_group_id(root->gr_name), 0u);
    try {
        control_group_id("no-such-group-stickylb");
        ADD_FAILURE() << "a missing group was resolved";
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()), "control socket group no-such-group-stickylb: no such group");
    }
}

TEST(ControlGroupConfig, NamesAGroupThatExists) {
    const std::string vips =
        "vips:\n  - address: 192.0.2.10\n    port: 80\n    backends:\n      - address: 10.0.1.11\n";
    const group* root = ::getgrgid(0);
    ASSERT_NE(root, nullptr);
    EXPECT_EQ(parse_config("interface: eth0\n" + vips, "lb.yaml").control_group, "") << "none by default";
    EXPECT_EQ(parse_config("interface: eth0\ncontrol_group: " + std::string(root->gr_name) + "\n" + vips, "lb.yaml")
                  .control_group,
              root->gr_name);
    try {
        parse_config("interface: eth0\ncontrol_group: no-such-group-stickylb\n" + vips, "lb.yaml");
        ADD_FAILURE() << "a missing group was accepted";
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()),
                  "lb.yaml:2: control_group: no group 'no-such-group-stickylb' on this host (its members may use "
                  "the control socket)");
    }
}

class ControlAccessTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::path(::testing::TempDir()) /
               ("stickylb-security-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_);
        std::filesystem::permissions(dir_, std::filesystem::perms(0755));  // `nobody` may reach the socket
        path_ = (dir_ / "control.sock").string();
    }
    void TearDown() override {
        if (server_) {
            asio::post(io_, [this] { server_->stop(); });
            thread_.join();
            server_.reset();
        }
        std::filesystem::remove_all(dir_);
    }

    void start(ControlOptions options) {
        server_ = std::make_unique<ControlServer>(io_, path_, echo, options);
        thread_ = std::thread([this] { io_.run(); });
    }

    enum Outcome { kConnectRefused = 10, kPermissionDenied = 20, kServed = 30, kOther = 40 };

    // Connects from a child that dropped to uid `nobody` with this primary and these
    // supplementary groups; what happened. Only async-signal-safe calls after fork().
    Outcome connect_as_nobody(unsigned gid, std::vector<gid_t> groups) const {
        const std::string request = R"({"object":"echo","verb":"x","args":{"who":"nobody"}})"
                                    "\n";
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, path_.c_str(), sizeof address.sun_path - 1);
        const pid_t pid = ::fork();
        if (pid == 0) {
            if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(gid) != 0 || ::setuid(kNobody) != 0)
                ::_exit(kOther + 1);
            const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
            if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
                ::_exit(errno == EACCES ? kConnectRefused : kOther + 2);
            // The server may already have refused and closed: no SIGPIPE, its answer is still readable.
            (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
            char reply[512];
            std::size_t got = 0;
            pollfd ready{fd, POLLIN, 0};
            while (got < sizeof reply - 1 && ::poll(&ready, 1, 5000) == 1) {
                const ssize_t n = ::read(fd, reply + got, sizeof reply - 1 - got);
                if (n <= 0)
                    break;
                got += static_cast<std::size_t>(n);
                if (reply[got - 1] == '\n')
                    break;
            }
            reply[got] = '\0';
            if (std::strstr(reply, "permission denied") != nullptr)
                ::_exit(kPermissionDenied);
            if (std::strstr(reply, R"("ok":true)") != nullptr)
                ::_exit(kServed);
            ::_exit(kOther + 3);
        }
        int status = 0;
        ::waitpid(pid, &status, 0);
        return WIFEXITED(status) ? static_cast<Outcome>(WEXITSTATUS(status)) : kOther;
    }

    std::filesystem::path dir_;
    std::string path_;
    asio::io_context io_;
    std::unique_ptr<ControlServer> server_;
    std::thread thread_;
};

TEST_F(ControlAccessTest, UnprivilegedUserIsRefusedByTheModeAndByTheCredentialCheck) {
    STICKYLB_REQUIRE_ROOT();
    start({});
    EXPECT_EQ(connect_as_nobody(kNobody, {}), kConnectRefused) << "mode 0600 keeps nobody out";
    // A socket whose mode was loosened by mistake: the daemon still refuses.
    ASSERT_EQ(::chmod(path_.c_str(), 0666), 0);
    EXPECT_EQ(connect_as_nobody(kNobody, {}), kPermissionDenied);
}

TEST_F(ControlAccessTest, MembersOfTheConfiguredGroupAreServedOthersRefused) {
    STICKYLB_REQUIRE_ROOT();
    start({.group = kOperators});
    struct stat st {};
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    EXPECT_EQ(st.st_gid, kOperators);
    EXPECT_EQ(connect_as_nobody(kNobody, {kOperators}), kServed) << "a supplementary member";
    EXPECT_EQ(connect_as_nobody(kOperators, {}), kServed) << "a primary member";
    EXPECT_EQ(connect_as_nobody(kNobody, {}), kConnectRefused) << "not a member: mode 0660 keeps it out";
    ASSERT_EQ(::chmod(path_.c_str(), 0666), 0);
    EXPECT_EQ(connect_as_nobody(kNobody, {100}), kPermissionDenied) << "not a member: the credential check";
}

TEST_F(ControlAccessTest, GroupSocketIsOwnedByTheGroupWithMode0660) {
    start({.group = static_cast<unsigned>(::getegid())});  // a group anyone may chown to: their own
    struct stat st {};
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    EXPECT_EQ(st.st_gid, ::getegid());
}

// A line-at-a-time client.
struct Client {
    asio::io_context io;
    local::socket socket{io};
    asio::streambuf buffer;
    explicit Client(const std::string& path) { socket.connect(local::endpoint(path)); }
    std::string read_line() {
        boost::system::error_code ec;
        const std::size_t n = asio::read_until(socket, buffer, '\n', ec);
        if (ec)
            return "";
        std::string line(asio::buffers_begin(buffer.data()), asio::buffers_begin(buffer.data()) + n - 1);
        buffer.consume(n);
        return line;
    }
};

TEST_F(ControlAccessTest, RequestsOverTheRateLimitGetAnErrorAndTheConnectionIsClosed) {
    // A refill so slow that no token comes back during the test: exactly the burst is served.
    start({.rate_burst = 5, .rate_per_second = 0.001});
    Client client(path_);
    std::string pipelined;
    for (int i = 0; i < 8; ++i)
        pipelined += R"({"object":"echo","verb":"x","args":{"i":)" + std::to_string(i) + "}}\n";
    boost::system::error_code ignored;
    asio::write(client.socket, asio::buffer(pipelined), ignored);
    for (int i = 0; i < 5; ++i) {
        const json answer = json::parse(client.read_line());
        EXPECT_EQ(answer["ok"], true) << i;
        EXPECT_EQ(answer["result"]["i"], i);
    }
    const json refused = json::parse(client.read_line());
    EXPECT_EQ(refused["ok"], false);
    EXPECT_NE(refused["error"].get<std::string>().find("rate limit exceeded"), std::string::npos) << refused.dump();
    EXPECT_EQ(client.read_line(), "") << "the connection is closed after the refusal";

    Client fresh(path_);  // the bucket is per connection
    asio::write(fresh.socket, asio::buffer(std::string(R"({"object":"echo","verb":"x"})") + "\n"));
    EXPECT_EQ(json::parse(fresh.read_line())["ok"], true);
}

TEST(ControlOptions, RateLimitMustAllowSomething) {
    asio::io_context io;
    const std::string path = ::testing::TempDir() + "/stickylb-security-rate-" + std::to_string(::getpid()) + ".sock";
    EXPECT_THROW(ControlServer(io, path, echo, {.rate_burst = 0}), std::invalid_argument);
    EXPECT_THROW(ControlServer(io, path, echo, {.rate_per_second = 0}), std::invalid_argument);
}

// PHP and Prometheus on the same host are the agent's only intended clients.
TEST(AgentDefaults, ListenOnLoopbackOnly) {
    std::vector<std::string> args = {"stickylb-agent", "--backend",      "be1",        "--cluster",     "web",
                                     "--upstream",     "10.0.0.1:11211", "--upstream", "10.0.0.2:11211"};
    std::vector<char*> argv;
    for (auto& arg : args)
        argv.push_back(arg.data());
    argv.push_back(nullptr);
    const agent::AgentConfig config = agent::parse_agent_args(static_cast<int>(args.size()), argv.data()).config;
    for (const std::string& listen : {config.listen, config.metrics_listen}) {
        const std::string host = listen.substr(0, listen.rfind(':'));
        EXPECT_TRUE(asio::ip::make_address(host).is_loopback()) << listen;
    }
}

}  // namespace
}  // namespace stickylb

// SPDX-License-Identifier: Apache-2.0
// The control socket: a ControlServer on a temporary path with a fake handler,
// driven by a raw Asio client.
#include "control/control_server.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace stickylb {
namespace {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using nlohmann::json;

json fake_handler(const std::string& object, const std::string& verb, const json& args) {
    if (object == "backend" && verb == "show")
        return json::array({{{"name", "web1"}, {"state", "up"}, {"vip", args.value("vip", "")}}});
    if (object == "echo")
        return args;
    if (object == "crash")
        throw 42;  // not a std::exception
    throw std::runtime_error("unknown command " + object + " " + verb);
}

class ControlServerTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::path(::testing::TempDir()) /
               ("stickylb-control-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::remove_all(dir_);
        path_ = (dir_ / "sub" / "control.sock").string();  // parent created by the server
    }
    void TearDown() override {
        stop();
        std::filesystem::remove_all(dir_);
    }

    void start(ControlServer::Handler handler = fake_handler,
               std::chrono::milliseconds idle = ControlServer::kIdleTimeout) {
        server_ = std::make_unique<ControlServer>(io_, path_, std::move(handler));
        server_->set_idle_timeout(idle);
        thread_ = std::thread([this] { io_.run(); });
    }
    void stop() {
        if (!server_)
            return;
        asio::post(io_, [this] { server_->stop(); });
        thread_.join();
        server_.reset();
    }

    // A raw client: send bytes, read one line (empty string on EOF).
    struct Client {
        asio::io_context io;
        local::socket socket{io};
        asio::streambuf buffer;
        explicit Client(const std::string& path) { socket.connect(local::endpoint(path)); }
        void send(const std::string& bytes) { asio::write(socket, asio::buffer(bytes)); }
        std::string read_line() {
            boost::system::error_code ec;
            std::size_t n = asio::read_until(socket, buffer, '\n', ec);
            if (ec)
                return "";
            std::string line(asio::buffers_begin(buffer.data()), asio::buffers_begin(buffer.data()) + n - 1);
            buffer.consume(n);
            return line;
        }
        json call(const std::string& line) {
            send(line + "\n");
            return json::parse(read_line());
        }
        bool closed_by_peer() {
            char byte;
            boost::system::error_code ec;
            socket.read_some(asio::buffer(&byte, 1), ec);
            return ec == asio::error::eof || ec == asio::error::connection_reset;
        }
    };

    std::filesystem::path dir_;
    std::string path_;
    asio::io_context io_;
    std::unique_ptr<ControlServer> server_;
    std::thread thread_;
};

TEST_F(ControlServerTest, GoodRequests) {
    start();
    Client client(path_);
    EXPECT_EQ(client.call(R"({"object":"backend","verb":"show","args":{"vip":"web"}})"),
              json::parse(R"({"ok":true,"result":[{"name":"web1","state":"up","vip":"web"}]})"));
    // args optional; several requests on one connection, also pipelined.
    EXPECT_EQ(client.call(R"({"object":"echo","verb":"x"})"), json::parse(R"({"ok":true,"result":{}})"));
    client.send(
        "{\"object\":\"echo\",\"verb\":\"x\",\"args\":{\"n\":1}}\r\n\n{\"object\":\"echo\",\"verb\":\"x\","
        "\"args\":{\"n\":2}}\n");
    EXPECT_EQ(json::parse(client.read_line())["result"]["n"], 1);
    EXPECT_EQ(json::parse(client.read_line())["result"]["n"], 2);
}

// An answer given later (work done elsewhere) still reaches its client, in order,
// and the connection's next request waits for it.
TEST_F(ControlServerTest, AsyncAnswersComeLaterAndInOrder) {
    std::vector<ControlServer::Reply> waiting;
    auto handler = [&](const std::string& object, const std::string&, const json& args, ControlServer::Reply reply) {
        if (object == "later") {
            waiting.push_back(std::move(reply));
            // Answered from another round of the io_context, as a worker's post would.
            asio::post(io_, [&waiting, args] {
                auto answer = std::move(waiting.back());
                waiting.pop_back();
                if (args.value("fail", false))
                    answer(nullptr, "it went wrong");
                else
                    answer(args, "");
            });
            return;
        }
        reply(json{{"now", true}}, "");
    };
    server_ = std::make_unique<ControlServer>(io_, path_, ControlServer::AsyncHandler(handler));
    thread_ = std::thread([this] { io_.run(); });
    Client client(path_);
    client.send(R"({"object":"later","verb":"x","args":{"n":1}})"
                "\n"
                R"({"object":"now","verb":"x"})"
                "\n"
                R"({"object":"later","verb":"x","args":{"fail":true}})"
                "\n");
    EXPECT_EQ(json::parse(client.read_line()), json::parse(R"({"ok":true,"result":{"n":1}})"));
    EXPECT_EQ(json::parse(client.read_line()), json::parse(R"({"ok":true,"result":{"now":true}})"));
    EXPECT_EQ(json::parse(client.read_line()), json::parse(R"({"ok":false,"error":"it went wrong"})"));
}

TEST_F(ControlServerTest, HandlerErrors) {
    start();
    Client client(path_);
    EXPECT_EQ(client.call(R"({"object":"frob","verb":"nicate","args":{}})"),
              json::parse(R"({"ok":false,"error":"unknown command frob nicate"})"));
    EXPECT_EQ(client.call(R"({"object":"crash","verb":"x"})"), json::parse(R"({"ok":false,"error":"internal error"})"));
    EXPECT_TRUE(client.call(R"({"object":"echo","verb":"x"})")["ok"].get<bool>()) << "connection still usable";
}

TEST_F(ControlServerTest, MalformedRequests) {
    start();
    Client client(path_);
    for (const char* bad :
         {"not json", "{\"object\":", "[1,2]", "42", "{}", R"({"object":"backend"})", R"({"verb":"show"})",
          R"({"object":1,"verb":"show"})", R"({"object":"a","verb":["b"]})", R"({"object":"a","verb":"b","args":[1]})",
          R"({"object":"a","verb":"b","args":"x"})", "\xff\xfe{"}) {
        json response = client.call(bad);
        EXPECT_EQ(response["ok"], false) << bad;
        EXPECT_NE(response["error"].get<std::string>().find("malformed request"), std::string::npos)
            << bad << ": " << response;
    }
    EXPECT_TRUE(client.call(R"({"object":"echo","verb":"x"})")["ok"].get<bool>()) << "connection still usable";
}

// A request nested thousands of levels deep (found by tests/fuzz/control_fuzz under
// ASan: copying it overflowed the stack) is refused like any malformed one.
TEST_F(ControlServerTest, DeeplyNestedRequestIsRefused) {
    start();
    Client client(path_);
    const int levels = 30000;
    const std::string deep =
        R"({"object":"echo","verb":"x","args":{"a":)" + std::string(levels, '[') + std::string(levels, ']') + "}}";
    json response = client.call(deep);
    EXPECT_EQ(response["ok"], false);
    EXPECT_NE(response["error"].get<std::string>().find("nested deeper than"), std::string::npos) << response;
    EXPECT_TRUE(client.call(R"({"object":"echo","verb":"x","args":{"a":[[1]]}})")["ok"].get<bool>());
}

TEST_F(ControlServerTest, OversizedRequestIsRefusedAndClosed) {
    start();
    Client client(path_);
    std::string big = R"({"object":"echo","verb":"x","args":{"s":")" + std::string(70 * 1024, 'a') + "\"}}\n";
    boost::system::error_code ec;
    asio::write(client.socket, asio::buffer(big), ec);  // may fail once the server closes: fine
    json response = json::parse(client.read_line());
    EXPECT_EQ(response["ok"], false);
    EXPECT_NE(response["error"].get<std::string>().find("request too long"), std::string::npos);
    EXPECT_TRUE(client.closed_by_peer());

    // Just under the limit is fine.
    Client other(path_);
    const std::string head = R"({"object":"echo","verb":"x","args":{"s":")";
    const std::size_t payload = ControlServer::kMaxRequestBytes - head.size() - 3;
    std::string fits = head + std::string(payload, 'b') + "\"}}";
    ASSERT_EQ(fits.size(), ControlServer::kMaxRequestBytes);
    EXPECT_EQ(other.call(fits)["result"]["s"].get<std::string>().size(), payload);
    // One byte more is too long.
    EXPECT_NE(other.call(head + std::string(payload + 1, 'b') + "\"}}")["error"].get<std::string>().find("too long"),
              std::string::npos);
    EXPECT_TRUE(other.closed_by_peer());
}

TEST_F(ControlServerTest, SocketModeAndStopUnlinks) {
    start();
    struct stat st {};
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    Client client(path_);
    EXPECT_TRUE(client.call(R"({"object":"echo","verb":"x"})")["ok"].get<bool>());
    stop();
    EXPECT_FALSE(std::filesystem::exists(path_));
    EXPECT_TRUE(client.closed_by_peer()) << "stop() closes open connections";
}

TEST_F(ControlServerTest, StaleSocketReplacedLiveOneAndFilesRefused) {
    {
        asio::io_context io;
        ControlServer first(io, path_, fake_handler);
        // A second server on a path someone listens on is refused.
        EXPECT_THROW(ControlServer(io, path_, fake_handler), std::runtime_error);
        EXPECT_TRUE(std::filesystem::exists(path_));
        // Leave a stale socket file behind, as a crashed daemon would.
        std::filesystem::path saved = dir_ / "saved";
        std::filesystem::rename(path_, saved);
        first.stop();
        std::filesystem::rename(saved, path_);
    }
    ASSERT_TRUE(std::filesystem::exists(path_));
    start();  // replaces the stale socket
    Client client(path_);
    EXPECT_TRUE(client.call(R"({"object":"echo","verb":"x"})")["ok"].get<bool>());
    stop();

    std::ofstream(path_) << "not a socket";
    asio::io_context io;
    EXPECT_THROW(ControlServer(io, path_, fake_handler), std::runtime_error);
    EXPECT_TRUE(std::filesystem::is_regular_file(path_));
}

TEST_F(ControlServerTest, ConnectionLimit) {
    start();
    std::vector<std::unique_ptr<Client>> clients;
    for (std::size_t i = 0; i < ControlServer::kMaxConnections; ++i) {
        clients.push_back(std::make_unique<Client>(path_));
        ASSERT_TRUE(clients.back()->call(R"({"object":"echo","verb":"x"})")["ok"].get<bool>()) << i;
    }
    Client extra(path_);
    json response = json::parse(extra.read_line());
    EXPECT_EQ(response["ok"], false);
    EXPECT_NE(response["error"].get<std::string>().find("too many connections"), std::string::npos);
    EXPECT_TRUE(extra.closed_by_peer());

    clients.pop_back();  // a slot frees up once the server sees the close
    for (int attempt = 0; attempt < 100; ++attempt) {
        Client again(path_);
        json answer = again.call(R"({"object":"echo","verb":"x"})");
        if (answer["ok"].get<bool>())
            return;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL() << "no slot after a client left";
}

TEST_F(ControlServerTest, IdleConnectionsAreClosed) {
    start(fake_handler, std::chrono::milliseconds(200));
    Client client(path_);
    EXPECT_TRUE(client.call(R"({"object":"echo","verb":"x"})")["ok"].get<bool>());
    auto begin = std::chrono::steady_clock::now();
    EXPECT_TRUE(client.closed_by_peer());
    EXPECT_GE(std::chrono::steady_clock::now() - begin, std::chrono::milliseconds(150));
}

// Blank lines are no request: a connection that sends only those is closed at
// the same deadline, so a handful of them cannot hold every connection slot.
TEST_F(ControlServerTest, BlankLinesDoNotKeepAConnectionOpen) {
    start(fake_handler, std::chrono::milliseconds(300));
    Client client(path_);
    const auto begin = std::chrono::steady_clock::now();
    bool closed = false;
    for (int i = 0; i < 30 && !closed; ++i) {  // a blank line every 50 ms, for up to 1.5 s
        boost::system::error_code ec;
        asio::write(client.socket, asio::buffer(std::string("\n")), ec);
        closed = static_cast<bool>(ec);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_TRUE(closed || client.closed_by_peer());
    EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::milliseconds(1000));
}

TEST(ControlPeer, OnlyRootAndOurOwnUid) {
    EXPECT_TRUE(control_peer_allowed(0, 1000));
    EXPECT_TRUE(control_peer_allowed(1000, 1000));
    EXPECT_FALSE(control_peer_allowed(1001, 1000));
    EXPECT_TRUE(control_peer_allowed(0, 0));
    EXPECT_FALSE(control_peer_allowed(65534, 0));
}

TEST(ControlRespond, WithoutTransport) {
    auto handler = [](const std::string& object, const std::string& verb, const json& args) -> json {
        return {{"object", object}, {"verb", verb}, {"args", args}};
    };
    EXPECT_EQ(json::parse(ControlServer::respond(handler, R"({"object":"a","verb":"b","args":null})")),
              json::parse(R"({"ok":true,"result":{"object":"a","verb":"b","args":{}}})"));
    auto bad_utf8 = [](const std::string&, const std::string&, const json&) -> json { return "\xff"; };
    EXPECT_NO_THROW(json::parse(ControlServer::respond(bad_utf8, R"({"object":"a","verb":"b"})")));
}

TEST(ControlRespond, AsyncAnswersOnceAndCatchesThrows) {
    std::vector<std::string> answers;
    const auto collect = [&](std::string line) { answers.push_back(std::move(line)); };
    ControlServer::AsyncHandler twice = [](const std::string&, const std::string&, const json&,
                                           ControlServer::Reply reply) {
        reply(json{{"first", true}}, "");
        reply(json{{"second", true}}, "");
    };
    ControlServer::respond_async(twice, R"({"object":"a","verb":"b"})", collect);
    ControlServer::AsyncHandler throws = [](const std::string&, const std::string&, const json&, ControlServer::Reply) {
        throw std::runtime_error("no such thing");
    };
    ControlServer::respond_async(throws, R"({"object":"a","verb":"b"})", collect);
    ControlServer::respond_async(throws, "not json", collect);
    ASSERT_EQ(answers.size(), 3u);
    EXPECT_EQ(json::parse(answers[0]), json::parse(R"({"ok":true,"result":{"first":true}})"));
    EXPECT_EQ(json::parse(answers[1]), json::parse(R"({"ok":false,"error":"no such thing"})"));
    EXPECT_EQ(json::parse(answers[2])["ok"], false);
}

}  // namespace
}  // namespace stickylb

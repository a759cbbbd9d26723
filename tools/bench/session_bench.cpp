// SPDX-License-Identifier: Apache-2.0
// session_bench: what stickylb-agent adds to a PHP request's session traffic.
// Each "cycle" is what php-memcached sends per request, on a new TCP
// connection per cycle (sess_persistent=Off) or on one kept connection:
//
//   locked   add memc.sess.key.lock.<sid> 0 30 1 / get memc.sess.key.<sid> /
//            set memc.sess.key.<sid> 0 1440 <~200 bytes> / delete memc.sess.key.lock.<sid>
//   get+set  get / set alone (sess_locking=Off)
//
// against (a) one memcached, directly: the stock handler's path, the baseline;
// (b) a real stickylb-agent with two upstream memcached (2 replicas). Rounds
// alternate direct / agent so drift hits both; 1 and N concurrent clients
// (threads, a session each), and N clients on ONE session (agent only: they
// queue on its lock). Every read is checked against the last write of that
// session, so errors can not pass for fast answers.
//
//   session_bench [--quick] [--agent PATH] [--rounds R] [--cycles C]
//                 [--clients N] [--max-seconds S]
//
// Prints a Markdown section on stdout; progress on stderr.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/memcache_text_client.h"
#include "support/memcached_process.h"

namespace {

using stickylb::testing::MemcachedProcess;
using stickylb::testing::MemcacheTextClient;
using Clock = std::chrono::steady_clock;

struct Options {
    std::string agent = STICKYLB_BUILD_DIR "/userspace/agent/stickylb-agent";
    int rounds = 5;
    int cycles = 1000;  // per client per round; the one-session row: in all, per round
    int clients = 20;
    double max_seconds = 300;
    bool quick = false;
};

int usage(const std::string& problem) {
    std::fprintf(stderr,
                 "session_bench: %s\nusage: session_bench [--quick] [--agent PATH] [--rounds R] [--cycles C] "
                 "[--clients N] [--max-seconds S]\n",
                 problem.c_str());
    return 2;
}

// ------------------------------------------------------------ the agent process

// A real stickylb-agent in its own session, killed by PID when this goes away
// (and by the kernel if this process dies first).
class AgentProcess {
public:
    AgentProcess(const std::string& binary, const std::vector<std::string>& upstreams) {
        if (::access(binary.c_str(), X_OK) != 0)
            throw std::runtime_error("no stickylb-agent at " + binary +
                                     ": build the stickylb-agent target or pass --agent PATH");
        char log_template[] = "/tmp/session_bench-agent.XXXXXX";
        log_fd_ = ::mkstemp(log_template);
        if (log_fd_ < 0)
            throw std::runtime_error(std::string("mkstemp for the agent's log: ") + std::strerror(errno));
        ::unlink(log_template);
        for (int attempt = 0;; ++attempt) {
            port_ = MemcachedProcess::unused_port();
            try {
                start(binary, upstreams);
                return;
            } catch (const std::runtime_error&) {
                if (attempt == 2) {
                    ::close(log_fd_);
                    throw;
                }
            }
        }
    }
    ~AgentProcess() {
        stop();
        ::close(log_fd_);
    }
    AgentProcess(const AgentProcess&) = delete;
    AgentProcess& operator=(const AgentProcess&) = delete;

    std::uint16_t port() const { return port_; }

    // SIGTERM (it releases held locks), SIGKILL if it has not exited within 2 s.
    void stop() {
        if (pid_ <= 0)
            return;
        ::kill(pid_, SIGTERM);
        const auto deadline = Clock::now() + std::chrono::seconds(2);
        while (::waitpid(pid_, nullptr, WNOHANG) == 0) {
            if (Clock::now() > deadline) {
                ::kill(pid_, SIGKILL);
                while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
                }
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        pid_ = -1;
    }

    // What the agent wrote so far, for error messages.
    std::string log_tail() const {
        std::string text(4096, '\0');
        off_t size = ::lseek(log_fd_, 0, SEEK_END);
        off_t from = std::max<off_t>(0, size - static_cast<off_t>(text.size()));
        ssize_t n = ::pread(log_fd_, text.data(), text.size(), from);
        text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
        return text;
    }

private:
    void start(const std::string& binary, const std::vector<std::string>& upstreams) {
        std::vector<std::string> arguments = {binary,
                                              "--backend",
                                              "be1",
                                              "--cluster",
                                              "web",
                                              "--listen",
                                              "127.0.0.1:" + std::to_string(port_),
                                              "--metrics-listen",
                                              "off"};
        for (const auto& upstream : upstreams) {
            arguments.push_back("--upstream");
            arguments.push_back(upstream);
        }
        std::vector<char*> argv;
        for (auto& argument : arguments)
            argv.push_back(argument.data());
        argv.push_back(nullptr);

        const pid_t parent = ::getpid();
        const pid_t child = ::fork();
        if (child < 0)
            throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
        if (child == 0) {
            ::setsid();
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent)
                ::_exit(127);
            ::dup2(log_fd_, STDOUT_FILENO);
            ::dup2(log_fd_, STDERR_FILENO);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        pid_ = child;
        wait_until_answering();
    }

    void wait_until_answering() {
        const auto deadline = Clock::now() + std::chrono::seconds(10);
        for (;;) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("stickylb-agent on port " + std::to_string(port_) +
                                         " exited at start (status " + std::to_string(status) + "):\n" + log_tail());
            }
            try {
                MemcacheTextClient client(port_, std::chrono::seconds(1));
                if (client.command("version").starts_with("VERSION "))
                    return;
            } catch (const std::runtime_error&) {
                // not listening yet
            }
            if (Clock::now() > deadline) {
                stop();
                throw std::runtime_error("stickylb-agent on port " + std::to_string(port_) +
                                         " did not answer `version` within 10 s:\n" + log_tail());
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }

    std::uint16_t port_ = 0;
    pid_t pid_ = -1;
    int log_fd_ = -1;
};

// ------------------------------------------------------------ one session cycle

struct Row {
    bool locked;
    bool new_connection;
    int clients;
    bool shared_session;  // every client on one session id (agent only)
};

// What a session holds between cycles. Under a shared session the clients take
// turns under the memcached lock; the mutex only makes that visible to C++.
struct SessionState {
    std::string sid;
    std::optional<std::string> last_written;
    std::uint64_t count = 0;
    std::mutex mutex;
};

// A PHP-serialized session of about 200 bytes carrying its session id and count.
std::string session_payload(const std::string& sid, std::uint64_t count) {
    std::string blob(150, 'a' + static_cast<char>(count % 26));
    return "sid|s:" + std::to_string(sid.size()) + ":\"" + sid + "\";count|i:" + std::to_string(count) +
           ";blob|s:" + std::to_string(blob.size()) + ":\"" + blob + "\";";
}

class Client {
public:
    Client(std::uint16_t port, const Row& row, std::shared_ptr<SessionState> session)
        : port_(port),
          row_(row),
          session_(std::move(session)),
          data_key_("memc.sess.key." + session_->sid),
          lock_key_("memc.sess.key.lock." + session_->sid) {
        if (!row_.new_connection)
            kept_.emplace(port_);
    }

    std::uint64_t lock_retries() const { return lock_retries_; }

    // One cycle; returns its duration. Throws on any unexpected reply.
    Clock::duration cycle() {
        const auto start = Clock::now();
        std::optional<MemcacheTextClient> fresh;
        MemcacheTextClient& connection = row_.new_connection ? fresh.emplace(port_) : *kept_;
        if (row_.locked)
            lock(connection);
        std::optional<std::string> read = connection.get(data_key_);
        std::string written;
        {
            std::lock_guard guard(session_->mutex);
            if (read != session_->last_written)
                throw std::runtime_error("get " + data_key_ + " returned " + (read ? "\"" + *read + "\"" : "nothing") +
                                         ", the last write was " +
                                         (session_->last_written ? "\"" + *session_->last_written + "\"" : "none"));
            written = session_payload(session_->sid, session_->count + 1);
        }
        expect(connection.store("set", data_key_, written, 0, 1440), "STORED\r\n", "set " + data_key_);
        {
            std::lock_guard guard(session_->mutex);
            session_->last_written = written;
            ++session_->count;
        }
        if (row_.locked)
            unlock(connection);
        return Clock::now() - start;
    }

private:
    static void expect(const std::string& reply, const char* wanted, const std::string& what) {
        if (reply != wanted)
            throw std::runtime_error(what + ": expected " + std::string(wanted, std::strlen(wanted) - 2) + ", got " +
                                     reply.substr(0, reply.find("\r\n")));
    }

    // The agent answers NOT_STORED after holding a contended attempt for its
    // lock_wait; php-memcached would retry, and so do we, at once.
    void lock(MemcacheTextClient& connection) {
        const auto give_up = Clock::now() + std::chrono::seconds(30);
        for (;;) {
            std::string reply = connection.store("add", lock_key_, "1", 0, 30);
            if (reply == "STORED\r\n")
                return;
            if (reply != "NOT_STORED\r\n" || !row_.shared_session || Clock::now() > give_up)
                expect(reply, "STORED\r\n", "add " + lock_key_);
            ++lock_retries_;
        }
    }

    void unlock(MemcacheTextClient& connection) {
        expect(connection.command("delete " + lock_key_), "DELETED\r\n", "delete " + lock_key_);
    }

    std::uint16_t port_;
    Row row_;
    std::shared_ptr<SessionState> session_;
    std::string data_key_, lock_key_;
    std::optional<MemcacheTextClient> kept_;
    std::uint64_t lock_retries_ = 0;
};

// ------------------------------------------------------------ measuring

struct Measured {
    std::vector<Clock::duration> latencies;
    Clock::duration wall{};
    std::uint64_t lock_retries = 0;  // NOT_STORED answers to lock attempts
    bool capped = false;
};

std::string random_sid_prefix() {
    static const char digits[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    std::mt19937_64 random(std::random_device{}());
    std::string prefix;
    for (int i = 0; i < 16; ++i)
        prefix += digits[random() % 36];
    return prefix;
}

// One row against one target: its clients, kept across rounds.
class Phase {
public:
    Phase(const std::string& target, std::uint16_t port, const Row& row, const std::string& sid_prefix)
        : what_(target + " on 127.0.0.1:" + std::to_string(port) + ", " + (row.locked ? "locked" : "get+set") +
                " cycles, " + (row.new_connection ? "new" : "kept") + " connections, " + std::to_string(row.clients) +
                (row.shared_session ? " clients on one session" : " clients")) {
        std::shared_ptr<SessionState> shared;
        for (int i = 0; i < row.clients; ++i) {
            if (!shared || !row.shared_session) {
                shared = std::make_shared<SessionState>();
                shared->sid = sid_prefix + std::to_string(i);
            }
            clients_.push_back(std::make_unique<Client>(port, row, shared));
        }
    }

    // Every client runs `cycles` cycles at once (or until `deadline`); durations recorded unless warming up.
    void run(int cycles, Clock::time_point deadline, Measured* into) {
        std::vector<std::vector<Clock::duration>> latencies(clients_.size());
        std::vector<std::exception_ptr> errors(clients_.size());
        const std::uint64_t retries_before = lock_retries();
        std::atomic<bool> failed{false}, capped{false};
        std::latch ready(static_cast<std::ptrdiff_t>(clients_.size())), go(1);
        std::vector<std::thread> threads;
        auto client_thread = [&](std::size_t i) {
            return std::thread([&, i] {
                ready.count_down();
                go.wait();
                try {
                    latencies[i].reserve(static_cast<std::size_t>(cycles));
                    for (int n = 0; n < cycles && !failed; ++n) {
                        if (Clock::now() > deadline) {
                            capped = true;
                            break;
                        }
                        latencies[i].push_back(clients_[i]->cycle());
                    }
                } catch (...) {
                    errors[i] = std::current_exception();
                    failed = true;
                }
            });
        };
        try {
            for (std::size_t i = 0; i < clients_.size(); ++i)
                threads.push_back(client_thread(i));
        } catch (...) {
            failed = true;  // the threads that did start go through `go` and stop at once
            go.count_down();
            for (auto& thread : threads)
                thread.join();
            throw;
        }
        ready.wait();
        const auto start = Clock::now();
        go.count_down();
        for (auto& thread : threads)
            thread.join();
        const auto wall = Clock::now() - start;
        for (auto& error : errors) {
            if (!error)
                continue;
            try {
                std::rethrow_exception(error);
            } catch (const std::exception& failure) {
                throw std::runtime_error(what_ + ": " + failure.what());
            }
        }
        if (into == nullptr)
            return;
        into->wall += wall;
        into->lock_retries += lock_retries() - retries_before;
        into->capped = into->capped || capped;
        for (auto& client : latencies)
            into->latencies.insert(into->latencies.end(), client.begin(), client.end());
    }

    std::uint64_t lock_retries() const {
        std::uint64_t total = 0;
        for (const auto& client : clients_)
            total += client->lock_retries();
        return total;
    }

private:
    std::string what_;
    std::vector<std::unique_ptr<Client>> clients_;
};

struct Summary {
    double p50_us = 0, p99_us = 0, per_second = 0;
    std::size_t cycles = 0;
};

Summary summarize(Measured& measured) {
    Summary summary;
    auto& values = measured.latencies;
    summary.cycles = values.size();
    if (values.empty())
        return summary;
    std::sort(values.begin(), values.end());
    auto at = [&](double quantile) {
        // Nearest rank.
        std::size_t rank = static_cast<std::size_t>(std::ceil(quantile * static_cast<double>(values.size())));
        return std::chrono::duration<double, std::micro>(values[std::max<std::size_t>(rank, 1) - 1]).count();
    };
    summary.p50_us = at(0.50);
    summary.p99_us = at(0.99);
    summary.per_second = static_cast<double>(values.size()) / std::chrono::duration<double>(measured.wall).count();
    return summary;
}

std::string micros(double value) {
    char text[32];
    std::snprintf(text, sizeof text, value >= 100 ? "%.0f" : "%.1f", value);
    return text;
}
std::string signed_micros(double value) { return (value < 0 ? "-" : "+") + micros(std::fabs(value)); }
std::string rate(double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.0f", value);
    return text;
}

int run(const Options& options) {
    MemcachedProcess direct;
    MemcachedProcess upstream_a, upstream_b;
    AgentProcess agent(options.agent, {upstream_a.address(), upstream_b.address()});
    const std::string sid_prefix = random_sid_prefix();

    const int n = options.clients;
    const std::vector<Row> rows = {
        {true, true, 1, false},   {true, false, 1, false},  {false, true, 1, false},
        {false, false, 1, false}, {true, true, n, false},   {true, false, n, false},
        {false, true, n, false},  {false, false, n, false}, {true, true, n, true},
    };
    struct RowRun {
        std::optional<Phase> direct, agent;
        Measured direct_measured, agent_measured;
    };
    std::vector<RowRun> runs(rows.size());
    int phases_left = 0;
    for (std::size_t r = 0; r < rows.size(); ++r) {
        const std::string prefix = sid_prefix + "r" + std::to_string(r) + "c";
        if (!rows[r].shared_session) {
            runs[r].direct.emplace("memcached", direct.port(), rows[r], prefix);
            phases_left += options.rounds;
        }
        runs[r].agent.emplace("stickylb-agent", agent.port(), rows[r], prefix);
        phases_left += options.rounds;
    }

    try {
        // Warm-up: sessions exist, connections and both servers' memory are in use.
        const auto no_cap = Clock::now() + std::chrono::hours(1);
        for (auto& row_run : runs) {
            if (row_run.direct)
                row_run.direct->run(std::min(options.cycles, 20), no_cap, nullptr);
            row_run.agent->run(std::min(options.cycles, 20), no_cap, nullptr);
        }
        // One session is served one cycle at a time: its cycles are shared out, not multiplied.
        auto cycles_per_client = [&](const Row& row) {
            return row.shared_session ? std::max(1, options.cycles / row.clients) : options.cycles;
        };

        // Each phase may use its share of what is left of the wall-clock budget.
        const auto end_by = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double>(options.max_seconds));
        auto phase_deadline = [&] { return Clock::now() + (end_by - Clock::now()) / std::max(phases_left--, 1); };
        for (int round = 0; round < options.rounds; ++round) {
            std::fprintf(stderr, "session_bench: round %d of %d\n", round + 1, options.rounds);
            for (std::size_t r = 0; r < rows.size(); ++r) {
                RowRun& row_run = runs[r];
                const int cycles = cycles_per_client(rows[r]);
                if (row_run.direct)
                    row_run.direct->run(cycles, phase_deadline(), &row_run.direct_measured);
                row_run.agent->run(cycles, phase_deadline(), &row_run.agent_measured);
            }
        }
    } catch (const std::exception& error) {
        throw std::runtime_error(std::string(error.what()) + "\nstickylb-agent's log (end):\n" + agent.log_tail());
    }

    std::printf("## Sessions: session_bench\n\n");
    std::printf(
        "`session_bench%s`: %d rounds of %d cycles per client (the one-session row: %d per round in all),\n"
        "alternating direct and agent; wall-clock cap %.0f s.\n"
        "How to read it: a *cycle* is one PHP request's session traffic as php-memcached sends it: *locked* is\n"
        "`add memc.sess.key.lock.<sid> 0 30 1`, `get memc.sess.key.<sid>`, `set memc.sess.key.<sid> 0 1440` of a\n"
        "~200-byte session, `delete` of the lock; *get+set* is the get and set alone. *new* connects per cycle\n"
        "(PHP's default, sess_persistent=Off; the connect is timed), *kept* reuses one connection. The baseline\n"
        "is memcached direct (the stock handler, one server); the agent writes 2 versioned replicas to two\n"
        "memcached and takes owner-checked locks with meta commands. Latencies are per cycle (p50, p99 over all\n"
        "rounds, µs); cycles/s is the total over the clients; added = agent p50 - direct p50. Every read is\n"
        "checked against the session's last write. Machine: 2 cores shared by the clients, the agent and the\n"
        "memcached processes, so the concurrent rows measure contention for the CPUs as much as the code.\n\n",
        options.quick ? " --quick" : "", options.rounds, options.cycles, options.cycles, options.max_seconds);
    std::printf(
        "| cycle | connection | clients | direct p50 | direct p99 | direct cycles/s | agent p50 | agent p99 | "
        "agent cycles/s | agent/direct p50 | added p50 |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    std::string shared_note;
    bool any_capped = false;
    for (std::size_t r = 0; r < rows.size(); ++r) {
        const Row& row = rows[r];
        RowRun& row_run = runs[r];
        const bool capped = row_run.direct_measured.capped || row_run.agent_measured.capped;
        any_capped = any_capped || capped;
        Summary agent_summary = summarize(row_run.agent_measured);
        std::string clients =
            std::to_string(row.clients) + (row.shared_session ? ", one session" : "") + (capped ? " (capped)" : "");
        std::printf("| %s | %s | %s | ", row.locked ? "locked" : "get+set", row.new_connection ? "new" : "kept",
                    clients.c_str());
        if (row_run.direct) {
            Summary direct_summary = summarize(row_run.direct_measured);
            std::printf("%s | %s | %s | %s | %s | %s | %.2fx | %s |\n", micros(direct_summary.p50_us).c_str(),
                        micros(direct_summary.p99_us).c_str(), rate(direct_summary.per_second).c_str(),
                        micros(agent_summary.p50_us).c_str(), micros(agent_summary.p99_us).c_str(),
                        rate(agent_summary.per_second).c_str(), agent_summary.p50_us / direct_summary.p50_us,
                        signed_micros(agent_summary.p50_us - direct_summary.p50_us).c_str());
        } else {
            std::printf("- | - | - | %s | %s | %s | - | - |\n", micros(agent_summary.p50_us).c_str(),
                        micros(agent_summary.p99_us).c_str(), rate(agent_summary.per_second).c_str());
            const Measured& measured = row_run.agent_measured;
            shared_note =
                "\nOne session, " + std::to_string(row.clients) +
                " clients: they queue on its lock, so a cycle is mostly the wait for the others and\n"
                "cycles/s is the session's serial rate. " +
                std::to_string(agent_summary.cycles) +
                " cycles; every read saw the previous writer's value. Lock attempts answered\n"
                "NOT_STORED (the agent holds each up to its lock_wait, 100 ms; the client retried at once, as\n"
                "php-memcached does after its sleep): " +
                std::to_string(measured.lock_retries) +
                ". The stock handler needs client-side sleeps between lock\n"
                "attempts for this, so the row has no direct baseline.\n";
        }
    }
    std::fputs(shared_note.c_str(), stdout);
    if (any_capped)
        std::printf("\n(capped): the row hit its share of the wall-clock cap before all its cycles ran.\n");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    bool cycles_given = false, max_given = false;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string argument = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc)
                    throw std::invalid_argument(argument + " needs a value");
                return argv[++i];
            };
            if (argument == "--quick") {
                options.quick = true;
            } else if (argument == "--agent") {
                options.agent = value();
            } else if (argument == "--rounds") {
                options.rounds = std::max(1, std::stoi(value()));
            } else if (argument == "--cycles") {
                options.cycles = std::max(1, std::stoi(value()));
                cycles_given = true;
            } else if (argument == "--clients") {
                options.clients = std::max(1, std::stoi(value()));
            } else if (argument == "--max-seconds") {
                options.max_seconds = std::max(1.0, std::stod(value()));
                max_given = true;
            } else {
                return usage("unknown argument " + argument);
            }
        }
    } catch (const std::exception& error) {
        return usage(error.what());
    }
    if (options.quick) {
        if (!cycles_given)
            options.cycles = 100;
        if (!max_given)
            options.max_seconds = 60;
    }
    std::signal(SIGPIPE, SIG_IGN);
    try {
        return run(options);
    } catch (const std::exception& error) {
        std::fprintf(stderr, "session_bench: %s\n", error.what());
        return 1;
    }
}

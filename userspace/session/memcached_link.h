// SPDX-License-Identifier: Apache-2.0
#pragma once
// One memcached server, driven from its own thread: libmemcached blocks, so the
// daemon never calls it on the io_context. A stuck or dead server only ever
// delays its own link; the daemon hands work over and hears back later (each
// Done runs on the link's thread: post to the io_context from there).
//
//  - publish(key, ...): small, latest-wins writes (membership views). A publish
//    of a key replaces that key's queued one; publishes run before other work.
//  - submit(...): everything else (snapshots, reads), in order. Long work comes
//    in steps (submit_steps): pending publishes run between two steps, so a view
//    never waits behind more than one step of a snapshot.
//  - After a failure the link backs off (doubling from backoff_initial up to
//    backoff_max, reset by a success) and reconnects: publishes and patient work
//    wait for the backoff to end, fail_fast work fails at once instead.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "session/memcached_client.h"

namespace stickylb {

struct MemcachedLinkOptions {
    MemcachedTimeouts timeouts;
    std::chrono::milliseconds backoff_initial{100};
    std::chrono::milliseconds backoff_max{2000};
};

struct MemcachedLinkStatus {
    std::string server;
    bool up = false;                        // the last operation succeeded (false until one has)
    std::uint64_t errors = 0;               // failed operations
    std::string last_error;                 // empty if none yet
    std::int64_t last_success_ms = 0;       // wall clock, ms since the Unix epoch; 0: never
    std::chrono::milliseconds retry_in{0};  // > 0 while backing off
};

class MemcachedLink {
public:
    using Work = std::function<void(MemcachedClient&)>;          // throws on failure
    using Steps = std::function<bool(MemcachedClient&)>;         // one step; true: more to come
    using Done = std::function<void(const std::string& error)>;  // "" on success

    MemcachedLink(std::string server, MemcachedLinkOptions options);
    ~MemcachedLink();  // stop()
    MemcachedLink(const MemcachedLink&) = delete;
    MemcachedLink& operator=(const MemcachedLink&) = delete;

    const std::string& server() const { return server_; }

    // The replaced publish's done is called with the outcome of the one replacing it.
    void publish(const std::string& key, Work work, Done done);
    void submit(Work work, Done done, bool fail_fast);
    void submit_steps(Steps steps, Done done, bool fail_fast);
    MemcachedLinkStatus status() const;

    // Waits for the operation in flight (bounded by the timeouts); queued work is
    // not run, its done gets the error "stopped". Idempotent.
    void stop();

private:
    struct Job {
        std::string key;  // publishes only
        Steps steps;
        std::vector<Done> done;
        bool fail_fast = false;
    };
    void run();
    // One step of the job; true when it has more steps (and has not failed).
    bool execute(Job& job);

    const std::string server_;
    const MemcachedLinkOptions options_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Job> publishes_, work_;  // work_.front() may be under way (started_)
    bool started_ = false;
    bool stopping_ = false;
    MemcachedLinkStatus status_;
    std::chrono::steady_clock::time_point retry_at_{};
    std::chrono::milliseconds backoff_;
    std::unique_ptr<MemcachedClient> client_;  // the link thread's only
    std::thread thread_;
};

}  // namespace stickylb

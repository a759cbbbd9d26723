// SPDX-License-Identifier: Apache-2.0
#pragma once
// One thread that runs jobs in order, off the daemon's io_context: walks of the
// affinity table (a million entries take a good fraction of a second) and
// snapshot encoding must never hold up reconciles or health checks. A job
// reports back with boost::asio::post to the io_context.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace stickylb {

class BackgroundWorker {
public:
    explicit BackgroundWorker(const std::string& thread_name);
    ~BackgroundWorker();  // stop()
    BackgroundWorker(const BackgroundWorker&) = delete;
    BackgroundWorker& operator=(const BackgroundWorker&) = delete;

    // Jobs must not throw (an escaping exception is logged and dropped).
    void post(std::function<void()> job);
    // Finishes the job in flight, drops the queued ones, joins. Idempotent.
    void stop();

private:
    void run();

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> jobs_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace stickylb

// SPDX-License-Identifier: Apache-2.0
#include "session/memcached_link.h"

#include <pthread.h>

#include <algorithm>
#include <cstdio>

namespace stickylb {
namespace {

using Clock = std::chrono::steady_clock;

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

MemcachedLink::MemcachedLink(std::string server, MemcachedLinkOptions options)
    : server_(std::move(server)), options_(options), backoff_(options.backoff_initial) {
    status_.server = server_;
    thread_ = std::thread([this] { run(); });
    pthread_setname_np(thread_.native_handle(), "slb-memcached");
}

MemcachedLink::~MemcachedLink() { stop(); }

namespace {

MemcachedLink::Steps one_step(MemcachedLink::Work work) {
    return [work = std::move(work)](MemcachedClient& client) {
        work(client);
        return false;
    };
}

}  // namespace

void MemcachedLink::publish(const std::string& key, Work work, Done done) {
    {
        std::lock_guard lock(mutex_);
        if (!stopping_) {
            const auto queued =
                std::find_if(publishes_.begin(), publishes_.end(), [&](const Job& job) { return job.key == key; });
            if (queued != publishes_.end()) {
                queued->steps = one_step(std::move(work));
                if (done)
                    queued->done.push_back(std::move(done));
            } else {
                Job job{key, one_step(std::move(work)), {}, false};
                if (done)
                    job.done.push_back(std::move(done));
                publishes_.push_back(std::move(job));
            }
            wake_.notify_one();
            return;
        }
    }
    if (done)
        done("stopped");
}  // NOLINT(clang-analyzer-cplusplus.NewDeleteLeaks): false positive, the analyzer loses the std::function moved into the queued Job

void MemcachedLink::submit(Work work, Done done, bool fail_fast) {
    submit_steps(one_step(std::move(work)), std::move(done), fail_fast);
}

void MemcachedLink::submit_steps(Steps steps, Done done, bool fail_fast) {
    {
        std::lock_guard lock(mutex_);
        if (!stopping_) {
            Job job{{}, std::move(steps), {}, fail_fast};
            if (done)
                job.done.push_back(std::move(done));
            work_.push_back(std::move(job));
            wake_.notify_one();
            return;
        }
    }
    if (done)
        done("stopped");
}

MemcachedLinkStatus MemcachedLink::status() const {
    std::lock_guard lock(mutex_);
    MemcachedLinkStatus status = status_;
    const auto now = Clock::now();
    status.retry_in =
        retry_at_ > now ? std::chrono::ceil<std::chrono::milliseconds>(retry_at_ - now) : std::chrono::milliseconds(0);
    return status;
}

void MemcachedLink::stop() {
    {
        std::lock_guard lock(mutex_);
        if (stopping_ && !thread_.joinable())
            return;
        stopping_ = true;
        wake_.notify_all();
    }
    if (thread_.joinable())
        thread_.join();
    std::deque<Job> abandoned;
    {
        std::lock_guard lock(mutex_);
        abandoned = std::move(publishes_);
        for (Job& job : work_)
            abandoned.push_back(std::move(job));
        publishes_.clear();
        work_.clear();
    }
    for (Job& job : abandoned)
        for (const Done& done : job.done)
            done("stopped");
}

void MemcachedLink::run() {
    std::unique_lock lock(mutex_);
    for (;;) {
        wake_.wait(lock, [&] { return stopping_ || !publishes_.empty() || !work_.empty(); });
        if (stopping_)
            return;
        if (Clock::now() < retry_at_) {
            // Backing off: impatient work not yet started fails now, the rest waits.
            std::vector<Job> refused;
            for (auto it = work_.begin(); it != work_.end();) {
                if (it->fail_fast && !(started_ && it == work_.begin())) {
                    refused.push_back(std::move(*it));
                    it = work_.erase(it);
                } else {
                    ++it;
                }
            }
            if (!refused.empty()) {
                const auto wait = std::chrono::ceil<std::chrono::milliseconds>(retry_at_ - Clock::now());
                const std::string error = "memcached " + server_ + ": not tried, backing off for another " +
                                          std::to_string(wait.count()) + " ms after: " + status_.last_error;
                lock.unlock();
                for (const Job& job : refused)
                    for (const Done& done : job.done)
                        done(error);
                lock.lock();
                continue;
            }
            wake_.wait_until(lock, retry_at_, [&] {
                const auto first = work_.begin() + (started_ && !work_.empty() ? 1 : 0);
                return stopping_ || std::any_of(first, work_.end(), [](const Job& job) { return job.fail_fast; });
            });
            continue;
        }
        if (!publishes_.empty()) {
            Job job = std::move(publishes_.front());
            publishes_.pop_front();
            lock.unlock();
            execute(job);
            lock.lock();
            continue;
        }
        // One step of the oldest work; it stays at the front while it has more.
        Job job = std::move(work_.front());
        work_.pop_front();
        started_ = false;
        lock.unlock();
        const bool more = execute(job);
        lock.lock();
        if (more) {
            work_.push_front(std::move(job));
            started_ = true;
        }
    }
}

// On the link thread, without the lock (the step blocks on the network).
bool MemcachedLink::execute(Job& job) {
    std::string error;
    bool more = false;
    try {
        if (!client_)
            client_ = std::make_unique<MemcachedClient>(server_, options_.timeouts);
        more = job.steps(*client_);
    } catch (const std::exception& failure) {
        error = failure.what();
        if (error.empty())
            error = "memcached " + server_ + ": unknown failure";
        client_.reset();  // reconnect from scratch after the backoff
    }
    {
        std::lock_guard lock(mutex_);
        if (error.empty()) {
            status_.up = true;
            status_.last_success_ms = wall_ms();
            backoff_ = options_.backoff_initial;
            retry_at_ = {};
        } else {
            status_.up = false;
            ++status_.errors;
            status_.last_error = error;
            retry_at_ = Clock::now() + backoff_;
            backoff_ = std::min(backoff_ * 2, options_.backoff_max);
        }
    }
    if (more)
        return true;
    for (const Done& done : job.done)
        done(error);
    return false;
}

}  // namespace stickylb

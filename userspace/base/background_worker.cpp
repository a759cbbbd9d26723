// SPDX-License-Identifier: Apache-2.0
#include "base/background_worker.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

namespace stickylb {

BackgroundWorker::BackgroundWorker(const std::string& thread_name) {
    thread_ = std::thread([this] { run(); });
    pthread_setname_np(thread_.native_handle(), thread_name.substr(0, 15).c_str());
}

BackgroundWorker::~BackgroundWorker() { stop(); }

void BackgroundWorker::post(std::function<void()> job) {
    std::lock_guard lock(mutex_);
    if (stopping_)
        return;
    jobs_.push_back(std::move(job));
    wake_.notify_one();
}

void BackgroundWorker::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        jobs_.clear();
        wake_.notify_all();
    }
    if (thread_.joinable())
        thread_.join();
}

void BackgroundWorker::run() {
    std::unique_lock lock(mutex_);
    for (;;) {
        wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
        if (stopping_)
            return;
        auto job = std::move(jobs_.front());
        jobs_.pop_front();
        lock.unlock();
        try {
            job();
        } catch (const std::exception& error) {
            spdlog::error("background job failed: {}", error.what());
        }
        lock.lock();
    }
}

}  // namespace stickylb

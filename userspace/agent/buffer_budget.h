// SPDX-License-Identifier: Apache-2.0
#pragma once
// One ceiling on the bytes every client connection together may hold in
// buffers: requests that have started and not finished (a command line, a
// data block on its way) and replies queued for a client that has not read
// them yet. Each connection holds a Share and says how much it holds now; a
// share that would take the total past the ceiling is refused, and the
// connection ends (as memcached closes a client it cannot buffer for).
#include <cstddef>

namespace stickylb::agent {

class BufferBudget {
public:
    explicit BufferBudget(std::size_t limit) : limit_(limit) {}
    BufferBudget(const BufferBudget&) = delete;
    BufferBudget& operator=(const BufferBudget&) = delete;

    std::size_t limit() const { return limit_; }
    std::size_t used() const { return used_; }

    class Share {
    public:
        explicit Share(BufferBudget& budget) : budget_(budget) {}
        Share(const Share&) = delete;
        Share& operator=(const Share&) = delete;
        ~Share() { budget_.used_ -= held_; }

        // This share holds `bytes` now. False, holding what it held before, if
        // the total would pass the limit (shrinking always succeeds).
        bool hold(std::size_t bytes) {
            if (bytes > held_ && budget_.used_ - held_ + bytes > budget_.limit_)
                return false;
            budget_.used_ = budget_.used_ - held_ + bytes;
            held_ = bytes;
            return true;
        }
        std::size_t held() const { return held_; }

    private:
        BufferBudget& budget_;
        std::size_t held_ = 0;
    };

private:
    std::size_t limit_;
    std::size_t used_ = 0;
};

}  // namespace stickylb::agent

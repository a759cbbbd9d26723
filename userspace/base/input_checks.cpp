// SPDX-License-Identifier: Apache-2.0
#include "base/input_checks.h"

#include "base/bounded_json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace stickylb {

std::string read_bounded_file(const std::string& path, std::size_t limit) {
    const auto fail = [&](const std::string& why) { return std::runtime_error(path + ": " + why); };
    // O_NONBLOCK: opening a FIFO with no writer must not hang; it is refused below.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        throw fail(std::string("cannot read: ") + std::strerror(errno));
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
        const int error = errno;
        ::close(fd);
        throw fail(std::string("cannot read: ") + std::strerror(error));
    }
    if (!S_ISREG(info.st_mode)) {
        ::close(fd);
        const char* what = S_ISDIR(info.st_mode)    ? "a directory"
                           : S_ISFIFO(info.st_mode) ? "a FIFO"
                           : S_ISCHR(info.st_mode)  ? "a character device"
                           : S_ISBLK(info.st_mode)  ? "a block device"
                           : S_ISSOCK(info.st_mode) ? "a socket"
                                                    : "not a regular file";
        throw fail(std::string("is ") + what + ", not a regular file");
    }
    if (static_cast<std::uint64_t>(info.st_size) > limit) {
        ::close(fd);
        throw fail("is " + std::to_string(info.st_size) + " bytes, larger than the limit of " + std::to_string(limit));
    }
    std::string text;
    text.resize(static_cast<std::size_t>(info.st_size) + 1);  // one more: a file that grew is noticed
    std::size_t have = 0;
    for (;;) {
        if (have == text.size()) {
            if (text.size() > limit)
                break;
            text.resize(std::min(limit + 1, text.size() * 2));
        }
        const ssize_t got = ::read(fd, text.data() + have, text.size() - have);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got < 0) {
            const int error = errno;
            ::close(fd);
            throw fail(std::string("cannot read: ") + std::strerror(error));
        }
        if (got == 0)
            break;
        have += static_cast<std::size_t>(got);
    }
    ::close(fd);
    if (have > limit)
        throw fail("grew past the limit of " + std::to_string(limit) + " bytes while being read");
    text.resize(have);
    return text;
}

std::optional<std::string> text_problem(std::string_view text) {
    const auto at = [](std::size_t offset) { return " at byte " + std::to_string(offset); };
    for (std::size_t i = 0; i < text.size();) {
        const auto byte = static_cast<unsigned char>(text[i]);
        if (byte < 0x20 || byte == 0x7f) {
            char code[8];
            std::snprintf(code, sizeof code, "0x%02x", byte);
            return std::string("a control character (") + code + ")" + at(i);
        }
        if (byte < 0x80) {
            ++i;
            continue;
        }
        // Lengths and ranges of RFC 3629: no overlong forms, no surrogates, at most U+10FFFF.
        std::size_t length = 0;
        std::uint32_t point = 0;
        if (byte >= 0xc2 && byte <= 0xdf) {
            length = 2;
            point = byte & 0x1f;
        } else if (byte >= 0xe0 && byte <= 0xef) {
            length = 3;
            point = byte & 0x0f;
        } else if (byte >= 0xf0 && byte <= 0xf4) {
            length = 4;
            point = byte & 0x07;
        } else {
            return "not valid UTF-8" + at(i);
        }
        if (i + length > text.size())
            return "not valid UTF-8 (truncated)" + at(i);
        for (std::size_t k = 1; k < length; ++k) {
            const auto next = static_cast<unsigned char>(text[i + k]);
            if ((next & 0xc0) != 0x80)
                return "not valid UTF-8" + at(i);
            point = (point << 6) | (next & 0x3f);
        }
        const bool overlong = (length == 3 && point < 0x800) || (length == 4 && point < 0x10000);
        if (overlong || (point >= 0xd800 && point <= 0xdfff) || point > 0x10ffff)
            return "not valid UTF-8" + at(i);
        if (point >= 0x80 && point <= 0x9f)
            return "a control character (U+00" + std::string(1, "0123456789ABCDEF"[point >> 4]) +
                   std::string(1, "0123456789ABCDEF"[point & 0xf]) + ")" + at(i);
        i += length;
    }
    return std::nullopt;
}

nlohmann::json parse_json_bounded(std::string_view text, int max_depth) {
    return nlohmann::json::parse(text, [max_depth](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
        if (depth > max_depth)
            throw JsonTooDeep("nested deeper than " + std::to_string(max_depth) + " levels");
        return true;
    });
}

bool printable_word(std::string_view text, std::size_t max_bytes) {
    return !text.empty() && text.size() <= max_bytes &&
           std::all_of(text.begin(), text.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

}  // namespace stickylb

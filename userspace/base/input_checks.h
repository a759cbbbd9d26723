// SPDX-License-Identifier: Apache-2.0
#pragma once
// Checks on input every binary reads from outside: files given on the command
// line (a config, bounded in size, never a FIFO or a device), and names that
// end up in logs, JSON and metric labels (valid UTF-8, no control characters).
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace stickylb {

inline constexpr std::size_t kMaxConfigFileBytes = 1024 * 1024;

// The whole of a regular file of at most `limit` bytes. Throws
// std::runtime_error "PATH: REASON" (not found, a directory, a FIFO or device,
// larger than the limit, a read error); never blocks on what is not a file.
std::string read_bounded_file(const std::string& path, std::size_t limit = kMaxConfigFileBytes);

// Why `text` is not valid UTF-8 or holds a control character (C0, DEL, C1),
// or nullopt when it is fine.
std::optional<std::string> text_problem(std::string_view text);

// 1 to max_bytes printable ASCII characters, no space: a name or key read from outside.
bool printable_word(std::string_view text, std::size_t max_bytes);

}  // namespace stickylb

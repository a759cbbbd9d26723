// SPDX-License-Identifier: Apache-2.0
#pragma once
// Raw rtnetlink, the pieces the neighbour table and the announced routes share: a
// request under construction, one NETLINK_ROUTE socket that sends it and hands each
// reply to the caller, and the attribute walk of a reply.
//
// Not thread-safe: one RouteSocket per thread.
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/address.h"

namespace stickylb::netlink {

std::uint8_t address_family(const IpAddress& address);
std::size_t address_length(const IpAddress& address);
// Throws std::runtime_error for a family or length that is not IPv4 or IPv6.
IpAddress address_from(std::uint8_t family, const void* data, std::size_t length);

// A netlink request under construction: header, fixed part, then attributes.
class Message {
public:
    Message(std::uint16_t type, std::uint16_t flags, const void* fixed, std::size_t fixed_length);
    void add(std::uint16_t type, const void* data, std::size_t length);
    nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(buffer_.data()); }

private:
    std::vector<std::uint8_t> buffer_;
};

// Attributes of a reply's payload after its fixed part, by type (last one wins).
std::vector<const rtattr*> attributes(const std::string& payload, std::size_t fixed_length, std::size_t max_type);

// "WHAT (the kernel's reason)", or WHAT when the kernel gave none.
std::string with_kernel_reason(const std::string& what, const std::string& extack);

class RouteSocket {
public:
    // Opens a NETLINK_ROUTE socket in the caller's network namespace (throws SystemError).
    // With filter_dumps, the kernel checks requests strictly and answers a dump with
    // only what matches the fields its request sets (NETLINK_GET_STRICT_CHK: rtm_table,
    // rtm_protocol, RTA_TABLE of a route dump), instead of the whole table.
    explicit RouteSocket(bool filter_dumps = false);
    RouteSocket(RouteSocket&& other) noexcept;
    RouteSocket& operator=(RouteSocket&& other) noexcept;
    RouteSocket(const RouteSocket&) = delete;
    RouteSocket& operator=(const RouteSocket&) = delete;
    ~RouteSocket();

    using OnReply = std::function<void(const std::string& payload)>;
    // Sends one request; the payload of every reply of reply_type goes to on_reply
    // (a dump answers with many). Returns 0 or -errno (a dump's too), the kernel's
    // extended ack message (if any) in extack_message.
    int request(Message& message, std::uint16_t reply_type, const OnReply& on_reply, std::string& extack_message);

private:
    int fd_ = -1;
    std::uint32_t sequence_ = 0;
};

}  // namespace stickylb::netlink

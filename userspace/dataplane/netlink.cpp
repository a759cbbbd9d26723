// SPDX-License-Identifier: Apache-2.0
#include "dataplane/netlink.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "base/errors.h"

namespace stickylb::netlink {

std::uint8_t address_family(const IpAddress& address) { return address.is_v4() ? AF_INET : AF_INET6; }
std::size_t address_length(const IpAddress& address) { return address.is_v4() ? 4 : 16; }

IpAddress address_from(std::uint8_t family, const void* data, std::size_t length) {
    stickylb_addr abi{};
    if (family == AF_INET && length == 4) {
        std::memcpy(abi.bytes, data, 4);
        return IpAddress::from_abi(abi, STICKYLB_FAMILY_IPV4);
    }
    if (family == AF_INET6 && length == 16) {
        std::memcpy(abi.bytes, data, 16);
        return IpAddress::from_abi(abi, STICKYLB_FAMILY_IPV6);
    }
    throw std::runtime_error("netlink: unexpected address of family " + std::to_string(family) + ", length " +
                             std::to_string(length));
}

Message::Message(std::uint16_t type, std::uint16_t flags, const void* fixed, std::size_t fixed_length) {
    buffer_.resize(NLMSG_SPACE(fixed_length));
    auto* header = this->header();
    header->nlmsg_len = NLMSG_LENGTH(fixed_length);
    header->nlmsg_type = type;
    header->nlmsg_flags = static_cast<std::uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
    std::memcpy(NLMSG_DATA(header), fixed, fixed_length);
}

void Message::add(std::uint16_t type, const void* data, std::size_t length) {
    const std::size_t offset = NLMSG_ALIGN(header()->nlmsg_len);
    buffer_.resize(offset + RTA_SPACE(length));
    auto* attribute = reinterpret_cast<rtattr*>(buffer_.data() + offset);
    attribute->rta_type = type;
    attribute->rta_len = static_cast<unsigned short>(RTA_LENGTH(length));
    std::memcpy(RTA_DATA(attribute), data, length);
    header()->nlmsg_len = static_cast<std::uint32_t>(offset + RTA_SPACE(length));
}

std::vector<const rtattr*> attributes(const std::string& payload, std::size_t fixed_length, std::size_t max_type) {
    std::vector<const rtattr*> by_type(max_type + 1, nullptr);
    if (payload.size() < NLMSG_ALIGN(fixed_length))
        return by_type;
    auto* attribute = reinterpret_cast<const rtattr*>(payload.data() + NLMSG_ALIGN(fixed_length));
    int remaining = static_cast<int>(payload.size() - NLMSG_ALIGN(fixed_length));
    for (; RTA_OK(attribute, remaining); attribute = RTA_NEXT(attribute, remaining))
        if (attribute->rta_type <= max_type)
            by_type[attribute->rta_type] = attribute;
    return by_type;
}

std::string with_kernel_reason(const std::string& what, const std::string& extack) {
    return extack.empty() ? what : what + " (" + extack + ")";
}

RouteSocket::RouteSocket(bool filter_dumps) {
    fd_ = check_syscall(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), "open a NETLINK_ROUTE socket");
    const int on = 1;
    // Best effort: the kernel's reason for a refusal, in our error messages.
    setsockopt(fd_, SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof(on));
    setsockopt(fd_, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof(on));
    if (filter_dumps && setsockopt(fd_, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &on, sizeof(on)) != 0) {
        const int error = errno;
        close(fd_);
        throw SystemError("ask for filtered netlink dumps (NETLINK_GET_STRICT_CHK, Linux 4.20)", error);
    }
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
        const int error = errno;
        close(fd_);
        throw SystemError("bind the NETLINK_ROUTE socket", error);
    }
}

RouteSocket::RouteSocket(RouteSocket&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), sequence_(other.sequence_) {}

RouteSocket& RouteSocket::operator=(RouteSocket&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0)
            close(fd_);
        fd_ = std::exchange(other.fd_, -1);
        sequence_ = other.sequence_;
    }
    return *this;
}

RouteSocket::~RouteSocket() {
    if (fd_ >= 0)
        close(fd_);
}

namespace {

std::string extack_of(const nlmsghdr* reply_header, const nlmsgerr* error) {
    if (!(reply_header->nlmsg_flags & NLM_F_ACK_TLVS) || error->error == 0)
        return {};
    // TLVs follow the error and the (capped) request header.
    std::size_t offset = sizeof(nlmsgerr);
    if (!(reply_header->nlmsg_flags & NLM_F_CAPPED))
        offset += error->msg.nlmsg_len - sizeof(nlmsghdr);
    const std::size_t payload = reply_header->nlmsg_len - NLMSG_LENGTH(0);
    if (offset >= payload)
        return {};
    auto* attribute = reinterpret_cast<const rtattr*>(static_cast<const std::uint8_t*>(NLMSG_DATA(reply_header)) +
                                                      NLMSG_ALIGN(offset));
    int left = static_cast<int>(payload - NLMSG_ALIGN(offset));
    for (; RTA_OK(attribute, left); attribute = RTA_NEXT(attribute, left))
        if (attribute->rta_type == NLMSGERR_ATTR_MSG)
            return static_cast<const char*>(RTA_DATA(attribute));
    return {};
}

}  // namespace

int RouteSocket::request(Message& message, std::uint16_t reply_type, const OnReply& on_reply,
                         std::string& extack_message) {
    nlmsghdr* header = message.header();
    header->nlmsg_seq = ++sequence_;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd_, header, header->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0)
        throw SystemError("send a netlink request", errno);
    std::vector<std::uint8_t> buffer(65536);
    for (;;) {
        const ssize_t received = recv(fd_, buffer.data(), buffer.size(), 0);
        if (received < 0) {
            if (errno == EINTR)
                continue;
            throw SystemError("receive a netlink reply", errno);
        }
        int remaining = static_cast<int>(received);
        for (auto* reply_header = reinterpret_cast<nlmsghdr*>(buffer.data()); NLMSG_OK(reply_header, remaining);
             reply_header = NLMSG_NEXT(reply_header, remaining)) {
            if (reply_header->nlmsg_seq != sequence_)
                continue;  // a late answer to an earlier request
            if (reply_header->nlmsg_type == reply_type) {
                if (on_reply)
                    on_reply(std::string(static_cast<const char*>(NLMSG_DATA(reply_header)),
                                         reply_header->nlmsg_len - NLMSG_LENGTH(0)));
                continue;
            }
            if (reply_header->nlmsg_type == NLMSG_DONE) {
                // A dump that failed says why in its DONE: an int (-errno), then TLVs.
                int status = 0;
                if (reply_header->nlmsg_len >= NLMSG_LENGTH(sizeof(status)))
                    std::memcpy(&status, NLMSG_DATA(reply_header), sizeof(status));
                return status;
            }
            if (reply_header->nlmsg_type != NLMSG_ERROR)
                continue;
            const auto* error = static_cast<const nlmsgerr*>(NLMSG_DATA(reply_header));
            extack_message = extack_of(reply_header, error);
            return error->error;  // 0 (the ack) or -errno
        }
    }
}

}  // namespace stickylb::netlink

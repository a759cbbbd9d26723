// SPDX-License-Identifier: Apache-2.0
#include "dataplane/neighbours.h"

#include <arpa/inet.h>
#include <linux/neighbour.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

#include "base/errors.h"
#include "dataplane/netlink.h"

namespace stickylb {
namespace {

constexpr std::uint16_t kUsableStates = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;

using netlink::address_family;
using netlink::address_from;
using netlink::address_length;
using netlink::attributes;
using netlink::Message;
using netlink::with_kernel_reason;

}  // namespace

NeighbourTable::NeighbourTable() = default;
NeighbourTable::NeighbourTable(NeighbourTable&& other) noexcept = default;
NeighbourTable& NeighbourTable::operator=(NeighbourTable&& other) noexcept = default;
NeighbourTable::~NeighbourTable() = default;

int NeighbourTable::request(Message& message, std::uint16_t reply_type, std::string& reply,
                            std::string& extack_message) {
    return socket_.request(
        message, reply_type, [&reply](const std::string& payload) { reply = payload; }, extack_message);
}

std::optional<Neighbour> NeighbourTable::entry(std::uint32_t ifindex, const IpAddress& address) {
    ndmsg fixed{};
    fixed.ndm_family = address_family(address);
    fixed.ndm_ifindex = static_cast<int>(ifindex);
    Message message(RTM_GETNEIGH, 0, &fixed, sizeof(fixed));
    message.add(NDA_DST, address.bytes().data(), address_length(address));
    std::string reply, extack;
    const int rc = request(message, RTM_NEWNEIGH, reply, extack);
    if (rc == -ENOENT)
        return std::nullopt;
    if (rc < 0)
        throw SystemError(
            with_kernel_reason(
                "look up the neighbour " + address.to_string() + " on ifindex " + std::to_string(ifindex), extack),
            -rc);
    if (reply.size() < sizeof(ndmsg))
        return std::nullopt;
    ndmsg found;
    std::memcpy(&found, reply.data(), sizeof(found));
    const auto by_type = attributes(reply, sizeof(ndmsg), NDA_MAX);
    Neighbour neighbour;
    neighbour.address = address;
    neighbour.ifindex = static_cast<std::uint32_t>(found.ndm_ifindex);
    neighbour.state = found.ndm_state;
    if (const rtattr* lladdr = by_type[NDA_LLADDR]; lladdr != nullptr && RTA_PAYLOAD(lladdr) == 6) {
        std::array<std::uint8_t, 6> bytes;
        std::memcpy(bytes.data(), RTA_DATA(lladdr), 6);
        if (found.ndm_state & kUsableStates)
            neighbour.mac = MacAddress(bytes);
    }
    if (const rtattr* ext = by_type[NDA_FLAGS_EXT]; ext != nullptr && RTA_PAYLOAD(ext) >= 4) {
        std::uint32_t flags;
        std::memcpy(&flags, RTA_DATA(ext), 4);
        neighbour.managed = (flags & NTF_EXT_MANAGED) != 0;
    }
    return neighbour;
}

std::optional<MacAddress> NeighbourTable::lookup(std::uint32_t ifindex, const IpAddress& address) {
    const auto found = entry(ifindex, address);
    if (!found || !(found->state & kUsableStates))
        return std::nullopt;
    return found->mac;
}

void NeighbourTable::ensure_resolving(std::uint32_t ifindex, const IpAddress& address) {
    if (const auto existing = entry(ifindex, address)) {
        if (existing->managed || (existing->state & (NUD_PERMANENT | NUD_NOARP)))
            return;  // resolved for good, or the kernel already keeps it resolved
    }
    if (managed_supported_.value_or(true)) {
        ndmsg fixed{};
        fixed.ndm_family = address_family(address);
        fixed.ndm_ifindex = static_cast<int>(ifindex);
        fixed.ndm_state = NUD_NONE;  // what `ip neigh add ... managed` sends: the kernel keeps the current state
        Message message(RTM_NEWNEIGH, NLM_F_CREATE, &fixed, sizeof(fixed));
        message.add(NDA_DST, address.bytes().data(), address_length(address));
        const std::uint32_t ext_flags = NTF_EXT_MANAGED;
        message.add(NDA_FLAGS_EXT, &ext_flags, sizeof(ext_flags));
        std::string reply, extack;
        const int rc = request(message, 0xffff, reply, extack);
        if (rc == 0) {
            // Kernels before 5.16 ignore NDA_FLAGS_EXT: check the entry really is managed.
            const auto created = entry(ifindex, address);
            if (created && created->managed) {
                managed_supported_ = true;
                return;
            }
            managed_supported_ = false;
        } else if (rc == -EINVAL || rc == -EOPNOTSUPP || rc == -EPROTONOSUPPORT) {
            managed_supported_ = false;
        } else {
            throw SystemError(with_kernel_reason("add a managed neighbour entry for " + address.to_string() +
                                                     " on ifindex " + std::to_string(ifindex),
                                                 extack),
                              -rc);
        }
    }
    trigger_by_udp(ifindex, address);
}

// One datagram towards the address from a socket bound to the interface makes
// the kernel send an ARP request / neighbour solicitation. It goes to the
// discard port and is queued (or dropped) by the kernel: nothing waits on it.
void NeighbourTable::trigger_by_udp(std::uint32_t ifindex, const IpAddress& address) {
    const int family = address_family(address);
    const int fd = check_syscall(socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0),
                                 "open a UDP socket to resolve " + address.to_string());
    char name[IF_NAMESIZE] = {};
    if (if_indextoname(ifindex, name) == nullptr) {
        const int error = errno;
        close(fd);
        throw SystemError("name of ifindex " + std::to_string(ifindex), error);
    }
    if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, static_cast<socklen_t>(std::strlen(name))) != 0) {
        const int error = errno;
        close(fd);
        throw SystemError("bind a UDP socket to " + std::string(name), error);
    }
    sockaddr_storage destination{};
    socklen_t length;
    if (address.is_v4()) {
        auto* v4 = reinterpret_cast<sockaddr_in*>(&destination);
        v4->sin_family = AF_INET;
        v4->sin_port = htons(9);
        std::memcpy(&v4->sin_addr, address.bytes().data(), 4);
        length = sizeof(sockaddr_in);
    } else {
        auto* v6 = reinterpret_cast<sockaddr_in6*>(&destination);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(9);
        std::memcpy(&v6->sin6_addr, address.bytes().data(), 16);
        v6->sin6_scope_id = ifindex;  // link-local next hops need their interface
        length = sizeof(sockaddr_in6);
    }
    // Errors (no route, EAGAIN, an earlier failed resolution reported as EHOSTUNREACH)
    // are not ours to report: the caller polls lookup() and tries again.
    (void)sendto(fd, "", 0, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&destination), length);
    close(fd);
}

std::pair<IpAddress, std::uint32_t> NeighbourTable::next_hop(const IpAddress& destination) {
    rtmsg fixed{};
    fixed.rtm_family = address_family(destination);
    fixed.rtm_dst_len = destination.is_v4() ? 32 : 128;
    Message message(RTM_GETROUTE, 0, &fixed, sizeof(fixed));
    message.add(RTA_DST, destination.bytes().data(), address_length(destination));
    std::string reply, extack;
    const int rc = request(message, RTM_NEWROUTE, reply, extack);
    if (rc < 0)
        throw SystemError(with_kernel_reason("route to " + destination.to_string(), extack), -rc);
    if (reply.size() < sizeof(rtmsg))
        throw std::runtime_error("route to " + destination.to_string() + ": the kernel sent no route");
    rtmsg route;
    std::memcpy(&route, reply.data(), sizeof(route));
    const auto by_type = attributes(reply, sizeof(rtmsg), RTA_MAX);
    std::uint32_t ifindex = 0;
    if (const rtattr* oif = by_type[RTA_OIF]; oif != nullptr && RTA_PAYLOAD(oif) >= 4)
        std::memcpy(&ifindex, RTA_DATA(oif), 4);
    if (const rtattr* gateway = by_type[RTA_GATEWAY]; gateway != nullptr)
        return {address_from(route.rtm_family, RTA_DATA(gateway), RTA_PAYLOAD(gateway)), ifindex};
    if (const rtattr* via = by_type[RTA_VIA]; via != nullptr && RTA_PAYLOAD(via) >= sizeof(rtvia)) {
        const auto* next = static_cast<const rtvia*>(RTA_DATA(via));  // IPv4 route via an IPv6 gateway
        return {address_from(static_cast<std::uint8_t>(next->rtvia_family), next->rtvia_addr,
                             RTA_PAYLOAD(via) - sizeof(rtvia)),
                ifindex};
    }
    if (route.rtm_type != RTN_UNICAST && route.rtm_type != RTN_LOCAL)
        throw std::runtime_error("route to " + destination.to_string() + " is not unicast (type " +
                                 std::to_string(route.rtm_type) + ")");
    return {destination, ifindex};
}

}  // namespace stickylb

// SPDX-License-Identifier: Apache-2.0
#include "dataplane/kernel_routes.h"

#include <net/if.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "base/errors.h"

namespace stickylb {

namespace {

// rtm_table holds 8 bits; RTA_TABLE holds the whole number (sent as well).
std::uint8_t short_table(std::uint32_t table) {
    return static_cast<std::uint8_t>(table < 256 ? table : std::uint32_t{RT_TABLE_UNSPEC});
}

rtmsg route_header(const IpAddress& vip, std::uint32_t table) {
    rtmsg fixed{};
    fixed.rtm_family = netlink::address_family(vip);
    fixed.rtm_dst_len = vip.is_v4() ? 32 : 128;
    fixed.rtm_table = short_table(table);
    fixed.rtm_protocol = kAnnounceRouteProtocol;
    fixed.rtm_scope = RT_SCOPE_LINK;
    fixed.rtm_type = RTN_UNICAST;
    return fixed;
}

std::string table_text(std::uint32_t table) { return "routing table " + std::to_string(table); }

}  // namespace

// Filtered dumps: list() runs every check interval, and the host's other tables (a
// full BGP table, say) are not its business.
KernelRoutes::KernelRoutes(std::uint32_t table) : socket_(/*filter_dumps=*/true), table_(table) {
    loopback_ = if_nametoindex("lo");
    if (loopback_ == 0)
        throw SystemError("find the loopback interface", errno);
}

void KernelRoutes::add(const IpAddress& vip) {
    rtmsg fixed = route_header(vip, table_);
    netlink::Message message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &fixed, sizeof(fixed));
    message.add(RTA_DST, vip.bytes().data(), netlink::address_length(vip));
    message.add(RTA_TABLE, &table_, sizeof(table_));
    message.add(RTA_OIF, &loopback_, sizeof(loopback_));
    std::string extack;
    if (const int rc = socket_.request(message, 0xffff, {}, extack); rc < 0)
        throw SystemError(
            netlink::with_kernel_reason("add the route of " + vip.to_string() + " to " + table_text(table_), extack),
            -rc);
}

void KernelRoutes::remove(const IpAddress& vip) {
    rtmsg fixed = route_header(vip, table_);
    fixed.rtm_scope = RT_SCOPE_NOWHERE;  // any scope
    netlink::Message message(RTM_DELROUTE, 0, &fixed, sizeof(fixed));
    message.add(RTA_DST, vip.bytes().data(), netlink::address_length(vip));
    message.add(RTA_TABLE, &table_, sizeof(table_));
    std::string extack;
    const int rc = socket_.request(message, 0xffff, {}, extack);
    if (rc < 0 && rc != -ESRCH && rc != -ENOENT)
        throw SystemError(netlink::with_kernel_reason(
                              "remove the route of " + vip.to_string() + " from " + table_text(table_), extack),
                          -rc);
}

std::vector<IpAddress> KernelRoutes::list() {
    std::vector<IpAddress> found;
    for (const std::uint8_t family : {std::uint8_t{AF_INET}, std::uint8_t{AF_INET6}}) {
        rtmsg fixed{};
        fixed.rtm_family = family;
        fixed.rtm_table = short_table(table_);
        fixed.rtm_protocol = kAnnounceRouteProtocol;
        netlink::Message message(RTM_GETROUTE, NLM_F_DUMP, &fixed, sizeof(fixed));
        message.add(RTA_TABLE, &table_, sizeof(table_));
        std::string extack;
        const int rc = socket_.request(
            message, RTM_NEWROUTE,
            [&](const std::string& payload) {
                if (payload.size() < sizeof(rtmsg))
                    return;
                rtmsg route;
                std::memcpy(&route, payload.data(), sizeof(route));
                if (route.rtm_protocol != kAnnounceRouteProtocol)  // the kernel filtered; checked all the same
                    return;
                const auto by_type = netlink::attributes(payload, sizeof(rtmsg), RTA_MAX);
                std::uint32_t table = route.rtm_table;
                if (const rtattr* attribute = by_type[RTA_TABLE]; attribute && RTA_PAYLOAD(attribute) >= 4)
                    std::memcpy(&table, RTA_DATA(attribute), 4);
                const rtattr* destination = by_type[RTA_DST];
                if (table != table_ || destination == nullptr)
                    return;
                found.push_back(
                    netlink::address_from(route.rtm_family, RTA_DATA(destination), RTA_PAYLOAD(destination)));
            },
            extack);
        // No such table yet: the kernel makes it with its first route.
        if (rc < 0 && rc != -ENOENT)
            throw SystemError(netlink::with_kernel_reason("list " + table_text(table_), extack), -rc);
    }
    return found;
}

std::size_t KernelRoutes::remove_all() {
    const std::vector<IpAddress> routes = list();
    for (const IpAddress& vip : routes)
        remove(vip);
    return routes.size();
}

}  // namespace stickylb

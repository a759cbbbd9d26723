// SPDX-License-Identifier: Apache-2.0
// UDP echo server for tools/bench/traffic.sh: every datagram goes back to its sender
// unchanged, from the address it was sent to (IP_PKTINFO). That matters behind a
// direct-server-return load balancer: the request arrives for the VIP (on lo), and the
// reply must leave from the VIP, not from the backend's own address.
//
//   udp_echo --port PORT
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

int bind_socket(int port) {
    const int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        fail("socket");
    const int on = 1;
    if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on) != 0)
        fail("setsockopt IP_PKTINFO");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
        fail("bind 0.0.0.0:" + std::to_string(port));
    return fd;
}

void serve(int fd) {
    std::array<char, 2048> payload{};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(in_pktinfo))> control{};
    for (;;) {
        sockaddr_in peer{};
        iovec io{payload.data(), payload.size()};
        msghdr message{};
        message.msg_name = &peer;
        message.msg_namelen = sizeof peer;
        message.msg_iov = &io;
        message.msg_iovlen = 1;
        message.msg_control = control.data();
        message.msg_controllen = control.size();
        const ssize_t received = recvmsg(fd, &message, 0);
        if (received < 0) {
            if (errno == EINTR)
                continue;
            fail("recvmsg");
        }
        // Answer from the destination address of the request: ipi_spec_dst is the
        // local address the kernel uses as source (the VIP for DSR traffic).
        for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
            if (header->cmsg_level == IPPROTO_IP && header->cmsg_type == IP_PKTINFO) {
                auto* info = reinterpret_cast<in_pktinfo*>(CMSG_DATA(header));
                info->ipi_spec_dst = info->ipi_addr;
                info->ipi_ifindex = 0;
            }
        }
        io.iov_len = static_cast<size_t>(received);
        // A full socket buffer drops the reply: the load generator counts it as lost.
        sendmsg(fd, &message, MSG_DONTWAIT);
    }
}

}  // namespace

int main(int argc, char** argv) {
    int port = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string_view argument = argv[i];
        if (argument == "--port" && i + 1 < argc)
            port = std::atoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: udp_echo --port PORT\n");
            return 2;
        }
    }
    if (port <= 0 || port > 65535) {
        std::fprintf(stderr, "udp_echo: --port must be 1-65535\n");
        return 2;
    }
    try {
        serve(bind_socket(port));
    } catch (const std::exception& error) {
        std::fprintf(stderr, "udp_echo: %s\n", error.what());
        return 1;
    }
}

// SPDX-License-Identifier: Apache-2.0
// Hand-made malformed packets the hostile test does not already cover: every IHL below 5
// and past the length, total and payload lengths that lie about the L4 header, IPv6
// extension chains (routing headers, hop-by-hop out of place, atomic fragments, chains
// too deep), fragments at odd offsets and lengths, ICMP errors quoting bad or foreign
// headers, and truncation at every length of every kind of packet. For a VIP address a
// malformed packet is dropped; for any other it passes untouched; nothing malformed is
// ever forwarded.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/if_ether.h>

#include <cerrno>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bpf/fixture.h"
#include "bpf/outcomes.h"

namespace stickylb::testing {
namespace {

struct Family {
    const char* name;
    const char* vip;
    const char* client;
    const char* other;  // not a VIP
    std::uint32_t tcp_index;
    std::uint32_t udp_index;
    bool v4() const { return IpAddress::parse(vip).is_v4(); }
};
const Family kV4{"ipv4", "192.0.2.10", "198.51.100.7", "192.0.2.99", 1, 3};
const Family kV6{"ipv6", "2001:db8::10", "2001:db8:1::7", "2001:db8::99", 2, 4};
const Family* const kFamilies[] = {&kV4, &kV6};

PacketSpec tcp(const Family& family, const char* destination, std::uint8_t flags = kTcpAck) {
    PacketSpec spec;
    spec.source = IpAddress::parse(family.client);
    spec.destination = IpAddress::parse(destination);
    spec.tcp_flags = flags;
    spec.payload_bytes = 24;
    return spec;
}

PacketSpec udp(const Family& family, const char* destination) {
    PacketSpec spec = tcp(family, destination);
    spec.protocol = IPPROTO_UDP;
    spec.destination_port = 53;
    return spec;
}

// Raw IPv6 extension headers (type, bytes; byte 0, the next header, is filled in) inserted
// right after the IPv6 header of a frame built from spec (no hop-by-hop in spec).
Bytes with_extensions(const Bytes& frame, const PacketSpec& spec, std::vector<std::pair<std::uint8_t, Bytes>> headers) {
    const std::size_t l3 = l3_offset(spec);
    std::uint8_t next = frame.at(l3 + 6);
    Bytes chain;
    for (auto it = headers.rbegin(); it != headers.rend(); ++it) {
        Bytes header = it->second;
        header.at(0) = next;
        chain.insert(chain.begin(), header.begin(), header.end());
        next = it->first;
    }
    Bytes result(frame.begin(), frame.begin() + static_cast<long>(l3 + 40));
    result.insert(result.end(), chain.begin(), chain.end());
    result.insert(result.end(), frame.begin() + static_cast<long>(l3 + 40), frame.end());
    result[l3 + 6] = next;
    set16(result, l3 + 4, static_cast<std::uint16_t>(get16(result, l3 + 4) + chain.size()));
    return result;
}

// A destination-options (or hop-by-hop) header as a backend's kernel takes it: 8 bytes hold
// one PadN of 6; longer ones one option of type 0x1e (RFC 4727's experimental type, which
// a receiver skips) filling the header, since Linux refuses more than 7 padding bytes in a row.
Bytes destination_options(std::size_t length = 8) {
    Bytes header(length, 0);
    header[1] = static_cast<std::uint8_t>(length / 8 - 1);
    header[2] = length == 8 ? 1 : 0x1e;
    header[3] = static_cast<std::uint8_t>(length - 4);
    return header;
}

// A hop-by-hop or destination-options header holding exactly `options` (TLVs, padded by
// nothing): its length must be a multiple of 8 including the two leading bytes.
Bytes options_header(const Bytes& options) {
    Bytes header{0, static_cast<std::uint8_t>((options.size() + 2) / 8 - 1)};
    header.insert(header.end(), options.begin(), options.end());
    return header;
}

Bytes routing(std::uint8_t segments_left) {
    Bytes header(24, 0);  // type 4 (segment routing) with one segment
    header[1] = 2;
    header[2] = 4;
    header[3] = segments_left;
    return header;
}

Bytes fragment_header(std::uint16_t offset_units, bool more) {
    Bytes header(8, 0);
    set16(header, 2, static_cast<std::uint16_t>(offset_units << 3 | (more ? 1 : 0)));
    header[4] = 0x42;
    return header;
}

class MalformedCorpus : public DataPlaneTest {
protected:
    struct Sent {
        XdpRun run;
        std::string outcome;
    };

    void SetUp() override {
        DataPlaneTest::SetUp();
        if (IsSkipped() || HasFatalFailure())
            return;
        // Persistent VIPs: their fragments are steered, so a consistent fragment is forwarded.
        VipSettings settings{.persistent = true};
        for (const Family* family : kFamilies) {
            settings.index = family->tcp_index;
            plane().upsert_vip(VipKey{IpAddress::parse(family->vip), 80, IPPROTO_TCP}, settings);
            set_backends(family->tcp_index, three_backends());
            settings.index = family->udp_index;
            plane().upsert_vip(VipKey{IpAddress::parse(family->vip), 53, IPPROTO_UDP}, settings);
            set_backends(family->udp_index, three_backends());
        }
    }

    static std::vector<TestBackend> three_backends() {
        return {
            {1, IpAddress::parse("10.0.0.1")}, {2, IpAddress::parse("10.0.0.2")}, {3, IpAddress::parse("10.0.0.3")}};
    }

    // nullopt when the kernel refuses the input (shorter than an Ethernet header).
    std::optional<Sent> try_send(const Bytes& frame) {
        const stickylb_global_stats before = plane().global_stats();
        XdpRun result;
        result.output.resize(frame.size() + 256);
        LIBBPF_OPTS(bpf_test_run_opts, options, .data_in = frame.data(), .data_out = result.output.data(),
                    .data_size_in = static_cast<std::uint32_t>(frame.size()),
                    .data_size_out = static_cast<std::uint32_t>(result.output.size()), .repeat = 1);
        const int rc = bpf_prog_test_run_opts(plane().xdp_program_fd(), &options);
        if (rc != 0) {
            EXPECT_EQ(rc, -EINVAL);
            return std::nullopt;
        }
        result.action = static_cast<int>(options.retval);
        result.output.resize(options.data_size_out);
        return Sent{std::move(result), moved_outcomes(before, plane().global_stats())};
    }

    Sent send(const Bytes& frame) {
        auto sent = try_send(frame);
        EXPECT_TRUE(sent) << "test run refused " << hex(frame);
        return sent ? *sent : Sent{};
    }

    // For a VIP: dropped as malformed. Elsewhere: passed untouched as malformed.
    void expect_malformed(const Bytes& frame, bool to_vip) {
        const Sent sent = send(frame);
        if (to_vip) {
            EXPECT_EQ(sent.run.action, XDP_DROP) << hex(frame);
            EXPECT_EQ(sent.outcome, "drop_malformed") << hex(frame);
        } else {
            EXPECT_EQ(sent.run.action, XDP_PASS) << hex(frame);
            EXPECT_EQ(sent.outcome, "pass_malformed") << hex(frame);
            EXPECT_EQ(hex(sent.run.output), hex(frame));
        }
    }

    void expect_passed_untouched(const Bytes& frame, const std::string& outcome) {
        const Sent sent = send(frame);
        EXPECT_EQ(sent.run.action, XDP_PASS);
        EXPECT_EQ(sent.outcome, outcome) << hex(frame);
        EXPECT_EQ(hex(sent.run.output), hex(frame));
    }

    void expect_forwarded_to(const Bytes& frame, std::uint32_t backend) {
        const Sent sent = send(frame);
        EXPECT_EQ(sent.outcome, "tx") << hex(frame);
        EXPECT_EQ(hex(sent.run.output), hex(with_macs(frame, kLbMac, backend_mac(backend))));
    }

    // The backend of the persistent VIP's client (the ring by client address).
    std::uint32_t client_backend(const Family& family) {
        return backend_of(send(build_packet(tcp(family, family.vip, kTcpSyn))).run);
    }
};

TEST_F(MalformedCorpus, Ipv4HeaderLengthBelowFiveOrPastTheLength) {
    for (const char* destination : {kV4.vip, kV4.other}) {
        const bool to_vip = destination == kV4.vip;
        for (const PacketSpec& spec : {tcp(kV4, destination), udp(kV4, destination)}) {
            for (std::uint8_t ihl = 0; ihl < 5; ++ihl) {
                SCOPED_TRACE("ihl " + std::to_string(ihl) + (to_vip ? " to the VIP" : " elsewhere"));
                Bytes frame = build_packet(spec);
                frame[14] = static_cast<std::uint8_t>(0x40 | ihl);
                expect_malformed(frame, to_vip);
            }
            // IHL 15 (60 bytes) inside a frame long enough, but past what total length claims for
            // a 40-byte packet; IHL 14 leaving less than a TCP/UDP header.
            for (const auto& [ihl, total] : {std::pair{15, 40}, std::pair{14, 60}, std::pair{11, 46}}) {
                SCOPED_TRACE("ihl " + std::to_string(ihl) + ", total length " + std::to_string(total));
                Bytes frame = build_packet(spec);
                frame[14] = static_cast<std::uint8_t>(0x40 | ihl);
                set16(frame, 16, static_cast<std::uint16_t>(total));
                expect_malformed(frame, to_vip);
            }
        }
    }
}

TEST_F(MalformedCorpus, LengthsThatLieAboutTheTransportHeader) {
    for (const Family* family : kFamilies) {
        for (const char* destination : {family->vip, family->other}) {
            const bool to_vip = destination == family->vip;
            const std::size_t length_field = family->v4() ? 16 : 18;  // total / payload length
            const std::size_t ip_header = family->v4() ? 20 : 0;      // counted in that field
            struct Case {
                std::string name;
                PacketSpec spec;
                std::uint16_t length;
            };
            const Case cases[] = {
                {"length 0", tcp(*family, destination), 0},
                {"no room for any L4 byte", tcp(*family, destination), static_cast<std::uint16_t>(ip_header)},
                {"ends inside the TCP header", tcp(*family, destination), static_cast<std::uint16_t>(ip_header + 10)},
                {"ends inside the UDP header", udp(*family, destination), static_cast<std::uint16_t>(ip_header + 6)},
                {"shorter than the UDP length", udp(*family, destination), static_cast<std::uint16_t>(ip_header + 20)},
                {"shorter than the TCP data offset",
                 [&] {
                     PacketSpec spec = tcp(*family, destination);
                     spec.payload_bytes = 0;
                     return spec;
                 }(),
                 static_cast<std::uint16_t>(ip_header + 19)},
            };
            for (const Case& test : cases) {
                SCOPED_TRACE(std::string(family->name) + ", " + test.name + (to_vip ? ", to the VIP" : ", elsewhere"));
                Bytes frame = build_packet(test.spec);
                set16(frame, length_field, test.length);
                expect_malformed(frame, to_vip);
            }
        }
    }
}

TEST_F(MalformedCorpus, Ipv6ExtensionChains) {
    const PacketSpec plain = tcp(kV6, kV6.vip);
    const Bytes frame = build_packet(plain);
    const std::uint32_t backend = client_backend(kV6);
    ASSERT_NE(backend, 0u);
    {
        SCOPED_TRACE("routing header, no segments left: processed as if absent");
        expect_forwarded_to(with_extensions(frame, plain, {{43, routing(0)}}), backend);
    }
    {
        SCOPED_TRACE("atomic fragment (offset 0, no more fragments): a whole packet");
        expect_forwarded_to(
            with_extensions(frame, plain, {{60, destination_options()}, {44, fragment_header(0, false)}}), backend);
    }
    {
        SCOPED_TRACE("routing header with a segment left: the packet is bound elsewhere");
        expect_malformed(with_extensions(frame, plain, {{43, routing(1)}}), true);
    }
    {
        SCOPED_TRACE("hop-by-hop after another extension header");
        expect_malformed(with_extensions(frame, plain, {{60, destination_options()}, {0, destination_options()}}),
                         true);
    }
    {
        SCOPED_TRACE("transport deeper than the parser reads");
        expect_malformed(with_extensions(frame, plain, {{60, destination_options(256)}}), true);
    }
    {
        SCOPED_TRACE("no next header (59) after the chain: nothing a VIP matches");
        PacketSpec none = plain;
        none.protocol = 59;
        expect_passed_untouched(with_extensions(build_packet(none), none, {{60, destination_options()}}),
                                "pass_not_vip");
    }
    {
        SCOPED_TRACE("no next header, deeper than the parser reads: still not ours, not malformed");
        PacketSpec none = plain;
        none.protocol = 59;
        expect_passed_untouched(with_extensions(build_packet(none), none, {{60, destination_options(256)}}),
                                "pass_not_vip");
    }
    // To another address the stack judges them.
    const PacketSpec other = tcp(kV6, kV6.other);
    expect_malformed(with_extensions(build_packet(other), other, {{43, routing(1)}}), false);
}

TEST_F(MalformedCorpus, Ipv6ExtensionHeaderLengthPastThePayload) {
    for (const char* destination : {kV6.vip, kV6.other}) {
        const PacketSpec spec = tcp(kV6, destination);
        Bytes frame = with_extensions(build_packet(spec), spec, {{60, destination_options()}});
        frame[14 + 40 + 1] = 200;  // 1608 bytes of options in a 76-byte payload
        expect_malformed(frame, destination == kV6.vip);
    }
}

// A fragment of the client's flow, with `l4_bytes` of transport (header and payload).
Bytes fragment(const Family& family, const char* destination, std::uint8_t protocol, std::uint16_t offset_units,
               bool more, std::size_t l4_bytes) {
    PacketSpec spec = protocol == IPPROTO_TCP ? tcp(family, destination) : udp(family, destination);
    spec.more_fragments = more;
    spec.fragment_offset_units = offset_units;
    const std::size_t header = protocol == IPPROTO_TCP ? 20 : 8;
    spec.payload_bytes = l4_bytes >= header ? l4_bytes - header : 0;
    Bytes frame = build_packet(spec);
    if (l4_bytes < header) {  // cut the transport header itself, and say so in the IP header
        frame.resize(frame.size() - (header - l4_bytes));
        const std::size_t l3 = l3_offset(spec);
        if (family.v4())
            set16(frame, l3 + 2, static_cast<std::uint16_t>(frame.size() - l3));
        else
            set16(frame, l3 + 4, static_cast<std::uint16_t>(frame.size() - l3 - 40));
    }
    return frame;
}

TEST_F(MalformedCorpus, FragmentsAtOddOffsetsAndLengths) {
    for (const Family* family : kFamilies) {
        SCOPED_TRACE(family->name);
        const std::uint32_t backend = client_backend(*family);
        ASSERT_NE(backend, 0u);
        for (const char* destination : {family->vip, family->other}) {
            const bool to_vip = destination == family->vip;
            SCOPED_TRACE(to_vip ? "to the VIP" : "elsewhere");
            // Malformed: a non-last fragment whose length is no multiple of 8; a TCP fragment
            // at byte 8 (over the first fragment's flags); one ending past 65535 bytes; a first
            // fragment too short for the ports.
            expect_malformed(fragment(*family, destination, IPPROTO_TCP, 0, true, 84), to_vip);
            expect_malformed(fragment(*family, destination, IPPROTO_UDP, 5, true, 30), to_vip);
            expect_malformed(fragment(*family, destination, IPPROTO_TCP, 1, true, 64), to_vip);
            expect_malformed(fragment(*family, destination, IPPROTO_TCP, 1, false, 13), to_vip);
            expect_malformed(fragment(*family, destination, IPPROTO_UDP, 8191, false, 64), to_vip);
            expect_malformed(fragment(*family, destination, IPPROTO_TCP, 8100, true, 1024), to_vip);
            expect_malformed(fragment(*family, destination, IPPROTO_UDP, 0, true, 0), to_vip);
            expect_malformed(fragment(*family, destination, IPPROTO_UDP, 0, true, 4), to_vip);
            // Consistent, if unusual: a UDP fragment at byte 8, a last fragment of odd length at an
            // odd offset, the very last bytes a packet may have, a first fragment of 8 bytes.
            const std::pair<std::uint8_t, Bytes> fine[] = {
                {IPPROTO_UDP, fragment(*family, destination, IPPROTO_UDP, 1, true, 64)},
                {IPPROTO_TCP, fragment(*family, destination, IPPROTO_TCP, 3, false, 13)},
                {IPPROTO_UDP, fragment(*family, destination, IPPROTO_UDP, 8183, false, 64)},
                {IPPROTO_UDP, fragment(*family, destination, IPPROTO_UDP, 0, true, 8)},
            };
            for (const auto& [protocol, frame] : fine) {
                SCOPED_TRACE(hex(frame));
                if (to_vip) {
                    // The UDP VIP's affinity is its own: the ring by client address, like TCP's.
                    expect_forwarded_to(frame, backend);
                } else {
                    expect_passed_untouched(frame, "pass_not_vip");
                }
            }
        }
    }
}

// ICMP "fragmentation needed" / "packet too big" from a router to the VIP quoting `quote`.
Bytes icmp_too_big(const Family& family, const Bytes& quote) {
    Bytes message = family.v4() ? Bytes{3, 4, 0, 0, 0, 0, 0x05, 0x00} : Bytes{2, 0, 0, 0, 0, 0, 0x05, 0x00};
    message.insert(message.end(), quote.begin(), quote.end());
    PacketSpec outer = tcp(family, family.vip);
    outer.source = IpAddress::parse(family.v4() ? "203.0.113.1" : "2001:db8:ff::1");
    return build_icmp(outer, message);
}

// The first `length` bytes of the VIP's reply to the client, as a router quotes it.
Bytes reply_quote(std::size_t length, bool as_v4) {
    PacketSpec reply;
    reply.source = IpAddress::parse(as_v4 ? kV4.vip : kV6.vip);
    reply.destination = IpAddress::parse(as_v4 ? kV4.client : kV6.client);
    reply.source_port = 80;
    reply.destination_port = 40000;
    reply.tcp_flags = kTcpAck;
    reply.payload_bytes = 64;
    const Bytes frame = build_packet(reply);
    return Bytes(frame.begin() + 14, frame.begin() + 14 + static_cast<long>(length));
}

TEST_F(MalformedCorpus, IcmpErrorsQuotingBadOrForeignHeaders) {
    for (const Family* family : kFamilies) {
        SCOPED_TRACE(family->name);
        const std::uint32_t backend = client_backend(*family);
        ASSERT_NE(backend, 0u);
        const std::size_t quote_length = family->v4() ? 28 : 48;
        // Control: the intact quote is steered to the client's backend.
        expect_forwarded_to(icmp_too_big(*family, reply_quote(quote_length, family->v4())), backend);

        {
            SCOPED_TRACE("the quote lies past the ICMP packet's IP length, in Ethernet padding");
            Bytes frame = icmp_too_big(*family, reply_quote(quote_length, family->v4()));
            const std::size_t l3 = 14;
            const std::uint16_t cut = 10;  // the quote's ports are no longer in the IP packet
            if (family->v4())
                set16(frame, l3 + 2, static_cast<std::uint16_t>(get16(frame, l3 + 2) - cut));
            else
                set16(frame, l3 + 4, static_cast<std::uint16_t>(get16(frame, l3 + 4) - cut));
            const Sent sent = send(frame);
            EXPECT_NE(sent.run.action, XDP_TX);
            EXPECT_EQ(sent.outcome, "drop_malformed");
        }
        {
            SCOPED_TRACE("an ICMP header cut by the IP length");
            Bytes frame = icmp_too_big(*family, reply_quote(quote_length, family->v4()));
            const std::size_t header = family->v4() ? 20 : 0;
            set16(frame, family->v4() ? 16 : 18, static_cast<std::uint16_t>(header + 4));
            expect_passed_untouched(frame, "pass_not_vip");
        }
        if (family->v4()) {
            SCOPED_TRACE("a quoted IPv4 header length below 5");
            Bytes quote = reply_quote(quote_length, true);
            quote[0] = 0x44;
            expect_malformed(icmp_too_big(*family, quote), true);
        }
        if (family->v4()) {
            SCOPED_TRACE("the quote of a later fragment: no ports in it");
            Bytes quote = reply_quote(quote_length, true);
            set16(quote, 6, 0x0010);
            expect_passed_untouched(icmp_too_big(*family, quote), "pass_not_vip");
        }
        if (!family->v4()) {
            SCOPED_TRACE("ICMPv6 quoting an IPv4 header");
            expect_malformed(icmp_too_big(*family, reply_quote(48, true)), true);
        }
        {
            SCOPED_TRACE("the quote of a packet to another port of the VIP address");
            Bytes quote = reply_quote(quote_length, family->v4());
            set16(quote, family->v4() ? 20 : 40, 8080);
            expect_passed_untouched(icmp_too_big(*family, quote), "pass_not_vip");
        }
    }
}

TEST_F(MalformedCorpus, TruncatedAtEveryLengthOfEveryKindIsNeverForwarded) {
    struct Case {
        std::string name;
        Bytes frame;
        std::size_t headers_end;  // past it, the IP header is whole and its length lies
    };
    std::vector<Case> cases;
    PacketSpec options = tcp(kV4, kV4.vip);
    options.ipv4_options = Bytes(12, 1);
    cases.push_back({"ipv4 tcp with options", build_packet(options), 14 + 32});
    const PacketSpec chain = tcp(kV6, kV6.vip);
    cases.push_back(
        {"ipv6 tcp, hop-by-hop and destination options",
         with_extensions(build_packet(chain), chain, {{0, destination_options()}, {60, destination_options(16)}}),
         14 + 40});
    cases.push_back({"ipv6 udp", build_packet(udp(kV6, kV6.vip)), 14 + 40});
    PacketSpec vlan = udp(kV6, kV6.vip);
    vlan.vlan_id = 7;
    cases.push_back({"ipv6 udp with vlan", build_packet(vlan), 18 + 40});
    for (const Family* family : kFamilies) {
        const std::size_t quote_length = family->v4() ? 28 : 48;
        cases.push_back({std::string(family->name) + " icmp too big",
                         icmp_too_big(*family, reply_quote(quote_length, family->v4())),
                         14 + (family->v4() ? 20u : 40u)});
        cases.push_back({std::string(family->name) + " first fragment",
                         fragment(*family, family->vip, IPPROTO_UDP, 0, true, 64), 14 + (family->v4() ? 20u : 48u)});
    }
    for (const Case& test : cases) {
        SCOPED_TRACE(test.name);
        ASSERT_EQ(send(test.frame).outcome, "tx") << "whole, it is forwarded";
        for (std::size_t length = ETH_HLEN; length < test.frame.size(); ++length) {
            SCOPED_TRACE("cut to " + std::to_string(length) + " bytes");
            const Bytes cut(test.frame.begin(), test.frame.begin() + static_cast<long>(length));
            const auto sent = try_send(cut);
            ASSERT_TRUE(sent);
            EXPECT_NE(sent->run.action, XDP_TX);
            EXPECT_NE(sent->run.action, XDP_REDIRECT);
            if (sent->run.action == XDP_PASS) {
                EXPECT_EQ(hex(sent->run.output), hex(cut));
            }
            if (length >= test.headers_end) {
                EXPECT_EQ(sent->outcome, "drop_malformed");
            }
        }
    }
}

// Options a backend's kernel would refuse: IPv4 options that do not tile the header or
// route the packet elsewhere; IPv6 options that do not tile theirs, too much padding in a
// row, too many options, a jumbo payload option. For a VIP dropped, elsewhere passed; the
// same options done right are forwarded.
TEST_F(MalformedCorpus, OptionsThatABackendsKernelRefusesAreMalformed) {
    const std::uint32_t backend_v4 = client_backend(kV4);
    const std::uint32_t backend_v6 = client_backend(kV6);
    ASSERT_NE(backend_v4, 0u);
    ASSERT_NE(backend_v6, 0u);
    struct Ipv4Case {
        const char* name;
        Bytes options;  // a multiple of 4 bytes
    };
    const Ipv4Case bad_v4[] = {
        {"an option whose length runs past the header", {0x9e, 12, 0, 0, 0, 0, 0, 0}},
        {"a type byte with no length byte", {1, 1, 1, 0x9e}},
        {"length 0", {0x9e, 0, 0, 0}},
        {"length 1", {0x9e, 1, 1, 1}},
        {"a loose source route", {1, 131, 7, 4, 10, 0, 0, 1}},
        {"a strict source route", {1, 137, 7, 4, 10, 0, 0, 1}},
    };
    const Ipv4Case good_v4[] = {
        {"no-operations", {1, 1, 1, 1}},
        {"an option that fills the header", {0x9e, 8, 1, 2, 3, 4, 5, 6}},
        {"end of list, then anything", {1, 0, 0xff, 0xee}},
    };
    for (const char* destination : {kV4.vip, kV4.other}) {
        const bool to_vip = destination == kV4.vip;
        for (const Ipv4Case& test : bad_v4) {
            SCOPED_TRACE(std::string("ipv4: ") + test.name + (to_vip ? ", to the VIP" : ", elsewhere"));
            PacketSpec spec = tcp(kV4, destination, kTcpSyn);
            spec.ipv4_options = test.options;
            expect_malformed(build_packet(spec), to_vip);
        }
    }
    for (const Ipv4Case& test : good_v4) {
        SCOPED_TRACE(std::string("ipv4: ") + test.name);
        PacketSpec spec = tcp(kV4, kV4.vip, kTcpSyn);
        spec.ipv4_options = test.options;
        expect_forwarded_to(build_packet(spec), backend_v4);
    }

    struct Ipv6Case {
        const char* name;
        std::uint8_t type;  // 0 hop-by-hop, 60 destination options
        Bytes options;      // the TLVs: 6, 14, 22 ... bytes
    };
    Bytes nine_options;
    for (int i = 0; i < 9; ++i)
        nine_options.insert(nine_options.end(), {0x1e, 0});
    nine_options.insert(nine_options.end(), {1, 2, 0, 0});
    Bytes eight_options;
    for (int i = 0; i < 8; ++i)
        eight_options.insert(eight_options.end(), {0x1e, 0});
    eight_options.insert(eight_options.end(), {1, 4, 0, 0, 0, 0});
    const Ipv6Case bad_v6[] = {
        {"an option that runs past its header", 60, {0x1e, 6, 0, 0, 0, 0}},
        {"an option cut after its type byte", 60, {1, 3, 0, 0, 0, 0x1e}},
        {"a jumbo payload option beside a payload length", 0, {0xc2, 4, 0, 1, 0, 0}},
        {"eight padding bytes in a row", 60, {0, 0, 0, 0, 0, 0, 1, 0, 0x1e, 4, 0, 0, 0, 0}},
        {"nine options", 60, nine_options},
    };
    const Ipv6Case good_v6[] = {
        {"router alert", 0, {5, 2, 0, 0, 1, 0}},
        {"seven padding bytes around an option", 60, {0, 0, 0, 1, 2, 0, 0, 0x1e, 2, 0, 0, 0, 0, 0}},
        {"eight options", 60, eight_options},
    };
    const auto chain_with = [&](const char* destination, const Ipv6Case& test) {
        const PacketSpec spec = tcp(kV6, destination, kTcpSyn);
        return with_extensions(build_packet(spec), spec, {{test.type, options_header(test.options)}});
    };
    for (const char* destination : {kV6.vip, kV6.other}) {
        const bool to_vip = destination == kV6.vip;
        for (const Ipv6Case& test : bad_v6) {
            SCOPED_TRACE(std::string("ipv6: ") + test.name + (to_vip ? ", to the VIP" : ", elsewhere"));
            expect_malformed(chain_with(destination, test), to_vip);
        }
    }
    for (const Ipv6Case& test : good_v6) {
        SCOPED_TRACE(std::string("ipv6: ") + test.name);
        expect_forwarded_to(chain_with(kV6.vip, test), backend_v6);
    }
}

TEST_F(MalformedCorpus, AFirstFragmentWithoutTheWholeTransportHeaderIsMalformed) {
    for (const Family* family : kFamilies) {
        SCOPED_TRACE(family->name);
        // 16 bytes of a TCP header (ports, sequence, acknowledgement; no flags) and 4 of UDP.
        expect_malformed(fragment(*family, family->vip, IPPROTO_TCP, 0, true, 16), true);
        expect_malformed(fragment(*family, family->vip, IPPROTO_UDP, 0, true, 4), true);
        expect_malformed(fragment(*family, family->other, IPPROTO_TCP, 0, true, 16), false);
        expect_forwarded_to(fragment(*family, family->vip, IPPROTO_TCP, 0, true, 24), client_backend(*family));
    }
}

TEST_F(MalformedCorpus, IcmpErrorsQuotingTooLittleOrAnImpossibleLengthAreMalformed) {
    for (const Family* family : kFamilies) {
        SCOPED_TRACE(family->name);
        const std::size_t header = family->v4() ? 20 : 40;
        {
            SCOPED_TRACE("4 transport bytes quoted (RFC 1122 asks for 8)");
            expect_malformed(icmp_too_big(*family, reply_quote(header + 4, family->v4())), true);
        }
        {
            SCOPED_TRACE("the quoted header says its packet is shorter than what is quoted");
            Bytes quote = reply_quote(header + 8, family->v4());
            set16(quote, family->v4() ? 2 : 4, family->v4() ? 0 : 4);
            expect_malformed(icmp_too_big(*family, quote), true);
        }
        {
            SCOPED_TRACE("8 bytes quoted, lengths consistent: steered");
            expect_forwarded_to(icmp_too_big(*family, reply_quote(header + 8, family->v4())), client_backend(*family));
        }
    }
}

// Linux takes an IPv6 packet with no next header (59) and payload length 0; the README says
// traffic to a VIP that is not TCP or UDP passes untouched.
TEST_F(MalformedCorpus, AnEmptyIpv6PacketWithNoNextHeaderPassesUntouched) {
    PacketSpec spec = tcp(kV6, kV6.vip);
    spec.protocol = 59;
    spec.payload_bytes = 0;
    Bytes frame = build_packet(spec);
    frame.resize(14 + 40);
    set16(frame, 18, 0);
    expect_passed_untouched(frame, "pass_not_vip");
}

}  // namespace
}  // namespace stickylb::testing

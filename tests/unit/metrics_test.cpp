// SPDX-License-Identifier: Apache-2.0
// Prometheus exposition: the writer's text, the project's naming and label
// policy, render_metrics checked by promtool, and the HTTP endpoint over
// loopback (a raw Beast client on the same io_context, every wait bounded).
#include "control/metrics.h"
#include "support/promtool.h"
#include "base/metrics_server.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "base/errors.h"

namespace stickylb::metrics {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using namespace std::chrono_literals;

// ---------------------------------------------------------------- promtool

using stickylb::testing::expect_promtool_passes;

// ---------------------------------------------------------------- writer

TEST(MetricsWriter, CounterAndGaugeWithHelpAndType) {
    MetricsWriter w;
    w.counter("stickylb_reconciles_total", "Reconciliations.", {}, 3);
    w.gauge("stickylb_flow_table_entries", "Entries.", {}, 1.5);
    EXPECT_EQ(w.str(),
              "# HELP stickylb_reconciles_total Reconciliations.\n"
              "# TYPE stickylb_reconciles_total counter\n"
              "stickylb_reconciles_total 3\n"
              "# HELP stickylb_flow_table_entries Entries.\n"
              "# TYPE stickylb_flow_table_entries gauge\n"
              "stickylb_flow_table_entries 1.5\n");
}

TEST(MetricsWriter, FamiliesGroupedWhenInterleaved) {
    MetricsWriter w;
    w.counter("stickylb_vip_packets_total", "P.", {{"vip", "a"}}, 1);
    w.counter("stickylb_vip_bytes_total", "B.", {{"vip", "a"}}, 10);
    w.counter("stickylb_vip_packets_total", "P.", {{"vip", "b"}}, 2);
    w.counter("stickylb_vip_bytes_total", "B.", {{"vip", "b"}}, 20);
    EXPECT_EQ(w.str(),
              "# HELP stickylb_vip_packets_total P.\n"
              "# TYPE stickylb_vip_packets_total counter\n"
              "stickylb_vip_packets_total{vip=\"a\"} 1\n"
              "stickylb_vip_packets_total{vip=\"b\"} 2\n"
              "# HELP stickylb_vip_bytes_total B.\n"
              "# TYPE stickylb_vip_bytes_total counter\n"
              "stickylb_vip_bytes_total{vip=\"a\"} 10\n"
              "stickylb_vip_bytes_total{vip=\"b\"} 20\n");
}

TEST(MetricsWriter, EscapesLabelValuesAndHelp) {
    MetricsWriter w;
    w.gauge("stickylb_backend_state", "Line one\nback\\slash \"quoted\".", {{"vip", "a\"b\\c\nd"}, {"backend", "x"}},
            2);
    EXPECT_EQ(w.str(),
              "# HELP stickylb_backend_state Line one\\nback\\\\slash \"quoted\".\n"
              "# TYPE stickylb_backend_state gauge\n"
              "stickylb_backend_state{vip=\"a\\\"b\\\\c\\nd\",backend=\"x\"} 2\n");
}

TEST(MetricsWriter, LabelsInCanonicalOrder) {
    MetricsWriter w;
    w.gauge("stickylb_backend_health_check_up", "Up.", {{"backend", "b1"}, {"vip", "v"}}, 1);
    EXPECT_NE(w.str().find("stickylb_backend_health_check_up{vip=\"v\",backend=\"b1\"} 1\n"), std::string::npos)
        << w.str();
}

TEST(MetricsWriter, HistogramCumulativeBucketsWithInf) {
    Histogram h({0.01, 0.1, 1});
    for (double v : {0.005, 0.01, 0.05, 0.5, 0.7, 3.0})
        h.observe(v);
    h.observe(std::numeric_limits<double>::quiet_NaN());  // ignored
    EXPECT_EQ(h.count(), 6u);
    MetricsWriter w;
    w.histogram("stickylb_health_check_duration_seconds", "Durations.", {{"vip", "v"}, {"backend", "b"}}, h);
    EXPECT_EQ(w.str(),
              "# HELP stickylb_health_check_duration_seconds Durations.\n"
              "# TYPE stickylb_health_check_duration_seconds histogram\n"
              "stickylb_health_check_duration_seconds_bucket{vip=\"v\",backend=\"b\",le=\"0.01\"} 2\n"
              "stickylb_health_check_duration_seconds_bucket{vip=\"v\",backend=\"b\",le=\"0.1\"} 3\n"
              "stickylb_health_check_duration_seconds_bucket{vip=\"v\",backend=\"b\",le=\"1\"} 5\n"
              "stickylb_health_check_duration_seconds_bucket{vip=\"v\",backend=\"b\",le=\"+Inf\"} 6\n"
              "stickylb_health_check_duration_seconds_sum{vip=\"v\",backend=\"b\"} " +
                  format_value(0.005 + 0.01 + 0.05 + 0.5 + 0.7 + 3.0) +
                  "\n"
                  "stickylb_health_check_duration_seconds_count{vip=\"v\",backend=\"b\"} 6\n");
}

TEST(MetricsWriter, HistogramWithoutLabelsAndEmpty) {
    Histogram h({1});
    MetricsWriter w;
    w.histogram("stickylb_health_check_duration_seconds", "D.", {}, h);
    EXPECT_NE(w.str().find("stickylb_health_check_duration_seconds_bucket{le=\"1\"} 0\n"
                           "stickylb_health_check_duration_seconds_bucket{le=\"+Inf\"} 0\n"
                           "stickylb_health_check_duration_seconds_sum 0\n"
                           "stickylb_health_check_duration_seconds_count 0\n"),
              std::string::npos)
        << w.str();
}

TEST(MetricsWriter, HistogramBoundsValidated) {
    EXPECT_THROW(Histogram({1, 1}), std::invalid_argument);
    EXPECT_THROW(Histogram({2, 1}), std::invalid_argument);
    EXPECT_THROW(Histogram({1, std::numeric_limits<double>::infinity()}), std::invalid_argument);
    EXPECT_NO_THROW(Histogram(Histogram::default_latency_bounds()));
}

TEST(MetricsWriter, FormatsValues) {
    EXPECT_EQ(format_value(0), "0");
    EXPECT_EQ(format_value(42), "42");
    EXPECT_EQ(format_value(0.25), "0.25");
    EXPECT_EQ(format_value(18446744073709551615.0), "18446744073709551616");
    EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
    EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
    EXPECT_EQ(format_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(MetricsWriter, BuildInfo) {
    MetricsWriter w;
    w.build_info("0.1.0", "abc\"123");
    EXPECT_NE(w.str().find("# TYPE stickylb_build_info gauge\n"
                           "stickylb_build_info{version=\"0.1.0\",commit=\"abc\\\"123\"} 1\n"),
              std::string::npos)
        << w.str();
}

TEST(MetricsWriter, LabelPolicyEnforced) {
    MetricsWriter w;
    EXPECT_NO_THROW(w.counter("stickylb_rejected_total", "R.", {{"reason", "malformed"}}, 1));
    EXPECT_THROW(w.counter("stickylb_rejected_total", "R.", {{"reason", "a"}, {"reason", "b"}}, 1),
                 std::invalid_argument);
    EXPECT_THROW(w.gauge("stickylb_x", "X.", {{"version", "1"}}, 1), std::invalid_argument);
    EXPECT_THROW(w.gauge("stickylb_x", "X.", {{"le", "1"}}, 1), std::invalid_argument);
    EXPECT_THROW(w.histogram("stickylb_h_seconds", "H.", {{"le", "1"}}, Histogram({1})), std::invalid_argument);
    EXPECT_THROW(w.gauge("stickylb_x", "X.", {{"vip", "a"}, {"vip", "b"}}, 1), std::invalid_argument);
    EXPECT_NO_THROW(w.gauge("stickylb_x", "X.", {{"vip", "a"}, {"backend", "b"}}, 1));
    EXPECT_NO_THROW(w.gauge("stickylb_y", "Y.", {{"standing", "agrees"}}, 1));
}

TEST(MetricsWriter, NamingPolicyEnforced) {
    MetricsWriter w;
    EXPECT_THROW(w.counter("packets_total", "P.", {}, 1), std::invalid_argument);     // prefix
    EXPECT_THROW(w.counter("stickylb_packets", "P.", {}, 1), std::invalid_argument);  // _total
    EXPECT_THROW(w.gauge("stickylb_entries_total", "E.", {}, 1), std::invalid_argument);
    EXPECT_THROW(w.gauge("stickylb_entries_count", "E.", {}, 1), std::invalid_argument);
    EXPECT_THROW(w.histogram("stickylb_latency_seconds_total", "L.", {}, Histogram({1})), std::invalid_argument);
    EXPECT_THROW(w.gauge("stickylb_bad-name", "E.", {}, 1), std::invalid_argument);
    EXPECT_THROW(w.gauge("stickylb_", "E.", {}, 1), std::invalid_argument);
    EXPECT_THROW(w.gauge("stickylb_no_help", "", {}, 1), std::invalid_argument);
    EXPECT_THROW(w.counter("stickylb_negative_total", "N.", {}, -1), std::invalid_argument);
}

TEST(MetricsWriter, FamilyConsistencyAndDuplicateSeries) {
    MetricsWriter w;
    w.gauge("stickylb_x", "X.", {{"vip", "a"}}, 1);
    EXPECT_THROW(w.gauge("stickylb_x", "X.", {{"vip", "a"}}, 2), std::invalid_argument);  // same series
    EXPECT_THROW(w.gauge("stickylb_x", "Other help.", {{"vip", "b"}}, 2), std::invalid_argument);
    EXPECT_NO_THROW(w.gauge("stickylb_x", "X.", {{"vip", "b"}}, 2));
    EXPECT_THROW(w.histogram("stickylb_x", "X.", {{"vip", "c"}}, Histogram({1})), std::invalid_argument);
    w.build_info("1", "c");
    EXPECT_THROW(w.build_info("1", "c"), std::invalid_argument);
}

// ---------------------------------------------------------------- render_metrics

MetricsSnapshot filled_snapshot(const Histogram& latency) {
    MetricsSnapshot s;
    s.global = {.pass_not_ip = 1,
                .pass_not_vip = 2,
                .pass_malformed = 3,
                .pass_slow_path = 4,
                .drop_malformed = 5,
                .drop_no_backend = 6,
                .drop_fragment = 7,
                .drop_error = 8,
                .tx = 9,
                .redirect = 10,
                .fragments_steered = 11,
                .icmp_too_big_steered = 12,
                .flows_not_recorded = 13,
                .peer_flows_followed = 14};
    s.vips.push_back(
        {.vip = "tcp 10.0.0.1:80",
         .stats = {.packets = 100, .bytes = 6400, .new_flows = 7, .affinity_hits = 3, .affinity_misses = 4},
         .ring_rewrites = 2,
         .ring_slots_written = 65537,
         .ring_applied_timestamp_seconds = 1763700012.25,
         .announce_reason = AnnounceReason::no_backend_passing,
         .announced = false,
         .announce_changes = 4});
    s.vips.push_back({.vip = "udp [fd00::1]:53",
                      .stats = {.packets = 5, .bytes = 500, .new_flows = 5, .affinity_hits = 0, .affinity_misses = 0},
                      .ring_rewrites = 0,
                      .ring_slots_written = 0,
                      .announce_reason = std::nullopt,
                      .announced = false,
                      .announce_changes = 0});
    s.backends.push_back({.vip = "tcp 10.0.0.1:80",
                          .backend = "10.1.0.2:80",
                          .stats = {60, 3840},
                          .state = 0,
                          .health_ok = true,
                          .transitions = 0,
                          .check_latency_seconds = &latency});
    s.backends.push_back({.vip = "tcp 10.0.0.1:80",
                          .backend = "10.1.0.3:80",
                          .stats = {40, 2560},
                          .state = 2,
                          .health_ok = false,
                          .transitions = 3,
                          .check_latency_seconds = &latency,
                          .affinity_clients_moved = 21,
                          .last_failover_timestamp_seconds = 1763700000.5,
                          .fleet_votes = HealthVotes{1, 2}});
    s.backends.push_back({.vip = "udp [fd00::1]:53",
                          .backend = "[fd00:1::2]:53",
                          .stats = {5, 500},
                          .state = 1,
                          .health_ok = true,
                          .transitions = 1,
                          .check_latency_seconds = nullptr});
    s.flow_entries = 1234;
    s.flow_capacity = 1 << 20;
    s.affinity_entries = 99;
    s.affinity_capacity = 1 << 18;
    s.reconciles = 17;
    s.reconcile_errors = 1;
    s.session.enabled = true;
    s.session.servers = {{"127.0.0.1:11211", true, 0, 40}, {"[fd00::20]:11211", false, 7, 12}};
    s.session.failover_to_view_seconds = &latency;
    s.session.snapshot_saves = 5;
    s.session.snapshot_save_failures = 1;
    s.session.snapshot_last_save_timestamp_seconds = 1763700030;
    s.session.snapshot_last_save_entries = 4242;
    s.session.affinities_restored = 4000;
    s.fleet = {.standing = FleetStanding::differs,
               .hosts_agreeing = 2,
               .hosts_differing = 1,
               .hosts_sharing_checks = 3,
               .heartbeats = 30,
               .write_failures = 2,
               .rejected_rosters = 1,
               .reads = 12,
               .exception_sync = true,
               .flow_exceptions_published = 5400,
               .affinity_exceptions_published = 700,
               .peer_affinities_written = 1300,
               .peer_flow_entries = 10800,
               .peer_exceptions_unplaced = 3,
               .exception_versions_published = 4,
               .exception_publish_failures = 1,
               .exception_versions_loaded = 8,
               .exception_fetch_failures = 2,
               .exception_table_write_failures = 1};
    s.version = "0.1.0";
    s.commit = "93c39f7";
    return s;
}

Histogram sample_latency() {
    Histogram h(Histogram::default_latency_bounds());
    for (double v : {0.0007, 0.002, 0.004, 0.02, 0.3, 12.0})
        h.observe(v);
    return h;
}

TEST(RenderMetrics, HasEveryFamily) {
    Histogram latency = sample_latency();
    std::string text = render_metrics(filled_snapshot(latency));
    for (
        const char* line : {
            "stickylb_packets_passed_not_ip_total 1\n",
            "stickylb_packets_passed_not_vip_total 2\n",
            "stickylb_packets_passed_malformed_total 3\n",
            "stickylb_packets_passed_slow_path_total 4\n",
            "stickylb_packets_dropped_malformed_total 5\n",
            "stickylb_packets_dropped_no_backend_total 6\n",
            "stickylb_packets_dropped_fragment_total 7\n",
            "stickylb_packets_dropped_error_total 8\n",
            "stickylb_packets_forwarded_tx_total 9\n",
            "stickylb_packets_forwarded_redirect_total 10\n",
            "stickylb_fragments_steered_total 11\n",
            "stickylb_icmp_too_big_steered_total 12\n",
            "stickylb_flows_not_recorded_total 13\n",
            "stickylb_peer_flows_followed_total 14\n",
            "stickylb_vip_packets_total{vip=\"tcp 10.0.0.1:80\"} 100\n",
            "stickylb_vip_bytes_total{vip=\"tcp 10.0.0.1:80\"} 6400\n",
            "stickylb_vip_new_flows_total{vip=\"tcp 10.0.0.1:80\"} 7\n",
            "stickylb_vip_affinity_hits_total{vip=\"tcp 10.0.0.1:80\"} 3\n",
            "stickylb_vip_affinity_misses_total{vip=\"tcp 10.0.0.1:80\"} 4\n",
            "stickylb_vip_ring_rewrites_total{vip=\"tcp 10.0.0.1:80\"} 2\n",
            "stickylb_vip_ring_slots_written_total{vip=\"tcp 10.0.0.1:80\"} 65537\n",
            "stickylb_vip_ring_applied_timestamp_seconds{vip=\"tcp 10.0.0.1:80\"} 1763700012.25\n",
            "stickylb_vip_ring_applied_timestamp_seconds{vip=\"udp [fd00::1]:53\"} 0\n",
            "stickylb_vip_announced{vip=\"tcp 10.0.0.1:80\"} 0\n",
            "stickylb_vip_announce_state{vip=\"tcp 10.0.0.1:80\",reason=\"no_backend_passing\"} 1\n",
            "stickylb_vip_announce_state{vip=\"tcp 10.0.0.1:80\",reason=\"announced\"} 0\n",
            "stickylb_vip_announce_changes_total{vip=\"tcp 10.0.0.1:80\"} 4\n",
            "stickylb_backend_packets_total{vip=\"tcp 10.0.0.1:80\",backend=\"10.1.0.2:80\"} 60\n",
            "stickylb_backend_bytes_total{vip=\"tcp 10.0.0.1:80\",backend=\"10.1.0.2:80\"} 3840\n",
            "stickylb_backend_state{vip=\"tcp 10.0.0.1:80\",backend=\"10.1.0.3:80\"} 2\n",
            "stickylb_backend_state{vip=\"udp [fd00::1]:53\",backend=\"[fd00:1::2]:53\"} 1\n",
            "stickylb_backend_health_check_up{vip=\"tcp 10.0.0.1:80\",backend=\"10.1.0.3:80\"} 0\n",
            "stickylb_backend_state_transitions_total{vip=\"tcp 10.0.0.1:80\",backend=\"10.1.0.3:80\"} 3\n",
            "stickylb_health_check_duration_seconds_bucket{vip=\"tcp 10.0.0.1:80\",backend=\"10.1.0.2:80\",le=\"0.001\"} 1\n",
            "stickylb_health_check_duration_seconds_bucket{vip=\"tcp 10.0.0.1:80\",backend=\"10.1.0.2:80\",le=\"+Inf\"} 6\n",
            "stickylb_health_check_duration_seconds_count{vip=\"tcp 10.0.0.1:80\",backend=\"10.1.0.2:80\"} 6\n",
            "stickylb_flow_table_entries 1234\n",
            "stickylb_flow_table_capacity 1048576\n",
            "stickylb_affinity_table_entries 99\n",
            "stickylb_affinity_table_capacity 262144\n",
            "stickylb_reconciles_total 17\n",
            "stickylb_reconcile_errors_total 1\n",
            "stickylb_affinity_clients_moved_total{vip=\"tcp 10.0.0.1:80\",backend=\"10.1.0.3:80\"} 21\n",
            "stickylb_affinity_clients_moved_total{vip=\"tcp 10.0.0.1:80\",backend=\"10.1.0.2:80\"} 0\n",
            "stickylb_backend_last_failover_timestamp_seconds{vip=\"tcp 10.0.0.1:80\",backend=\"10.1.0.3:80\"} "
            "1763700000.5\n",
            "stickylb_memcached_up{server=\"127.0.0.1:11211\"} 1\n",
            "stickylb_memcached_up{server=\"[fd00::20]:11211\"} 0\n",
            "stickylb_memcached_errors_total{server=\"[fd00::20]:11211\"} 7\n",
            "stickylb_membership_view_writes_total{server=\"127.0.0.1:11211\"} 40\n",
            "stickylb_membership_view_writer 1\n",
            "stickylb_failover_view_written_seconds_count 6\n",
            "stickylb_affinity_snapshot_saves_total 5\n",
            "stickylb_affinity_snapshot_save_failures_total 1\n",
            "stickylb_affinity_snapshot_last_save_timestamp_seconds 1763700030\n",
            "stickylb_affinity_snapshot_entries 4242\n",
            "stickylb_affinity_restored_total 4000\n",
            "stickylb_fleet_standing{standing=\"differs\"} 1\n",
            "stickylb_fleet_standing{standing=\"agrees\"} 0\n",
            "stickylb_fleet_hosts 3\n",
            "stickylb_fleet_hosts_other_config 1\n",
            "stickylb_fleet_heartbeats_total 30\n",
            "stickylb_fleet_heartbeat_failures_total 2\n",
            "stickylb_fleet_rosters_rejected_total 1\n",
            "stickylb_fleet_hosts_sharing_checks 3\n",
            "stickylb_fleet_roster_reads_total 12\n",
            "stickylb_fleet_flow_exceptions 5400\n",
            "stickylb_fleet_peer_flow_entries 10800\n",
            "stickylb_fleet_peer_exceptions_unplaced 3\n",
            "stickylb_fleet_exception_versions_published_total 4\n",
            "stickylb_fleet_exception_publish_failures_total 1\n",
            "stickylb_fleet_exception_versions_loaded_total 8\n",
            "stickylb_fleet_exception_load_failures_total{reason=\"fetch\"} 2\n",
            "stickylb_fleet_exception_load_failures_total{reason=\"table_write\"} 1\n",
            "stickylb_fleet_affinity_exceptions 700\n",
            "stickylb_fleet_peer_affinities_written_total 1300\n",
            "stickylb_backend_fleet_votes{vip=\"tcp 10.0.0.1:80\",backend=\"10.1.0.3:80\",health=\"up\"} 1\n",
            "stickylb_backend_fleet_votes{vip=\"tcp 10.0.0.1:80\",backend=\"10.1.0.3:80\",health=\"down\"} 2\n",
            "stickylb_build_info{version=\"0.1.0\",commit=\"93c39f7\"} 1\n",
        }) {
        EXPECT_NE(text.find(line), std::string::npos) << "missing: " << line;
    }
    // No announcement series for a VIP of a host that does not announce.
    EXPECT_EQ(text.find("stickylb_vip_announced{vip=\"udp"), std::string::npos);
    // No votes for a backend of a host that shares no checks.
    EXPECT_EQ(text.find("stickylb_backend_fleet_votes{vip=\"tcp 10.0.0.1:80\",backend=\"10.1.0.2:80\""),
              std::string::npos);
    // No histogram for a backend without one.
    EXPECT_EQ(text.find("stickylb_health_check_duration_seconds_count{vip=\"udp"), std::string::npos);
    // Each family's HELP appears once.
    EXPECT_EQ(text.find("# HELP stickylb_backend_state "), text.rfind("# HELP stickylb_backend_state "));
}

TEST(RenderMetrics, FilledSnapshotPassesPromtool) {
    Histogram latency = sample_latency();
    expect_promtool_passes(render_metrics(filled_snapshot(latency)));
}

TEST(RenderMetrics, EmptySnapshotPassesPromtool) { expect_promtool_passes(render_metrics(MetricsSnapshot{})); }

TEST(RenderMetrics, NoSessionFamiliesWithoutMemcached) {
    Histogram latency = sample_latency();
    MetricsSnapshot snapshot = filled_snapshot(latency);
    snapshot.session = SessionSample{};
    const std::string text = render_metrics(snapshot);
    for (const char* family : {"stickylb_memcached_", "stickylb_membership_", "stickylb_failover_view",
                               "stickylb_affinity_snapshot", "stickylb_affinity_restored"})
        EXPECT_EQ(text.find(family), std::string::npos) << family;
    // Failovers are the data plane's: counted with or without memcached.
    EXPECT_NE(text.find("stickylb_affinity_clients_moved_total{"), std::string::npos);
}

TEST(RenderMetrics, NoFleetFamiliesOutsideAFleet) {
    Histogram latency = sample_latency();
    MetricsSnapshot snapshot = filled_snapshot(latency);
    snapshot.fleet = FleetSample{};
    EXPECT_EQ(render_metrics(snapshot).find("stickylb_fleet_"), std::string::npos);
}

// ---------------------------------------------------------------- server

TEST(ParseListenAddress, AcceptsNumericForms) {
    auto v4 = parse_listen_address("127.0.0.1:9478");
    EXPECT_EQ(v4.address().to_string(), "127.0.0.1");
    EXPECT_EQ(v4.port(), 9478);
    auto v6 = parse_listen_address("[::1]:80");
    EXPECT_TRUE(v6.address().is_v6());
    EXPECT_EQ(v6.port(), 80);
    EXPECT_EQ(parse_listen_address("0.0.0.0:0").port(), 0);
    for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:80x", "::1:80",
                            "[127.0.0.1]:80", "localhost:80", "[::1]80", "[::1]"}) {
        EXPECT_THROW(parse_listen_address(bad), std::invalid_argument) << bad;
    }
}

// Runs the io_context until done or 5 s; on timeout cancels and drains.
void run_until(asio::io_context& io, const bool& done, beast::tcp_stream* stream = nullptr) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done && std::chrono::steady_clock::now() < deadline) {
        if (io.stopped())
            io.restart();
        io.run_one_for(50ms);
    }
    if (!done && stream != nullptr) {
        ADD_FAILURE() << "client operation timed out";
        stream->close();
        while (!done) {
            if (io.stopped())
                io.restart();
            io.run_one_for(50ms);
        }
    }
}

// A raw client on the test's io_context.
class Client {
public:
    Client(asio::io_context& io, std::uint16_t port) : io_(io), stream_(io) {
        bool done = false;
        stream_.expires_after(5s);
        stream_.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), [&](beast::error_code ec) {
            connect_error_ = ec;
            done = true;
        });
        run_until(io_, done, &stream_);
    }

    beast::error_code connect_error() const { return connect_error_; }

    beast::error_code send(const std::string& raw) {
        bool done = false;
        beast::error_code result;
        stream_.expires_after(5s);
        asio::async_write(stream_, asio::buffer(raw), [&](beast::error_code ec, std::size_t) {
            result = ec;
            done = true;
        });
        run_until(io_, done, &stream_);
        return result;
    }

    // Reads one response; nullopt if the connection ended (or failed) first.
    std::optional<http::response<http::string_body>> receive(beast::error_code* error = nullptr) {
        bool done = false;
        beast::error_code result;
        http::response<http::string_body> response;
        stream_.expires_after(5s);
        http::async_read(stream_, buffer_, response, [&](beast::error_code ec, std::size_t) {
            result = ec;
            done = true;
        });
        run_until(io_, done, &stream_);
        if (error != nullptr)
            *error = result;
        if (result)
            return std::nullopt;
        return response;
    }

    // Feeds what arrives to ON_BYTES (with the read's error) until it returns false or 5 s pass.
    void read_raw(const std::function<bool(beast::error_code, std::string_view)>& on_bytes) {
        bool more = true;
        while (more) {
            bool done = false;
            stream_.expires_after(5s);
            stream_.async_read_some(asio::buffer(scratch_), [&](beast::error_code ec, std::size_t n) {
                more = on_bytes(ec, std::string_view(scratch_, n)) && !ec;
                done = true;
            });
            run_until(io_, done, &stream_);
        }
    }

    // True if the server closed the connection (EOF or reset) within 5 s.
    bool closed_by_server() {
        bool done = false;
        beast::error_code result;
        stream_.expires_after(5s);
        stream_.async_read_some(asio::buffer(scratch_), [&](beast::error_code ec, std::size_t) {
            result = ec;
            done = true;
        });
        run_until(io_, done, &stream_);
        return result == asio::error::eof || result == asio::error::connection_reset;
    }

private:
    asio::io_context& io_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    char scratch_[256];
    beast::error_code connect_error_;
};

std::optional<http::response<http::string_body>> request(asio::io_context& io, std::uint16_t port,
                                                         const std::string& raw) {
    Client client(io, port);
    EXPECT_FALSE(client.connect_error()) << client.connect_error().message();
    client.send(raw);
    return client.receive();
}

std::string get(const std::string& target) {
    return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
}

class MetricsServerTest : public ::testing::Test {
protected:
    void SetUp() override {
        server_.emplace(io_, "127.0.0.1:0", [this] {
            ++scrapes_;
            return text_;
        });
        port_ = server_->port();
        ASSERT_NE(port_, 0);
    }
    void TearDown() override {
        server_.reset();  // stop(): the io_context is not running here
        io_.restart();
        io_.run_for(1s);  // aborted handlers run; no work left after stop
    }

    asio::io_context io_;
    std::string text_ = "# HELP stickylb_x_total X.\n# TYPE stickylb_x_total counter\nstickylb_x_total 1\n";
    int scrapes_ = 0;
    std::optional<MetricsServer> server_;
    std::uint16_t port_ = 0;
};

TEST_F(MetricsServerTest, ServesProviderTextAtMetrics) {
    auto response = request(io_, port_, get("/metrics"));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), http::status::ok);
    EXPECT_EQ(response->body(), text_);
    EXPECT_EQ((*response)[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
    EXPECT_EQ(scrapes_, 1);
    text_ = "changed\n";  // the provider is called per scrape
    response = request(io_, port_, get("/metrics?format=text"));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body(), "changed\n");
    EXPECT_EQ(scrapes_, 2);
}

TEST_F(MetricsServerTest, KeepAliveServesSeveralRequests) {
    Client client(io_, port_);
    for (int i = 0; i < 3; ++i) {
        client.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        auto response = client.receive();
        ASSERT_TRUE(response);
        EXPECT_EQ(response->result(), http::status::ok);
        EXPECT_TRUE(response->keep_alive());
    }
    EXPECT_EQ(scrapes_, 3);
}

TEST_F(MetricsServerTest, OtherPathsAre404) {
    for (const char* target : {"/", "/metricsx", "/metrics/", "/debug"}) {
        auto response = request(io_, port_, get(target));
        ASSERT_TRUE(response) << target;
        EXPECT_EQ(response->result(), http::status::not_found) << target;
    }
    EXPECT_EQ(scrapes_, 0);
}

TEST_F(MetricsServerTest, OtherMethodsAre405) {
    for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS"}) {
        auto response =
            request(io_, port_, std::string(method) + " /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        ASSERT_TRUE(response) << method;
        EXPECT_EQ(response->result(), http::status::method_not_allowed) << method;
        EXPECT_EQ((*response)[http::field::allow], "GET, HEAD");
    }
    EXPECT_EQ(scrapes_, 0);
}

TEST_F(MetricsServerTest, RequestBodyRejected) {
    auto response = request(io_, port_, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), http::status::payload_too_large);
    EXPECT_EQ(scrapes_, 0);
}

TEST_F(MetricsServerTest, OversizedHeadersRejected) {
    std::string raw = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(16 * 1024, 'a') + "\r\n\r\n";
    Client client(io_, port_);
    client.send(raw);
    beast::error_code error;
    auto response = client.receive(&error);
    ASSERT_TRUE(response) << error.message();
    EXPECT_EQ(response->result(), http::status::request_header_fields_too_large);
    EXPECT_EQ(scrapes_, 0);
}

TEST_F(MetricsServerTest, MalformedRequestIs400) {
    auto response = request(io_, port_, "NOT HTTP AT ALL\r\n\r\n");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), http::status::bad_request);
}

TEST_F(MetricsServerTest, ProviderFailureIs500) {
    server_.reset();
    server_.emplace(io_, "127.0.0.1:0", []() -> std::string { throw std::runtime_error("map read failed"); });
    auto response = request(io_, server_->port(), get("/metrics"));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), http::status::internal_server_error);
    EXPECT_NE(response->body().find("map read failed"), std::string::npos);
}

TEST_F(MetricsServerTest, StopClosesConnectionsAndListener) {
    Client client(io_, port_);
    server_->stop();
    EXPECT_TRUE(client.closed_by_server());
    Client late(io_, port_);
    EXPECT_TRUE(late.connect_error());
}

TEST(MetricsServer, SlowClientTimesOut) {
    asio::io_context io;
    MetricsServer server(io, "127.0.0.1:0", [] { return std::string(); }, {.timeout = 200ms});
    Client idle(io, server.port());
    Client slow(io, server.port());
    slow.send("GET /metrics HTTP/1.1\r\nHo");  // never finishes its headers
    auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(idle.closed_by_server());
    EXPECT_TRUE(slow.closed_by_server());
    EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST(MetricsServer, BindFailureSaysWhere) {
    asio::io_context io;
    MetricsServer first(io, "127.0.0.1:0", [] { return std::string(); });
    std::string listen = "127.0.0.1:" + std::to_string(first.port());
    try {
        MetricsServer second(io, listen, [] { return std::string(); });
        ADD_FAILURE() << "second bind succeeded";
    } catch (const SystemError& e) {
        EXPECT_EQ(std::string(e.what()), "metrics listen " + listen + ": Address already in use");
    }
    EXPECT_THROW(MetricsServer(io, "localhost:9478", [] { return std::string(); }), std::invalid_argument);
}

TEST(MetricsServer, ListensOnIpv6Loopback) {
    asio::io_context io;
    std::optional<MetricsServer> server;
    try {
        server.emplace(io, "[::1]:0", [] { return std::string("v6\n"); });
    } catch (const SystemError& e) {
        GTEST_SKIP() << "no IPv6 loopback: " << e.what();
    }
    EXPECT_TRUE(server->local_endpoint().address().is_v6());
    EXPECT_NE(server->port(), 0);
}

TEST(MetricsServer, LiveScrapePassesPromtool) {
    asio::io_context io;
    Histogram latency = sample_latency();
    MetricsSnapshot snapshot = filled_snapshot(latency);
    MetricsServer server(io, "127.0.0.1:0", [&] { return render_metrics(snapshot); });
    auto response = request(io, server.port(), get("/metrics"));
    ASSERT_TRUE(response);
    ASSERT_EQ(response->result(), http::status::ok);
    expect_promtool_passes(response->body());
}

// Everything the server sends on one connection until it closes it (or 5 s pass).
std::string exchange_raw(asio::io_context& io, std::uint16_t port, const std::string& raw) {
    Client client(io, port);
    EXPECT_FALSE(client.connect_error()) << client.connect_error().message();
    client.send(raw);
    std::string received;
    client.read_raw([&](beast::error_code, std::string_view bytes) {
        received.append(bytes);
        return true;
    });
    return received;
}

TEST_F(MetricsServerTest, HeadAnswersTheHeadersOfGetWithoutABody) {
    const std::string raw = exchange_raw(io_, port_, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(raw.rfind("HTTP/1.1 200", 0), 0u) << raw;
    EXPECT_NE(raw.find("Content-Length: " + std::to_string(text_.size()) + "\r\n"), std::string::npos) << raw;
    EXPECT_NE(raw.find("text/plain; version=0.0.4"), std::string::npos) << raw;
    EXPECT_TRUE(raw.ends_with("\r\n\r\n")) << "a body followed the headers: " << raw;
}

// Slowloris: a byte every 100 ms never lets an idle timer fire; the request's
// deadline closes the connection all the same, long before the drip ends.
TEST(MetricsServer, ClientDrippingHeaderBytesIsClosedAtTheDeadline) {
    asio::io_context io;
    int scrapes = 0;
    MetricsServer server(io, "127.0.0.1:0", [&] { return std::to_string(++scrapes); }, {.timeout = 500ms});
    Client slow(io, server.port());
    ASSERT_FALSE(slow.send("GET /metrics HTTP/1.1\r\nX-Slow: "));
    bool refused = false;
    for (int byte = 0; byte < 30 && !refused; ++byte) {  // 3 s of drip: 6 timeouts' worth
        refused = static_cast<bool>(slow.send("a"));
        io.restart();
        io.run_for(100ms);
    }
    EXPECT_TRUE(refused || slow.closed_by_server()) << "the dripping client was still connected after 3 s";
    EXPECT_EQ(scrapes, 0);
}

TEST(MetricsServer, ConnectionsOverTheLimitAreClosedAtOnce) {
    asio::io_context io;
    MetricsServer server(io, "127.0.0.1:0", [] { return std::string("ok\n"); }, {.max_connections = 2});
    Client first(io, server.port()), second(io, server.port());
    first.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");  // both are sessions before the third arrives
    second.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(first.receive());
    ASSERT_TRUE(second.receive());
    Client third(io, server.port());
    EXPECT_TRUE(third.closed_by_server());
    first.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");  // the ones inside keep being served
    auto response = first.receive();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body(), "ok\n");
}

}  // namespace
}  // namespace stickylb::metrics

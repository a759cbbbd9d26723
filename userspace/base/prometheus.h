// SPDX-License-Identifier: Apache-2.0
#pragma once
// Prometheus text exposition format 0.0.4, without a registry: a component fills
// a MetricsWriter per scrape and serves str().
//
// Project conventions, enforced by MetricsWriter (std::invalid_argument):
//  - every name starts with "stickylb_" and is [a-zA-Z_:][a-zA-Z0-9_:]*;
//  - counters end in "_total", other types do not; values in base units
//    (seconds, bytes); counters are never negative;
//  - the only labels are "vip", "backend", "server" (a memcached server,
//    "host:port") and "reason" (why a thing was counted: one family, one
//    series per reason) and "standing" (one of a closed set of states, 1 for
//    the current one), each at most once, plus "le" which the writer adds to
//    histogram buckets itself;
//  - the one exception is stickylb_build_info{version,commit} 1 (build_info()).
//  - one family has one type and one help text; a series (name + labels) is
//    written once.
#include <cstdint>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace stickylb::metrics {

struct Label {
    std::string_view name;  // "vip", "backend", "server" or "reason"
    std::string value;      // any UTF-8; escaped on output (\\, \", \n)
};

// Cumulative-on-output histogram with fixed upper bounds (finite, strictly
// increasing; +Inf is implicit). Not synchronised: observe and render on one
// thread (the daemon's io_context), or copy it under your own lock.
class Histogram {
public:
    explicit Histogram(std::vector<double> upper_bounds);
    // 1 ms .. 10 s, for health-check latencies.
    static std::vector<double> default_latency_bounds();

    void observe(double value);  // NaN is ignored

    const std::vector<double>& upper_bounds() const { return bounds_; }
    // Per bucket, not cumulative: counts_[i] observations in (bounds[i-1], bounds[i]];
    // the last element (size bounds+1) is the (bounds.back(), +Inf) bucket.
    const std::vector<std::uint64_t>& bucket_counts() const { return counts_; }
    std::uint64_t count() const { return count_; }
    double sum() const { return sum_; }

private:
    std::vector<double> bounds_;
    std::vector<std::uint64_t> counts_;
    std::uint64_t count_ = 0;
    double sum_ = 0;
};

// Builds the text of one scrape. Families appear in the order first added; the
// samples of a family stay together even when added interleaved with others.
class MetricsWriter {
public:
    void counter(std::string_view name, std::string_view help, std::initializer_list<Label> labels, double value);
    void gauge(std::string_view name, std::string_view help, std::initializer_list<Label> labels, double value);
    void histogram(std::string_view name, std::string_view help, std::initializer_list<Label> labels,
                   const Histogram& histogram);
    // stickylb_build_info{version="...",commit="..."} 1 (a gauge).
    void build_info(std::string_view version, std::string_view commit);

    std::string str() const;

private:
    enum class Type { counter, gauge, histogram };
    struct Family {
        std::string name;
        std::string help;
        Type type;
        std::string samples;           // rendered sample lines
        std::set<std::string> series;  // rendered label sets, to refuse duplicates
    };
    Family& family(std::string_view name, std::string_view help, Type type);
    void sample(std::string_view name, std::string_view help, Type type, std::initializer_list<Label> labels,
                double value);

    std::vector<Family> families_;
    std::map<std::string, std::size_t, std::less<>> index_;
};

// Text helpers, exposed for tests.
std::string format_value(double value);            // shortest round-trip; NaN, +Inf, -Inf
std::string escape_label_value(std::string_view);  // \\ \" \n
std::string escape_help(std::string_view);         // \\ \n

}  // namespace stickylb::metrics

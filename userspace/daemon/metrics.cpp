// SPDX-License-Identifier: Apache-2.0
#include "daemon/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <system_error>

namespace stickylb::metrics {
namespace {

constexpr std::string_view kPrefix = "stickylb_";

bool ends_with(std::string_view text, std::string_view suffix) {
    return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

void check_name(std::string_view name, bool counter) {
    auto fail = [&](const std::string& why) {
        throw std::invalid_argument("metric \"" + std::string(name) + "\": " + why);
    };
    if (!name.starts_with(kPrefix) || name.size() == kPrefix.size()) {
        fail("name must start with \"stickylb_\"");
    }
    for (std::size_t i = 0; i < name.size(); ++i) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok) fail("invalid character in name");
    }
    if (counter && !ends_with(name, "_total")) fail("a counter's name must end in \"_total\"");
    if (!counter) {
        for (std::string_view suffix : {"_total", "_bucket", "_sum", "_count"}) {
            if (ends_with(name, suffix)) fail("only counters end in \"_total\"; \"_bucket\", \"_sum\", \"_count\" are reserved");
        }
    }
}

// Canonical label text: {vip="...",backend="..."} in that order, or "".
std::string render_labels(std::string_view metric, std::initializer_list<Label> labels) {
    const Label* vip = nullptr;
    const Label* backend = nullptr;
    for (const Label& label : labels) {
        const Label** slot = label.name == "vip" ? &vip : label.name == "backend" ? &backend : nullptr;
        if (slot == nullptr) {
            throw std::invalid_argument("metric \"" + std::string(metric) + "\": label \"" +
                                        std::string(label.name) +
                                        "\" not allowed (only \"vip\" and \"backend\"; reasons are separate counters)");
        }
        if (*slot != nullptr) {
            throw std::invalid_argument("metric \"" + std::string(metric) + "\": label \"" +
                                        std::string(label.name) + "\" given twice");
        }
        *slot = &label;
    }
    std::string out;
    for (const Label* label : {vip, backend}) {
        if (label == nullptr) continue;
        out += out.empty() ? "{" : ",";
        out += label->name;
        out += "=\"";
        out += escape_label_value(label->value);
        out += '"';
    }
    if (!out.empty()) out += '}';
    return out;
}

// Adds le="..." to a rendered label set.
std::string with_le(const std::string& labels, const std::string& le) {
    std::string item = "le=\"" + le + "\"";
    if (labels.empty()) return "{" + item + "}";
    return labels.substr(0, labels.size() - 1) + "," + item + "}";
}

const char* type_name(int type) {
    switch (type) {
    case 0: return "counter";
    case 1: return "gauge";
    default: return "histogram";
    }
}

}  // namespace

std::string format_value(double value) {
    if (std::isnan(value)) return "NaN";
    if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
    char buffer[64];
    auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
    if (ec != std::errc{}) throw std::logic_error("format_value: to_chars failed");
    return std::string(buffer, end);
}

std::string escape_label_value(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '"': out += "\\\""; break;
        case '\n': out += "\\n"; break;
        default: out += c;
        }
    }
    return out;
}

std::string escape_help(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        default: out += c;
        }
    }
    return out;
}

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
    for (std::size_t i = 0; i < bounds_.size(); ++i) {
        if (!std::isfinite(bounds_[i])) {
            throw std::invalid_argument("histogram bounds must be finite (+Inf is implicit)");
        }
        if (i > 0 && !(bounds_[i] > bounds_[i - 1])) {
            throw std::invalid_argument("histogram bounds must be strictly increasing");
        }
    }
    counts_.assign(bounds_.size() + 1, 0);
}

std::vector<double> Histogram::default_latency_bounds() {
    return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

void Histogram::observe(double value) {
    if (std::isnan(value)) return;
    auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
    ++counts_[static_cast<std::size_t>(bucket)];
    ++count_;
    sum_ += value;
}

MetricsWriter::Family& MetricsWriter::family(std::string_view name, std::string_view help, Type type) {
    check_name(name, type == Type::counter);
    if (auto it = index_.find(name); it != index_.end()) {
        Family& existing = families_[it->second];
        if (existing.type != type) {
            throw std::invalid_argument("metric \"" + std::string(name) + "\": added with two types");
        }
        if (existing.help != help) {
            throw std::invalid_argument("metric \"" + std::string(name) + "\": added with two help texts");
        }
        return existing;
    }
    if (help.empty()) throw std::invalid_argument("metric \"" + std::string(name) + "\": help text required");
    index_.emplace(std::string(name), families_.size());
    families_.push_back(Family{std::string(name), std::string(help), type, {}, {}});
    return families_.back();
}

void MetricsWriter::sample(std::string_view name, std::string_view help, Type type,
                           std::initializer_list<Label> labels, double value) {
    std::string rendered = render_labels(name, labels);
    if (type == Type::counter && !(value >= 0)) {
        throw std::invalid_argument("metric \"" + std::string(name) + "\": counter value must be >= 0");
    }
    Family& f = family(name, help, type);
    if (!f.series.insert(rendered).second) {
        throw std::invalid_argument("metric \"" + std::string(name) + rendered + "\": series written twice");
    }
    f.samples += f.name;
    f.samples += rendered;
    f.samples += ' ';
    f.samples += format_value(value);
    f.samples += '\n';
}

void MetricsWriter::counter(std::string_view name, std::string_view help, std::initializer_list<Label> labels,
                            double value) {
    sample(name, help, Type::counter, labels, value);
}

void MetricsWriter::gauge(std::string_view name, std::string_view help, std::initializer_list<Label> labels,
                          double value) {
    sample(name, help, Type::gauge, labels, value);
}

void MetricsWriter::histogram(std::string_view name, std::string_view help, std::initializer_list<Label> labels,
                              const Histogram& h) {
    std::string rendered = render_labels(name, labels);
    Family& f = family(name, help, Type::histogram);
    if (!f.series.insert(rendered).second) {
        throw std::invalid_argument("metric \"" + std::string(name) + rendered + "\": series written twice");
    }
    std::uint64_t cumulative = 0;
    const auto& bounds = h.upper_bounds();
    const auto& counts = h.bucket_counts();
    for (std::size_t i = 0; i <= bounds.size(); ++i) {
        cumulative += counts[i];
        std::string le = i < bounds.size() ? format_value(bounds[i]) : "+Inf";
        f.samples += f.name + "_bucket" + with_le(rendered, le) + ' ' + format_value(double(cumulative)) + '\n';
    }
    f.samples += f.name + "_sum" + rendered + ' ' + format_value(h.sum()) + '\n';
    f.samples += f.name + "_count" + rendered + ' ' + format_value(double(h.count())) + '\n';
}

void MetricsWriter::build_info(std::string_view version, std::string_view commit) {
    constexpr std::string_view name = "stickylb_build_info";
    Family& f = family(name, "Build of stickylbd: version and commit labels, value 1.", Type::gauge);
    std::string rendered =
        "{version=\"" + escape_label_value(version) + "\",commit=\"" + escape_label_value(commit) + "\"}";
    if (!f.series.insert(rendered).second) {
        throw std::invalid_argument("stickylb_build_info written twice");
    }
    f.samples += f.name + rendered + " 1\n";
}

std::string MetricsWriter::str() const {
    std::string out;
    for (const Family& f : families_) {
        out += "# HELP " + f.name + ' ' + escape_help(f.help) + '\n';
        out += "# TYPE " + f.name + ' ' + type_name(static_cast<int>(f.type)) + '\n';
        out += f.samples;
    }
    return out;
}

void write_metrics(MetricsWriter& w, const MetricsSnapshot& s) {
    auto d = [](std::uint64_t v) { return static_cast<double>(v); };

    // Global outcomes: exactly one per packet the XDP program saw.
    const stickylb_global_stats& g = s.global;
    struct Outcome {
        std::string_view name, help;
        std::uint64_t value;
    };
    const Outcome outcomes[] = {
        {"stickylb_packets_passed_not_ip_total", "Packets passed to the kernel: not IPv4/IPv6.", g.pass_not_ip},
        {"stickylb_packets_passed_not_vip_total", "Packets passed to the kernel: IP, but not for a VIP.",
         g.pass_not_vip},
        {"stickylb_packets_passed_malformed_total",
         "Packets passed to the kernel: unparsable and not for a VIP address.", g.pass_malformed},
        {"stickylb_packets_passed_slow_path_total",
         "Packets passed to the tc slow path: backend next hop unresolved.", g.pass_slow_path},
        {"stickylb_packets_dropped_malformed_total", "Packets dropped: unparsable packet for a VIP address.",
         g.drop_malformed},
        {"stickylb_packets_dropped_no_backend_total", "Packets dropped: VIP with no usable backend.",
         g.drop_no_backend},
        {"stickylb_packets_dropped_fragment_total",
         "Packets dropped: fragment of a 5-tuple-hashed VIP.", g.drop_fragment},
        {"stickylb_packets_dropped_error_total", "Packets dropped: headroom or encapsulation failure.",
         g.drop_error},
        {"stickylb_packets_forwarded_tx_total", "Packets forwarded out of the ingress interface (XDP_TX).", g.tx},
        {"stickylb_packets_forwarded_redirect_total", "Packets forwarded out of another interface (redirect).",
         g.redirect},
        {"stickylb_fragments_steered_total",
         "Fragments of source-hashed VIPs forwarded (subset of forwarded packets).", g.fragments_steered},
        {"stickylb_icmp_too_big_steered_total",
         "ICMP frag-needed / packet-too-big sent to a flow's backend (subset of forwarded packets).",
         g.icmp_too_big_steered},
    };
    for (const Outcome& o : outcomes) w.counter(o.name, o.help, {}, d(o.value));

    for (const VipSample& v : s.vips) {
        w.counter("stickylb_vip_packets_total", "Packets received for the VIP.", {{"vip", v.vip}},
                  d(v.stats.packets));
        w.counter("stickylb_vip_bytes_total", "Bytes received for the VIP.", {{"vip", v.vip}}, d(v.stats.bytes));
        w.counter("stickylb_vip_new_flows_total", "Flows recorded for the VIP (handshake completed, or a re-pick).",
                  {{"vip", v.vip}}, d(v.stats.new_flows));
        w.counter("stickylb_vip_affinity_hits_total", "Persistent VIP: client found in the affinity table.",
                  {{"vip", v.vip}}, d(v.stats.affinity_hits));
        w.counter("stickylb_vip_affinity_misses_total",
                  "Persistent VIP: client picked from the ring and recorded.", {{"vip", v.vip}},
                  d(v.stats.affinity_misses));
    }

    for (const BackendSample& b : s.backends) {
        w.counter("stickylb_backend_packets_total", "Packets forwarded to the backend.",
                  {{"vip", b.vip}, {"backend", b.backend}}, d(b.stats.packets));
        w.counter("stickylb_backend_bytes_total", "Bytes forwarded to the backend.",
                  {{"vip", b.vip}, {"backend", b.backend}}, d(b.stats.bytes));
        w.gauge("stickylb_backend_state", "Backend state: 0 up, 1 draining, 2 down.",
                {{"vip", b.vip}, {"backend", b.backend}}, b.state);
        w.gauge("stickylb_backend_health_check_up", "1 if the backend's last health check passed, else 0.",
                {{"vip", b.vip}, {"backend", b.backend}}, b.health_ok ? 1 : 0);
        w.counter("stickylb_backend_state_transitions_total", "Backend state changes (up, draining, down).",
                  {{"vip", b.vip}, {"backend", b.backend}}, d(b.transitions));
    }
    for (const BackendSample& b : s.backends) {
        if (b.check_latency_seconds == nullptr) continue;
        w.histogram("stickylb_health_check_duration_seconds", "Duration of health checks, in seconds.",
                    {{"vip", b.vip}, {"backend", b.backend}}, *b.check_latency_seconds);
    }

    w.gauge("stickylb_flow_table_entries", "Entries in the flow table (LRU).", {}, d(s.flow_entries));
    w.gauge("stickylb_flow_table_capacity", "Capacity of the flow table.", {}, d(s.flow_capacity));
    w.gauge("stickylb_affinity_table_entries", "Entries in the client affinity table (LRU).", {},
            d(s.affinity_entries));
    w.gauge("stickylb_affinity_table_capacity", "Capacity of the client affinity table.", {},
            d(s.affinity_capacity));
    w.counter("stickylb_reconciles_total", "Reconciliations of the data plane with the configuration.", {},
              d(s.reconciles));
    w.counter("stickylb_reconcile_errors_total", "Reconciliations that failed.", {}, d(s.reconcile_errors));
    w.build_info(s.version, s.commit);
}

std::string render_metrics(const MetricsSnapshot& snapshot) {
    MetricsWriter writer;
    write_metrics(writer, snapshot);
    return writer.str();
}

}  // namespace stickylb::metrics

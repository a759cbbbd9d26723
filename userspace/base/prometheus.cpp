// SPDX-License-Identifier: Apache-2.0
#include "base/prometheus.h"

#include <algorithm>
#include <array>
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
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            fail("invalid character in name");
    }
    if (counter && !ends_with(name, "_total"))
        fail("a counter's name must end in \"_total\"");
    if (!counter) {
        for (std::string_view suffix : {"_total", "_bucket", "_sum", "_count"}) {
            if (ends_with(name, suffix))
                fail("only counters end in \"_total\"; \"_bucket\", \"_sum\", \"_count\" are reserved");
        }
    }
}

// Every label a stickylb metric may have, in the order they are rendered.
constexpr std::array<std::string_view, 6> kLabelOrder = {"vip", "backend", "server", "reason", "standing", "health"};

// Canonical label text: {vip="...",backend="...",...} in kLabelOrder, or "".
std::string render_labels(std::string_view metric, std::initializer_list<Label> labels) {
    std::array<const Label*, kLabelOrder.size()> slots{};
    for (const Label& label : labels) {
        const auto known = std::find(kLabelOrder.begin(), kLabelOrder.end(), label.name);
        if (known == kLabelOrder.end()) {
            std::string names;
            for (std::string_view name : kLabelOrder)
                names += (names.empty() ? "\"" : ", \"") + std::string(name) + "\"";
            throw std::invalid_argument("metric \"" + std::string(metric) + "\": label \"" + std::string(label.name) +
                                        "\" not allowed (only " + names + ")");
        }
        const Label*& slot = slots[static_cast<std::size_t>(known - kLabelOrder.begin())];
        if (slot != nullptr) {
            throw std::invalid_argument("metric \"" + std::string(metric) + "\": label \"" + std::string(label.name) +
                                        "\" given twice");
        }
        slot = &label;
    }
    std::string out;
    for (const Label* label : slots) {
        if (label == nullptr)
            continue;
        out += out.empty() ? "{" : ",";
        out += label->name;
        out += "=\"";
        out += escape_label_value(label->value);
        out += '"';
    }
    if (!out.empty())
        out += '}';
    return out;
}

// Adds le="..." to a rendered label set.
std::string with_le(const std::string& labels, const std::string& le) {
    std::string item = "le=\"" + le + "\"";
    if (labels.empty())
        return "{" + item + "}";
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
    if (std::isnan(value))
        return "NaN";
    if (std::isinf(value))
        return value > 0 ? "+Inf" : "-Inf";
    char buffer[64];
    auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
    if (ec != std::errc{})
        throw std::logic_error("format_value: to_chars failed");
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
    if (std::isnan(value))
        return;
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
    if (help.empty())
        throw std::invalid_argument("metric \"" + std::string(name) + "\": help text required");
    index_.emplace(std::string(name), families_.size());
    families_.push_back(Family{std::string(name), std::string(help), type, {}, {}});
    return families_.back();
}

void MetricsWriter::sample(std::string_view name, std::string_view help, Type type, std::initializer_list<Label> labels,
                           double value) {
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

}  // namespace stickylb::metrics

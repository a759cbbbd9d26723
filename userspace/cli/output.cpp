// SPDX-License-Identifier: Apache-2.0
#include "cli/output.h"

#include <sstream>

namespace stickylb::cli {

using json = nlohmann::ordered_json;

namespace {

std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

bool is_scalar_array(const json& value) {
    if (!value.is_array())
        return false;
    for (const auto& element : value)
        if (element.is_structured())
            return false;
    return true;
}

std::string scalar(const json& value) {
    if (value.is_string())
        return value.get<std::string>();
    if (value.is_null())
        return "-";
    if (is_scalar_array(value)) {
        std::string text;
        for (const auto& element : value)
            text += (text.empty() ? "" : ",") + scalar(element);
        return text.empty() ? "-" : text;
    }
    return dump(value);
}

// "key value key value" for one object; nested objects as outer.inner.
void flatten(const json& object, const std::string& prefix, std::string& line) {
    for (const auto& [key, value] : object.items()) {
        if (value.is_object() && !value.empty()) {
            flatten(value, prefix + key + ".", line);
            continue;
        }
        if (!line.empty())
            line += "  ";
        line += prefix + key + " " + scalar(value);
    }
}

void print(const json& value, const std::string& indent, std::ostringstream& out) {
    if (value.is_null())
        return;
    if (value.is_array() && !is_scalar_array(value)) {
        for (const auto& element : value) {
            if (element.is_object()) {
                std::string line;
                flatten(element, "", line);
                out << indent << line << "\n";
            } else if (element.is_array()) {
                print(element, indent + "  ", out);
            } else {
                out << indent << scalar(element) << "\n";
            }
        }
        return;
    }
    if (value.is_array()) {  // of scalars: one per line
        for (const auto& element : value)
            out << indent << scalar(element) << "\n";
        return;
    }
    if (value.is_object()) {
        for (const auto& [key, member] : value.items()) {
            if (member.is_structured() && !member.empty() && !is_scalar_array(member)) {
                out << indent << key << ":\n";
                print(member, indent + "  ", out);
            } else {
                out << indent << key << " " << scalar(member) << "\n";
            }
        }
        return;
    }
    out << indent << scalar(value) << "\n";
}

}  // namespace

std::string format_plain(const json& result) {
    std::ostringstream out;
    print(result, "", out);
    return out.str();
}

std::string format_result(const json& result, OutputFormat format) {
    switch (format) {
    case OutputFormat::json: return dump(result) + "\n";
    case OutputFormat::pretty: return result.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
    case OutputFormat::plain: break;
    }
    return format_plain(result);
}

}  // namespace stickylb::cli

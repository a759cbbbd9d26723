// SPDX-License-Identifier: Apache-2.0
// The global counters have one table (stickylb/stats.h): the BPF struct, `stickylb
// stats show`, the metrics and the tests expand it. What the README says of them
// must be that table: the outcome fields it lists, the metric names it spells out
// and every stats name it mentions.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "control/metrics.h"
#include "stickylb/stats.h"

namespace stickylb {
namespace {

std::string readme() {
    std::ifstream file(std::string(STICKYLB_SOURCE_DIR) + "/README.md");
    std::stringstream text;
    text << file.rdbuf();
    EXPECT_FALSE(text.str().empty()) << "README.md not found";
    return text.str();
}

std::set<std::string> names(bool outcome, bool field) {
    std::set<std::string> out;
    for (const GlobalCounter& counter : kGlobalCounters)
        if (counter.outcome == outcome)
            out.insert(field ? counter.field_name : counter.name);
    return out;
}

// The backticked words of the README paragraph that starts with `lead`.
std::set<std::string> backticked_after(const std::string& text, const std::string& lead) {
    const auto start = text.find(lead);
    EXPECT_NE(start, std::string::npos) << "README has no \"" << lead << "\"";
    if (start == std::string::npos)
        return {};
    const std::string paragraph = text.substr(start, text.find("\n\n", start) - start);
    std::set<std::string> words;
    const std::regex word("`([a-z_]+)`");
    for (auto it = std::sregex_iterator(paragraph.begin(), paragraph.end(), word); it != std::sregex_iterator(); ++it)
        words.insert((*it)[1]);
    return words;
}

TEST(CounterTable, ReadmeListsEveryOutcomeFieldAndNoOther) {
    auto listed = backticked_after(readme(), "Every packet ends in exactly one outcome counter of");
    listed.erase("global_stats");
    EXPECT_EQ(listed, names(true, true));
}

TEST(CounterTable, ReadmeSpellsTheOutcomeMetricsAsTheTableNamesThem) {
    std::string text = readme();
    const std::regex braces(R"(stickylb_packets_\{([a-z_,\s]+)\}_total)");
    std::smatch match;
    ASSERT_TRUE(std::regex_search(text, match, braces)) << "README lists no stickylb_packets_{...}_total";
    std::set<std::string> listed;
    std::stringstream items(std::regex_replace(match[1].str(), std::regex(R"(\s)"), ""));
    for (std::string item; std::getline(items, item, ',');)
        listed.insert(item);
    EXPECT_EQ(listed, names(true, false));
    for (const GlobalCounter& counter : kGlobalCounters)
        if (!counter.outcome) {
            EXPECT_NE(text.find("`" + metrics::global_counter_metric(counter) + "`"), std::string::npos)
                << metrics::global_counter_metric(counter) << " is not in the README";
        }
}

TEST(CounterTable, EveryStatsNameTheReadmeMentionsIsInTheTable) {
    const std::string text = readme();
    std::set<std::string> known = names(true, false);
    const std::regex stat(R"(\b((passed|dropped|forwarded)_[a-z_]+))");
    int seen = 0;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), stat); it != std::sregex_iterator(); ++it) {
        std::string name = (*it)[1];
        if (name.ends_with("_total"))
            name.resize(name.size() - 6);
        EXPECT_TRUE(known.count(name)) << "README names a counter stickylb does not have: " << name;
        ++seen;
    }
    EXPECT_GT(seen, 0);
}

TEST(CounterTable, NamesAreUniqueAndTheStructHoldsExactlyTheTable) {
    std::set<std::string> fields, stat_names;
    for (const GlobalCounter& counter : kGlobalCounters) {
        EXPECT_TRUE(fields.insert(counter.field_name).second) << counter.field_name;
        EXPECT_TRUE(stat_names.insert(counter.name).second) << counter.name;
        EXPECT_NE(std::string(counter.help), "");
    }
    EXPECT_EQ(sizeof(stickylb_global_stats), std::size(kGlobalCounters) * sizeof(__u64));
}

}  // namespace
}  // namespace stickylb

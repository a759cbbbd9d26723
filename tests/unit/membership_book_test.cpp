// SPDX-License-Identifier: Apache-2.0
// The membership views stickylbd publishes: clusters merged from VIPs, the epoch
// and incarnation rules, and numbers that never go backwards across restarts
// (state file) or without one (views read back from memcached). Views go through
// the agent's own parser (session/membership_view.h).
#include <gtest/gtest.h>

#include "session/membership.h"
#include "session/membership_view.h"

namespace stickylb {
namespace {

using session::Member;
using session::MembershipView;
using session::MemberState;
using State = MemberState;

ClusterStates web(std::map<std::string, MemberState> backends) { return {{"web", std::move(backends)}}; }

const MembershipView& view_of(const MembershipBook& book, const std::string& cluster = "web") {
    const MembershipView* view = book.find(cluster);
    EXPECT_NE(view, nullptr) << cluster;
    static const MembershipView none;
    return view ? *view : none;
}

std::uint64_t incarnation(const MembershipBook& book, const std::string& backend) {
    const Member* member = view_of(book).find(backend);
    EXPECT_NE(member, nullptr) << backend;
    return member ? member->incarnation : 0;
}

TEST(MembershipBook, FirstViewHasEpochOneAndIncarnationsOne) {
    MembershipBook book;
    EXPECT_EQ(book.update(web({{"be1", State::up}, {"be2", State::down}})), std::vector<std::string>{"web"});
    const MembershipView& view = view_of(book);
    EXPECT_EQ(view.cluster, "web");
    EXPECT_EQ(view.epoch, 1u);
    EXPECT_EQ(view.backends.at("be1"), (Member{State::up, 1}));
    EXPECT_EQ(view.backends.at("be2"), (Member{State::down, 1}));
}

TEST(MembershipBook, EpochGrowsOnlyWhenTheViewChanges) {
    MembershipBook book;
    book.update(web({{"be1", State::up}, {"be2", State::up}}));
    EXPECT_TRUE(book.update(web({{"be1", State::up}, {"be2", State::up}})).empty()) << "same content: no new epoch";
    EXPECT_EQ(view_of(book).epoch, 1u);
    book.update(web({{"be1", State::up}, {"be2", State::draining}}));
    EXPECT_EQ(view_of(book).epoch, 2u);
    book.update(web({{"be1", State::up}, {"be2", State::draining}, {"be3", State::up}}));
    EXPECT_EQ(view_of(book).epoch, 3u) << "a backend added";
    book.update(web({{"be1", State::up}, {"be3", State::up}}));
    EXPECT_EQ(view_of(book).epoch, 4u) << "a backend removed";
    book.update(web({{"be1", State::up}, {"be3", State::up}}));
    EXPECT_EQ(view_of(book).epoch, 4u);
}

TEST(MembershipBook, IncarnationGrowsWhenABackendLeavesDownAndOnlyThen) {
    MembershipBook book;
    book.update(web({{"be1", State::up}}));
    book.update(web({{"be1", State::down}}));
    EXPECT_EQ(incarnation(book, "be1"), 1u) << "going down keeps the incarnation";
    book.update(web({{"be1", State::up}}));
    EXPECT_EQ(incarnation(book, "be1"), 2u) << "down -> up";
    book.update(web({{"be1", State::draining}}));
    book.update(web({{"be1", State::up}}));
    EXPECT_EQ(incarnation(book, "be1"), 2u) << "up -> draining -> up is the same life";
    book.update(web({{"be1", State::down}}));
    book.update(web({{"be1", State::draining}}));
    EXPECT_EQ(incarnation(book, "be1"), 3u) << "down -> draining is alive again";
    book.update(web({{"be1", State::up}}));
    EXPECT_EQ(incarnation(book, "be1"), 3u);
    EXPECT_EQ(view_of(book).epoch, 8u);
}

TEST(MembershipBook, ABackendThatLeavesTheConfigComesBackWithAHigherIncarnation) {
    MembershipBook book;
    book.update(web({{"be1", State::up}, {"be2", State::up}}));
    book.update(web({{"be1", State::up}, {"be2", State::down}}));
    book.update(web({{"be1", State::up}, {"be2", State::up}}));
    ASSERT_EQ(incarnation(book, "be2"), 2u);
    book.update(web({{"be1", State::up}}));
    EXPECT_EQ(view_of(book).find("be2"), nullptr);
    book.update(web({{"be1", State::up}, {"be2", State::up}}));
    EXPECT_EQ(incarnation(book, "be2"), 3u);
}

TEST(MembershipBook, ViewsRoundTripThroughTheAgentsParser) {
    MembershipBook book;
    book.update({{"web", {{"be1", State::up}, {"be2", State::draining}, {"be3", State::down}}},
                 {"tcp-10.0.0.1-80", {{"10.1.0.2", State::up}}}});
    const auto views = book.views();
    ASSERT_EQ(views.size(), 2u);
    for (MembershipView view : views) {
        view.written_ms = 1763700000123;
        const std::string text = session::encode_view(view);
        std::string error;
        const auto parsed = session::parse_view(text, &error);
        ASSERT_TRUE(parsed) << error << ": " << text;
        EXPECT_EQ(*parsed, view);
    }
    EXPECT_EQ(session::members_key("web"), "stickylb:v1:members:web");
}

TEST(MembershipBook, OnlyActiveClustersArePublished) {
    MembershipBook book;
    book.update({{"web", {{"be1", State::up}}}, {"api", {{"be9", State::up}}}});
    book.update(web({{"be1", State::up}}));
    const auto views = book.views();
    ASSERT_EQ(views.size(), 1u);
    EXPECT_EQ(views[0].cluster, "web");
    // api comes back later: its epoch continues, it does not restart at 1.
    book.update({{"web", {{"be1", State::up}}}, {"api", {{"be9", State::up}}}});
    EXPECT_EQ(view_of(book, "api").epoch, 1u) << "same content as before it left";
    book.update({{"web", {{"be1", State::up}}}, {"api", {{"be9", State::down}}}});
    EXPECT_EQ(view_of(book, "api").epoch, 2u);
}

TEST(MembershipBook, NeverBackwardsAcrossARestartWithTheStateFile) {
    MembershipBook before;
    before.update(web({{"be1", State::up}}));
    before.update(web({{"be1", State::down}}));
    before.update(web({{"be1", State::up}}));
    ASSERT_EQ(view_of(before).epoch, 3u);

    MembershipBook after;
    after.load_json(nlohmann::json::parse(before.to_json().dump()));
    EXPECT_TRUE(after.update(web({{"be1", State::up}})).empty()) << "the restart itself changes nothing";
    EXPECT_EQ(view_of(after).epoch, 3u);
    EXPECT_EQ(incarnation(after, "be1"), 2u);
    after.update(web({{"be1", State::down}}));
    after.update(web({{"be1", State::up}}));
    EXPECT_EQ(view_of(after).epoch, 5u);
    EXPECT_EQ(incarnation(after, "be1"), 3u);
}

TEST(MembershipBook, StateFileSectionIsValidatedAsAWhole) {
    MembershipBook book;
    book.update(web({{"be1", State::up}}));
    EXPECT_THROW(book.load_json(nlohmann::json::parse(R"({"web":{"epoch":-1,"backends":{}}})")), std::runtime_error);
    EXPECT_THROW(book.load_json(nlohmann::json::parse(R"({"web":{"epoch":2,"backends":{"a":{"state":"zombie",
                 "incarnation":1}}}})")),
                 std::runtime_error);
    EXPECT_EQ(view_of(book).epoch, 1u) << "a bad section leaves the book as it was";
}

// The state file is gone (stickylbd --detach, a new LB host): the view still in
// memcached keeps the numbers going up.
TEST(MembershipBook, RecoveredFromMemcachedWhenTheStateFileIsGone) {
    MembershipView seen{"web", 41, 1763700000000, {{"be1", {State::up, 7}}, {"be2", {State::down, 3}}}};
    MembershipBook fresh;
    fresh.recover(seen);
    EXPECT_TRUE(fresh.update(web({{"be1", State::up}, {"be2", State::down}})).empty())
        << "the same view again: same epoch, same incarnations";
    EXPECT_EQ(view_of(fresh).epoch, 41u);
    EXPECT_EQ(incarnation(fresh, "be1"), 7u);
    // be2 was down in the last view published: coming up is a new life.
    fresh.update(web({{"be1", State::up}, {"be2", State::up}}));
    EXPECT_EQ(view_of(fresh).epoch, 42u);
    EXPECT_EQ(incarnation(fresh, "be2"), 4u);
}

TEST(MembershipBook, AnOlderViewInMemcachedRaisesIncarnationsButNotContent) {
    MembershipBook book;
    for (int i = 0; i < 5; ++i) {
        book.update(web({{"be1", State::up}, {"be2", i % 2 ? State::up : State::draining}}));
    }
    ASSERT_EQ(view_of(book).epoch, 5u);
    book.recover(MembershipView{"web", 2, 0, {{"be1", {State::down, 9}}, {"old", {State::up, 4}}}});
    EXPECT_EQ(view_of(book).epoch, 5u);
    EXPECT_EQ(view_of(book).find("be1")->state, State::up) << "our newer content stays";
    EXPECT_EQ(incarnation(book, "be1"), 9u);
    book.update(web({{"be1", State::up}, {"be2", State::draining}, {"old", State::up}}));
    EXPECT_EQ(incarnation(book, "old"), 5u) << "a backend known only from memcached comes back above it";
}

// A host taking over from another writer may hold other content under the epoch the
// agents saw with the writer's: it must not publish it under that epoch.
TEST(MembershipBook, TakingOverUnderTheSameEpochWithOtherContentTakesTheNextEpoch) {
    MembershipBook book;
    book.update(web({{"be1", State::up}, {"be2", State::up}}));
    book.update(web({{"be1", State::up}, {"be2", State::draining}}));
    ASSERT_EQ(view_of(book).epoch, 2u);
    const MembershipView theirs{"web", 2, 0, {{"be1", {State::down, 1}}, {"be2", {State::up, 1}}}};
    book.take_over(theirs);
    EXPECT_EQ(view_of(book).epoch, 3u);
    EXPECT_NE(view_of(book).backends, theirs.backends);

    MembershipBook same;
    same.update(web({{"be1", State::up}}));
    same.take_over(MembershipView{"web", 1, 0, {{"be1", {State::up, 1}}}});
    EXPECT_EQ(view_of(same).epoch, 1u) << "the same content under the same epoch is the same view";
    same.take_over(MembershipView{"web", 7, 0, {{"be1", {State::up, 3}}}});
    EXPECT_EQ(view_of(same).epoch, 7u) << "a newer view is adopted as it is";
    EXPECT_EQ(incarnation(same, "be1"), 3u);
}

DesiredBackend backend(const std::string& vip, const std::string& name, BackendState state) {
    DesiredBackend b;
    b.id = {vip, name};
    b.state = state;
    return b;
}

TEST(ClusterStates, VipsOfAClusterMergeTheirBackendsByName) {
    DaemonConfig config;
    config.vips.resize(3);
    config.vips[0].name = "http";
    config.vips[0].cluster = "shop";
    config.vips[1].name = "https";
    config.vips[1].cluster = "shop";
    config.vips[2].name = "api";  // no cluster: its own name
    DesiredState desired;
    desired.vips.resize(3);
    desired.vips[0].name = "http";
    desired.vips[0].backends = {backend("http", "a", BackendState::down), backend("http", "b", BackendState::down),
                                backend("http", "c", BackendState::up), backend("http", "d", BackendState::down)};
    desired.vips[1].name = "https";
    desired.vips[1].backends = {backend("https", "a", BackendState::up), backend("https", "b", BackendState::down),
                                backend("https", "c", BackendState::draining),
                                backend("https", "e", BackendState::draining)};
    desired.vips[2].name = "api";
    desired.vips[2].backends = {backend("api", "a", BackendState::down)};
    const ClusterStates states = cluster_states(config, desired);
    ASSERT_EQ(states.size(), 2u);
    EXPECT_EQ(
        states.at("shop"),
        (std::map<std::string, MemberState>{
            {"a", State::up}, {"b", State::down}, {"c", State::draining}, {"d", State::down}, {"e", State::draining}}))
        << "down only if down everywhere it is listed, draining if draining anywhere";
    EXPECT_EQ(states.at("api"), (std::map<std::string, MemberState>{{"a", State::down}}));
}

}  // namespace
}  // namespace stickylb

// SPDX-License-Identifier: Apache-2.0
#pragma once
// The host side of announcing, in memory: the speaker's routing table as a set, and a
// data plane whose attachment and probe answers the test sets.
#include <set>
#include <stdexcept>
#include <vector>

#include "dataplane/kernel_routes.h"
#include "dataplane/self_test.h"

namespace stickylb::testing {

class FakeRoutes final : public AnnouncedRoutes {
public:
    void add(const IpAddress& vip) override {
        fail_if_broken();
        routes.insert(vip);
        ++writes;
    }
    void remove(const IpAddress& vip) override {
        fail_if_broken();
        routes.erase(vip);
        ++writes;
    }
    std::vector<IpAddress> list() override {
        fail_if_broken();
        return {routes.begin(), routes.end()};
    }

    std::set<IpAddress> routes;
    int writes = 0;
    bool broken = false;  // every call throws, as a netlink socket that refuses

private:
    void fail_if_broken() const {
        if (broken)
            throw std::runtime_error("netlink: operation not permitted");
    }
};

class FakeSelfTest final : public DataPlaneSelfTest {
public:
    bool attached() override { return is_attached; }
    bool forwards(const IpAddress& vip, std::uint16_t, std::uint8_t) override {
        ++probes;
        return !not_forwarding.contains(vip);
    }

    bool is_attached = true;
    std::set<IpAddress> not_forwarding;
    int probes = 0;
};

}  // namespace stickylb::testing

// SPDX-License-Identifier: Apache-2.0
#include "agent/upstream_group.h"

#include <boost/asio/async_result.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "agent/placement.h"

namespace stickylb::agent {

namespace asio = boost::asio;

UpstreamGroup::UpstreamGroup(asio::any_io_executor executor, const std::vector<std::string>& servers,
                             UpstreamOptions options) {
    for (const std::string& text : servers) {
        servers_.push_back(std::make_unique<UpstreamServer>(executor, ServerAddress::parse(text), options));
    }
    for (const auto& server : servers_)
        names_.push_back(server->name());
}

std::vector<UpstreamServer*> UpstreamGroup::ranked(std::string_view key) {
    std::vector<UpstreamServer*> out;
    for (std::size_t index : rank_servers(names_, key))
        out.push_back(servers_[index].get());
    return out;
}

std::vector<UpstreamServer*> UpstreamGroup::placement(std::string_view key, std::size_t count) {
    std::vector<UpstreamServer*> order = ranked(key);
    std::vector<UpstreamServer*> chosen;
    for (UpstreamServer* server : order) {
        if (chosen.size() < count && server->up())
            chosen.push_back(server);
    }
    for (UpstreamServer* server : order) {
        if (chosen.size() >= std::min(count, order.size()))
            break;
        if (std::find(chosen.begin(), chosen.end(), server) == chosen.end())
            chosen.push_back(server);
    }
    return chosen;
}

void UpstreamGroup::close() {
    for (auto& server : servers_)
        server->close();
}

asio::awaitable<CallResult> call(UpstreamServer& server, std::string wire, ReplyShape shape) {
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(CallResult)>(
        [&server, wire = std::move(wire), shape](auto handler) mutable {
            // UpstreamServer takes a copyable std::function; the coroutine's handler is move-only.
            auto shared = std::make_shared<decltype(handler)>(std::move(handler));
            server.call(std::move(wire), shape, [shared](std::error_code error, Reply reply) {
                (*shared)(CallResult{error, std::move(reply)});
            });
        },
        asio::use_awaitable);
}

asio::awaitable<PlacedResult> call_first(UpstreamGroup& group, std::string_view key, std::string wire,
                                         ReplyShape shape) {
    PlacedResult placed;
    const std::vector<UpstreamServer*> order = group.placement(key, group.size());
    for (std::size_t i = 0; i < order.size(); ++i) {
        placed.server = order[i];
        placed.failovers = i;
        // Plain statements around co_await: GCC 12 mishandles temporaries of a
        // co_await inside a conditional expression.
        std::string attempt = wire;
        placed.result = co_await call(*order[i], std::move(attempt), shape);
        if (placed.result.ok())
            break;
    }
    co_return placed;
}

asio::awaitable<std::vector<CallResult>> call_all(std::vector<UpstreamCall> calls) {
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::vector<CallResult>)>(
        [calls = std::move(calls)](auto handler) mutable {
            struct Pending {
                decltype(handler) done;
                std::vector<CallResult> results;
                std::size_t outstanding;
            };
            auto pending = std::make_shared<Pending>(Pending{std::move(handler), {}, calls.size()});
            pending->results.resize(calls.size());
            if (calls.empty()) {
                auto executor = asio::get_associated_executor(pending->done);
                asio::post(executor, [pending] { pending->done(std::move(pending->results)); });
                return;
            }
            for (std::size_t i = 0; i < calls.size(); ++i) {
                calls[i].server->call(std::move(calls[i].wire), calls[i].shape,
                                      [pending, i](std::error_code error, Reply reply) {
                                          pending->results[i] = CallResult{error, std::move(reply)};
                                          if (--pending->outstanding == 0)
                                              pending->done(std::move(pending->results));
                                      });
            }
        },
        asio::use_awaitable);
}

}  // namespace stickylb::agent

// SPDX-License-Identifier: Apache-2.0
#include "agent/session_service.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <charconv>
#include <ctime>

#include <spdlog/spdlog.h>

#include "agent/session_keys.h"

namespace stickylb::agent {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// A lock attempt that keeps meeting a changing lock gives up after this many rounds.
constexpr int kMaxLockRounds = 64;
// How often a waiter looks again at a lock held by another host.
constexpr std::chrono::milliseconds kRemotePoll{20};
// Write attempts per replica when its copy changed under us without conflict.
constexpr int kWriteRetries = 3;
// Rounds of a delete that keeps meeting newer writes by other connections.
constexpr int kDeleteRounds = 3;
// A tombstone lives at least this long (and at least as long as the longest-
// lived copy it replaces, which no older copy outlives: every write sets the
// expiry of all copies). It must outlast any repair that read the session
// before the delete (in flight for at most a request timeout) and the absence
// of a server holding an older copy until the resync after its return reaches
// the session (--resync-sessions / --resync-rate: 50 s at the defaults). An
// hour covers both with a wide margin, at about 100 bytes per deleted session
// and server.
constexpr std::int64_t kTombstoneMinSeconds = 3600;
// memcached reads an expiry above 30 days as a unix time.
constexpr std::int64_t kMaxRelativeExpiry = 30 * 24 * 3600;

// "T<seconds>" for a copy with `seconds` left (0: never expires).
std::string expiry_flag(std::int64_t seconds) {
    if (seconds > kMaxRelativeExpiry)
        seconds += static_cast<std::int64_t>(std::time(nullptr));
    return "T" + std::to_string(seconds);
}

std::string meta_set(std::string_view key, std::string_view value, std::string_view flags) {
    std::string wire;
    wire.reserve(key.size() + value.size() + flags.size() + 32);
    wire += "ms ";
    wire += key;
    wire += ' ';
    wire += std::to_string(value.size());
    if (!flags.empty()) {
        wire += ' ';
        wire += flags;
    }
    wire += "\r\n";
    wire += value;
    wire += "\r\n";
    return wire;
}

std::string meta_get(std::string_view key, std::string_view flags) {
    std::string wire = "mg " + std::string(key);
    if (!flags.empty())
        wire += ' ' + std::string(flags);
    return wire + "\r\n";
}

std::uint64_t reply_number(const Reply& reply, char flag) {
    std::uint64_t value = 0;
    if (auto text = reply.flag(flag))
        std::from_chars(text->data(), text->data() + text->size(), value);
    return value;
}

// memcached's clock ticks in whole seconds, so "T<n>" lives between n-1 and n
// seconds: one more second keeps a lock for at least its lease (at least 2 s, so
// that a clock stepping by two between renewals cannot expire it).
std::string lease_flag(std::chrono::milliseconds lease) {
    auto seconds = std::chrono::ceil<std::chrono::seconds>(lease).count();
    return "T" + std::to_string(std::max<long long>(1, seconds) + 1);
}

std::string upstream_failure(const UpstreamServer& server, const CallResult& result) {
    if (result.error)
        return server_error("upstream " + server.name() + ": " + result.error.message());
    return server_error("upstream " + server.name() + ": unexpected reply '" + result.reply.line + "'");
}

// The request as memcached's classic text protocol, always asking for a reply
// (the agent needs it to know the outcome even when its client said noreply).
std::string classic_wire(const Request& request) {
    std::string wire(command_name(request.command));
    for (const std::string& key : request.keys) {
        wire += ' ';
        wire += key;
    }
    if (is_storage(request.command)) {
        wire += ' ' + std::to_string(request.flags) + ' ' + std::to_string(request.exptime) + ' ' +
                std::to_string(request.data.size());
        if (request.command == Command::cas)
            wire += ' ' + std::to_string(request.cas_unique);
        wire += "\r\n";
        wire += request.data;
    } else if (request.command == Command::touch) {
        wire += ' ' + std::to_string(request.exptime);
    } else if (request.command == Command::incr || request.command == Command::decr) {
        wire += ' ' + std::to_string(request.delta);
    }
    wire += "\r\n";
    return wire;
}

// A lock attempt's token counts as ours from before its request leaves (see
// LockRegistry::reserve) until the attempt is over, however it ends.
class TokenReservation {
public:
    TokenReservation(LockRegistry& registry, const std::string& key, std::uint64_t token)
        : registry_(registry), key_(key), token_(token) {
        registry_.reserve(token_);
    }
    TokenReservation(const TokenReservation&) = delete;
    TokenReservation& operator=(const TokenReservation&) = delete;
    ~TokenReservation() { registry_.unreserve(key_, token_); }

private:
    LockRegistry& registry_;
    const std::string& key_;
    std::uint64_t token_;
};

}  // namespace

std::map<std::string, ClientState::SessionRead>::iterator ClientState::remember_read(const std::string& sid,
                                                                                     SessionRead read) {
    if (read.newest)
        std::string().swap(read.newest->payload);
    read.sequence = ++sequence;
    auto [kept, inserted] = reads.insert_or_assign(sid, std::move(read));
    if (reads.size() > kMaxKept) {
        auto oldest = std::min_element(reads.begin(), reads.end(), [](const auto& a, const auto& b) {
            return a.second.sequence < b.second.sequence;
        });
        reads.erase(oldest);
    }
    return kept;
}

Clock::time_point ClientState::first_lock_attempt(const std::string& lock_key, Clock::time_point now) {
    auto [attempt, inserted] = lock_attempts.try_emplace(lock_key, now);
    if (inserted && lock_attempts.size() > kMaxKept) {
        auto oldest = lock_attempts.end();
        for (auto it = lock_attempts.begin(); it != lock_attempts.end(); ++it) {
            if (it != attempt && (oldest == lock_attempts.end() || it->second < oldest->second))
                oldest = it;
        }
        lock_attempts.erase(oldest);
    }
    return attempt->second;
}

SessionService::SessionService(const AgentConfig& config, UpstreamGroup& upstreams, AgentStats& stats)
    : config_(config),
      upstreams_(upstreams),
      stats_(stats),
      recent_(config.resync_sessions),
      random_(std::random_device{}()) {
    self_.backend = config.backend;
    do {
        self_.instance = random64();
    } while (self_.instance == 0);
}

std::uint64_t SessionService::incarnation() const {
    if (!view_)
        return 0;
    const session::Member* member = view_->find(self_.backend);
    return member == nullptr ? 0 : member->incarnation;
}

asio::awaitable<PlacedResult> SessionService::call_placed(std::string_view key, std::string wire, ReplyShape shape) {
    PlacedResult placed = co_await call_first(upstreams_, key, std::move(wire), shape);
    stats_.upstream_failovers += placed.failovers;
    co_return placed;
}

void SessionService::forget(ClientState& client) {
    for (const std::string& key : client.locks) {
        if (HeldLock* held = locks_.find(key); held != nullptr && held->owner == client.id) {
            locks_.remove(key, held->token);
        }
    }
    client.locks.clear();
}

asio::awaitable<void> SessionService::handle(ClientState& client, const Request& request, ReplySink& out) {
    if (request.command == Command::get || request.command == Command::gets) {
        co_await get(client, request, out);
        co_return;
    }
    std::string reply = co_await answer(client, request);
    if (!request.noreply)
        co_await out.put(reply);
}

asio::awaitable<std::string> SessionService::answer(ClientState& client, const Request& request) {
    switch (request.command) {
    case Command::version: co_return "VERSION 1.6.0-stickylb-agent-" STICKYLB_VERSION "\r\n";
    case Command::verbosity: co_return std::string(kOk);
    case Command::quit:
    case Command::stats: co_return std::string();  // the connection answers these itself
    default: break;
    }
    const std::string& key = request.keys.at(0);
    SessionKey kind = classify_key(key, config_.session_prefix);
    if (kind.kind == SessionKey::Kind::lock) {
        if (request.command == Command::add)
            co_return co_await lock(client, request, kind.session_id);
        if (request.command == Command::del)
            co_return co_await unlock(client, key);
        // Any other write would bypass ownership: replace a live lock, or leave one nobody owns or breaks.
        ++stats_.lock_commands_refused;
        co_return client_error("only add and delete are allowed on session lock keys (their owners are checked)");
    } else if (kind.kind == SessionKey::Kind::data) {
        switch (request.command) {
        case Command::set:
        case Command::add:
        case Command::replace: co_return co_await write_session(client, request, kind.session_id);
        case Command::del: co_return co_await delete_session(client, request, kind.session_id);
        case Command::touch: co_return co_await touch_session(request);
        default: co_return client_error("command not supported on session keys (they are versioned and replicated)");
        }
    }
    co_return co_await pass_through(request);
}

asio::awaitable<void> SessionService::get(ClientState& client, const Request& request, ReplySink& out) {
    const bool with_cas = request.command == Command::gets;
    for (const std::string& key : request.keys) {
        SessionKey kind = classify_key(key, config_.session_prefix);
        if (kind.kind == SessionKey::Kind::data) {
            ++stats_.session_reads;
            ClientState::SessionRead read = co_await read_session(key);
            if (read.newest && read.newest->deleted) {
                ++stats_.tombstone_reads;  // deleted: a miss, as from memcached
            } else if (read.newest) {
                recent_.remember(kind.session_id);
                // A session's CAS for the client is its version: gets/cas on sessions is not offered.
                const std::string value =
                    value_reply(key, read.flags, read.newest->payload,
                                with_cas ? std::optional<std::uint64_t>(read.newest->version) : std::nullopt);
                co_await out.put(value);
            }
            client.remember_read(std::string(kind.session_id), std::move(read));
            continue;
        }
        const std::string wire = std::string(with_cas ? "gets " : "get ") + key + "\r\n";
        PlacedResult placed = co_await call_placed(key, wire, ReplyShape::values);
        if (!placed.result.ok() || placed.result.reply.line != "END") {
            const std::string failure = upstream_failure(*placed.server, placed.result);
            co_await out.put(failure);
            co_return;
        }
        for (const Reply::Value& value : placed.result.reply.values) {
            const std::string reply =
                value_reply(value.key, value.flags, value.data, with_cas ? value.cas : std::nullopt);
            co_await out.put(reply);
        }
    }
    co_await out.put(kEnd);
}

asio::awaitable<std::string> SessionService::lock(ClientState& client, const Request& request, std::string_view sid) {
    const std::string& key = request.keys[0];
    if (client.locks.contains(key))
        co_return std::string(kNotStored);
    const auto first_try = client.first_lock_attempt(key, Clock::now());
    const auto deadline = Clock::now() + config_.lock_wait;
    const std::string lease = lease_flag(config_.lock_lease);
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer timer(executor);

    for (int round = 0; round < kMaxLockRounds; ++round) {
        LockTag tag{self_.backend, incarnation(), self_.instance, random64()};
        const std::string value = encode_lock_tag(tag);
        const TokenReservation reservation(locks_, key, tag.token);
        auto take = [&](UpstreamServer& server, std::uint64_t cas) {
            locks_.add(HeldLock{key, std::string(sid), &server, value, tag.token, cas, client.id});
            client.locks.insert(key);
            client.lock_attempts.erase(key);
            ++stats_.locks_taken;
            stats_.lock_wait_seconds.observe(std::chrono::duration<double>(Clock::now() - first_try).count());
        };

        // The lock lives on the first server that answers in the key's order (a server that
        // is down does not fail the request); this round stays on it.
        PlacedResult added = co_await call_placed(key, meta_set(key, value, "ME " + lease + " c"), ReplyShape::meta);
        UpstreamServer& server = *added.server;
        if (!added.result.ok())
            co_return upstream_failure(server, added.result);
        if (added.result.reply.meta_code() == "HD") {
            take(server, reply_number(added.result.reply, 'c'));
            co_return std::string(kStored);
        }
        if (added.result.reply.meta_code() != "NS")
            co_return upstream_failure(server, added.result);

        // Held: by whom, and may it be broken?
        CallResult holder = co_await call(server, meta_get(key, "v c"), ReplyShape::meta);
        if (!holder.ok()) {
            // That server just went away: the next round asks the next one, while there is time.
            if (Clock::now() >= deadline)
                co_return upstream_failure(server, holder);
            continue;
        }
        if (holder.reply.meta_code() == "EN")
            continue;  // released in between: try again now
        bool held_here = false;
        if (holder.reply.meta_code() == "VA") {
            if (auto owner = parse_lock_tag(holder.reply.data)) {
                held_here = owner->instance == self_.instance && locks_.token_held(owner->token);
                BreakReason reason = break_reason(*owner, view_, self_, held_here);
                if (reason != BreakReason::none) {
                    const std::uint64_t their_cas = reply_number(holder.reply, 'c');
                    CallResult taken = co_await call(
                        server, meta_set(key, value, "C" + std::to_string(their_cas) + ' ' + lease + " c"),
                        ReplyShape::meta);
                    if (!taken.ok()) {
                        if (Clock::now() >= deadline)
                            co_return upstream_failure(server, taken);
                        continue;
                    }
                    if (taken.reply.meta_code() == "HD") {
                        ++stats_.locks_broken[static_cast<std::size_t>(reason)];
                        spdlog::warn("lock {} broken ({}): held by backend {} incarnation {} agent {:016x}", key,
                                     to_string(reason), owner->backend, owner->incarnation, owner->instance);
                        take(server, reply_number(taken.reply, 'c'));
                        co_return std::string(kStored);
                    }
                    continue;  // it changed while we decided: look again
                }
            }
        }
        // A live owner: wait, woken at once if the holder is one of ours.
        const auto now = Clock::now();
        if (now >= deadline)
            break;
        timer.expires_at(held_here ? deadline : std::min(deadline, now + kRemotePoll));
        if (held_here)
            locks_.add_waiter(key, &timer);
        boost::system::error_code ignored;
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
        if (held_here)
            locks_.remove_waiter(key, &timer);
    }
    ++stats_.locks_busy;
    co_return std::string(kNotStored);
}

asio::awaitable<bool> SessionService::release(HeldLock held) {
    // A renewal may have moved the CAS since `held` was copied: one fresh look.
    for (int attempt = 0; attempt < 2; ++attempt) {
        CallResult deleted =
            co_await call(*held.server, "md " + held.key + " C" + std::to_string(held.cas) + "\r\n", ReplyShape::meta);
        if (!deleted.ok())
            co_return false;
        if (deleted.reply.meta_code() == "HD")
            co_return true;
        if (deleted.reply.meta_code() != "EX")
            co_return false;
        CallResult current = co_await call(*held.server, meta_get(held.key, "v c"), ReplyShape::meta);
        if (!current.ok() || current.reply.meta_code() != "VA" || current.reply.data != held.tag)
            co_return false;
        held.cas = reply_number(current.reply, 'c');
    }
    co_return false;
}

asio::awaitable<std::string> SessionService::unlock(ClientState& client, const std::string& key) {
    HeldLock* held = locks_.find(key);
    if (held != nullptr && held->owner == client.id) {
        held->releasing = true;
        HeldLock copy = *held;
        client.locks.erase(key);
        // Forgotten only once memcached has it: meanwhile a local waiter must still see
        // the token as held, or it would take the lock for an orphan.
        const bool released = co_await release(copy);
        locks_.remove(key, copy.token);
        if (released) {
            ++stats_.locks_released;
            co_return std::string(kDeleted);
        }
        ++stats_.locks_lost;
        co_return std::string(kNotFound);
    }
    PlacedResult current = co_await call_placed(key, meta_get(key, "v"), ReplyShape::meta);
    if (!current.result.ok())
        co_return upstream_failure(*current.server, current.result);
    if (current.result.reply.meta_code() == "EN")
        co_return std::string(kNotFound);
    ++stats_.fenced_unlocks_refused;
    co_return server_error("fenced: lock " + key + " is held by another owner; not deleted");
}

asio::awaitable<void> SessionService::disconnect(ClientState& client) {
    for (const std::string& key : std::set<std::string>(client.locks)) {
        HeldLock* held = locks_.find(key);
        if (held == nullptr || held->owner != client.id)
            continue;
        held->releasing = true;
        HeldLock copy = *held;
        const bool released = co_await release(copy);
        locks_.remove(key, copy.token);
        if (released) {
            ++stats_.locks_released_on_disconnect;
        } else {
            ++stats_.locks_lost;
        }
    }
    client.locks.clear();
}

asio::awaitable<void> SessionService::renew_locks() {
    const std::string lease = lease_flag(config_.lock_lease);
    for (const std::string& key : locks_.keys()) {
        HeldLock* held = locks_.find(key);
        if (held == nullptr || held->lost || held->releasing)
            continue;
        const std::uint64_t token = held->token;
        CallResult renewed =
            co_await call(*held->server, meta_set(key, held->tag, "C" + std::to_string(held->cas) + ' ' + lease + " c"),
                          ReplyShape::meta);
        held = locks_.find(key);
        // Released (or being released) meanwhile, or an upstream error: try again next round.
        if (held == nullptr || held->token != token || held->releasing || !renewed.ok())
            continue;
        if (renewed.reply.meta_code() == "HD") {
            held->cas = reply_number(renewed.reply, 'c');
            ++stats_.lock_renewals;
        } else {
            held->lost = true;
            ++stats_.locks_lost;
            spdlog::warn("lock {} lost while held (upstream answered {}): writes under it will be refused", key,
                         renewed.reply.line);
        }
    }
}

asio::awaitable<std::optional<std::string>> SessionService::fence(ClientState& client, std::string_view sid) {
    const std::string lock_key = lock_key_of(config_.session_prefix, sid);
    if (client.locks.contains(lock_key)) {
        HeldLock* held = locks_.find(lock_key);
        if (held == nullptr || held->lost) {
            ++stats_.fenced_writes_refused;
            co_return server_error("fenced: this connection lost the lock of session " + std::string(sid));
        }
        co_return std::nullopt;
    }
    // A lock key too long for memcached is one no client can send (the parser refuses
    // it, as memcached would): such a session has no lock to honour.
    if (key_problem(lock_key)) {
        if (!long_session_id_logged_) {
            long_session_id_logged_ = true;
            spdlog::warn(
                "a session id of {} bytes makes a lock key of {} bytes, over memcached's 250: such "
                "sessions cannot be locked (lower PHP's session.sid_length to at most {})",
                sid.size(), lock_key.size(), 250 - (lock_key.size() - sid.size()));
        }
        co_return std::nullopt;
    }
    PlacedResult current = co_await call_placed(lock_key, meta_get(lock_key, ""), ReplyShape::meta);
    // No lock server reachable: go on; the versioned write still refuses to replace unseen data.
    if (current.result.ok() && current.result.reply.meta_code() != "EN") {
        ++stats_.fenced_writes_refused;
        co_return server_error("fenced: session " + std::string(sid) + " is locked by another owner");
    }
    co_return std::nullopt;
}

asio::awaitable<std::size_t> SessionService::repair_session(const std::string& key) {
    ClientState::SessionRead read = co_await read_session(key, true);
    co_return read.repairs;
}

asio::awaitable<SessionService::Copies> SessionService::read_copies(const std::string& key,
                                                                    const std::vector<UpstreamServer*>& servers) {
    Copies copies;
    ClientState::SessionRead& read = copies.read;
    std::vector<UpstreamCall> calls;
    for (UpstreamServer* server : servers) {
        read.replicas.push_back({server, false, false, 0});
        calls.push_back({server, meta_get(key, "v c f t"), ReplyShape::meta});
    }
    std::vector<CallResult> results = co_await call_all(std::move(calls));
    copies.records.resize(results.size());
    for (std::size_t i = 0; i < results.size(); ++i) {
        const CallResult& result = results[i];
        if (!result.ok())
            continue;
        std::string_view code = result.reply.meta_code();
        if (code != "VA" && code != "EN")
            continue;
        read.replicas[i].reachable = true;
        if (code == "EN")
            continue;
        read.replicas[i].present = true;
        read.replicas[i].cas = reply_number(result.reply, 'c');
        auto t = result.reply.flag('t');
        const bool expires = t && *t != "-1";
        // "t0" is a copy in its last second: still one that expires ("T0" would mean never).
        const std::int64_t ttl =
            expires ? std::max<std::int64_t>(1, static_cast<std::int64_t>(reply_number(result.reply, 't'))) : 0;
        copies.copy_without_expiry = copies.copy_without_expiry || !expires;
        copies.longest_ttl = std::max(copies.longest_ttl, ttl);
        copies.records[i] = decode_session_record(result.reply.data);
        if (!read.newest || newer_than(*copies.records[i], *read.newest)) {
            read.newest = copies.records[i];
            read.flags = static_cast<std::uint32_t>(reply_number(result.reply, 'f'));
            copies.newest_ttl = ttl;
        }
    }
    co_return copies;
}

asio::awaitable<void> SessionService::repair(const std::string& key, Copies& copies, bool quiet) {
    ClientState::SessionRead& read = copies.read;
    if (!read.newest)
        co_return;
    const std::string stored = encode_session_record(*read.newest);
    const std::string common = ' ' + expiry_flag(copies.newest_ttl) + " F" + std::to_string(read.flags) + " c";
    for (std::size_t i = 0; i < read.replicas.size(); ++i) {
        ClientState::ReplicaCopy& replica = read.replicas[i];
        const std::optional<SessionRecord>& copy = copies.records[i];
        if (!replica.reachable || (copy && !newer_than(*read.newest, *copy)))
            continue;
        std::string condition = replica.present ? "C" + std::to_string(replica.cas) : "ME";
        CallResult repaired =
            co_await call(*replica.server, meta_set(key, stored, condition + common), ReplyShape::meta);
        if (repaired.ok() && repaired.reply.meta_code() == "HD") {
            replica.present = true;
            replica.cas = reply_number(repaired.reply, 'c');
            ++read.repairs;
            ++stats_.replica_repairs;
            spdlog::log(quiet ? spdlog::level::debug : spdlog::level::info,
                        "session key {}: replica on {} repaired to version {}{}", key, replica.server->name(),
                        read.newest->version, read.newest->deleted ? " (deleted)" : "");
        }
    }
}

asio::awaitable<ClientState::SessionRead> SessionService::read_session(const std::string& key, bool quiet) {
    Copies copies = co_await read_copies(key, upstreams_.placement(key, config_.replicas));
    co_await repair(key, copies, quiet);
    co_return std::move(copies.read);
}

asio::awaitable<SessionService::StoreOutcome> SessionService::store_record(const std::string& key,
                                                                           ClientState::SessionRead& read,
                                                                           const SessionRecord& record,
                                                                           const std::string& meta_flags) {
    StoreOutcome outcome;
    const std::string stored = encode_session_record(record);
    // In the read's order: a conflict on the first copy stops the write before it touches the second.
    for (ClientState::ReplicaCopy& replica : read.replicas) {
        for (int attempt = 0; attempt < kWriteRetries; ++attempt) {
            std::string condition = replica.present ? "C" + std::to_string(replica.cas) : "ME";
            CallResult result =
                co_await call(*replica.server, meta_set(key, stored, condition + meta_flags), ReplyShape::meta);
            if (!result.ok())
                break;  // this copy is unreachable; the others carry the write
            std::string_view code = result.reply.meta_code();
            if (code == "HD") {
                replica.reachable = replica.present = true;
                replica.cas = reply_number(result.reply, 'c');
                ++outcome.written;
                break;
            }
            if (code != "EX" && code != "NS" && code != "NF")
                break;
            // The copy changed since we read it: whose write is it?
            CallResult now = co_await call(*replica.server, meta_get(key, "v c"), ReplyShape::meta);
            if (!now.ok())
                break;
            if (now.reply.meta_code() == "EN") {
                replica.present = false;
                continue;
            }
            if (now.reply.meta_code() != "VA")
                break;
            SessionRecord theirs = decode_session_record(now.reply.data);
            if (theirs.version >= record.version && theirs.write_id != record.write_id) {
                outcome.conflict = std::move(theirs);
                outcome.conflict_server = replica.server->name();
                co_return outcome;
            }
            replica.present = true;  // an older copy (a repair, a stale replica): replace it
            replica.cas = reply_number(now.reply, 'c');
        }
    }
    co_return outcome;
}

asio::awaitable<std::string> SessionService::write_session(ClientState& client, const Request& request,
                                                           std::string_view sid) {
    std::optional<std::string> refused = co_await fence(client, sid);
    if (refused)
        co_return *refused;
    const std::string& key = request.keys[0];
    const std::string sid_text(sid);

    // Writes are conditional on what this connection read; read now if it has not.
    std::vector<UpstreamServer*> placement = upstreams_.placement(key, config_.replicas);
    auto known = client.reads.find(sid_text);
    bool same_placement = known != client.reads.end() && known->second.replicas.size() == placement.size();
    for (std::size_t i = 0; same_placement && i < placement.size(); ++i) {
        same_placement = known->second.replicas[i].server == placement[i];
    }
    if (!same_placement) {
        ++stats_.session_reads;
        ClientState::SessionRead fresh = co_await read_session(key);
        known = client.remember_read(sid_text, std::move(fresh));
    }
    ClientState::SessionRead& read = known->second;
    // A tombstone is no session: add succeeds over it, replace does not.
    const bool exists = read.newest && !read.newest->deleted;
    if (request.command == Command::add && exists)
        co_return std::string(kNotStored);
    if (request.command == Command::replace && !exists)
        co_return std::string(kNotStored);

    const std::optional<std::uint64_t> version = next_version(read.newest);
    if (!version)
        co_return server_error("session " + sid_text + ": its version is at the limit (not written by an agent)");
    SessionRecord record{*version, random64(), request.data};
    const std::string common = " T" + std::to_string(request.exptime) + " F" + std::to_string(request.flags) + " c";
    StoreOutcome outcome = co_await store_record(key, read, record, common);
    if (outcome.conflict) {
        ++stats_.write_conflicts;
        const char* what = outcome.conflict->deleted ? "deleted" : "written";
        spdlog::warn("session {}: write of version {} refused, {} holds version {} {} by another writer", sid,
                     record.version, outcome.conflict_server, outcome.conflict->version, what);
        client.reads.erase(sid_text);  // `read` dies here: the next write reads afresh
        co_return server_error("conflict: session " + sid_text + " was " + what + " by another owner (version " +
                               std::to_string(outcome.conflict->version) + ")");
    }
    if (outcome.written == 0) {
        client.reads.erase(sid_text);
        co_return server_error("no memcached server stored session " + sid_text);
    }
    record.payload.clear();  // a later write needs its version, not its bytes
    read.newest = std::move(record);
    read.flags = request.flags;
    recent_.remember(sid);
    ++stats_.session_writes;
    co_return std::string(kStored);
}

// A delete is a write of a tombstone: above the newest copy on any server,
// conditional on each copy read like a write, fenced like a write. Unlike a
// write it may replace a copy its connection never read (memcached's delete
// does too): a newer write met on the way is deleted in a further round.
asio::awaitable<std::string> SessionService::delete_session(ClientState& client, const Request& request,
                                                            std::string_view sid) {
    std::optional<std::string> refused = co_await fence(client, sid);
    if (refused)
        co_return *refused;
    const std::string& key = request.keys[0];
    const std::string sid_text(sid);
    client.reads.erase(sid_text);
    for (int round = 0; round < kDeleteRounds; ++round) {
        // Every server, not only today's placement: a copy written while a better-ranked server was down lives elsewhere.
        Copies copies = co_await read_copies(key, upstreams_.ranked(key));
        const std::vector<UpstreamServer*> placement = upstreams_.placement(key, config_.replicas);
        // The tombstone goes where the session is placed and wherever a copy is.
        std::size_t kept = 0;
        for (std::size_t i = 0; i < copies.records.size(); ++i) {
            const ClientState::ReplicaCopy& replica = copies.read.replicas[i];
            if (!replica.present && std::find(placement.begin(), placement.end(), replica.server) == placement.end()) {
                continue;
            }
            copies.read.replicas[kept] = replica;
            copies.records[kept] = std::move(copies.records[i]);
            ++kept;
        }
        copies.read.replicas.resize(kept);
        copies.records.resize(kept);

        // Nothing seen anywhere; or deleted already, and the read's repair spreads the tombstone.
        if (!copies.read.newest)
            co_return std::string(kNotFound);
        if (copies.read.newest->deleted) {
            co_await repair(key, copies, false);
            co_return std::string(kNotFound);
        }
        const std::optional<std::uint64_t> version = next_version(copies.read.newest);
        if (!version) {
            co_return server_error("session " + sid_text + ": its version is at the limit (not written by an agent)");
        }
        const SessionRecord tombstone{*version, random64(), {}, true};
        // It outlives any older copy: those expire no later than the longest-lived one read.
        const std::int64_t lifetime =
            copies.copy_without_expiry ? 0 : std::max(kTombstoneMinSeconds, copies.longest_ttl);
        StoreOutcome outcome =
            co_await store_record(key, copies.read, tombstone, ' ' + expiry_flag(lifetime) + " F0 c");
        if (outcome.conflict) {
            spdlog::info("session {}: delete met version {} on {}, written meanwhile; deleting again", sid,
                         outcome.conflict->version, outcome.conflict_server);
            continue;
        }
        if (outcome.written == 0)
            co_return server_error("no memcached server stored the deletion of session " + sid_text);
        ++stats_.session_deletes;
        // Remembered, so that a resync gives a server away right now the tombstone when it returns.
        recent_.remember(sid);
        co_return std::string(kDeleted);
    }
    co_return server_error("conflict: session " + sid_text + " kept being written while it was deleted");
}

// Only a live session is touched: a tombstone keeps its own expiry, and the
// client hears NOT_FOUND as from memcached after a delete.
asio::awaitable<std::string> SessionService::touch_session(const Request& request) {
    const std::string& key = request.keys[0];
    Copies copies = co_await read_copies(key, upstreams_.placement(key, config_.replicas));
    if (!copies.read.newest || copies.read.newest->deleted) {
        if (copies.read.newest)
            ++stats_.tombstone_reads;
        co_return std::string(kNotFound);
    }
    std::vector<UpstreamCall> calls;
    for (std::size_t i = 0; i < copies.records.size(); ++i) {
        if (!copies.records[i] || copies.records[i]->deleted)
            continue;
        calls.push_back({copies.read.replicas[i].server,
                         "touch " + key + ' ' + std::to_string(request.exptime) + "\r\n", ReplyShape::line});
    }
    bool touched = false;
    std::vector<CallResult> results = co_await call_all(std::move(calls));
    for (const CallResult& result : results) {
        touched = touched || (result.ok() && result.reply.line == "TOUCHED");
    }
    co_return std::string(touched ? kTouched : kNotFound);
}

asio::awaitable<std::string> SessionService::pass_through(const Request& request) {
    PlacedResult placed = co_await call_placed(request.keys.at(0), classic_wire(request), ReplyShape::line);
    if (!placed.result.ok())
        co_return upstream_failure(*placed.server, placed.result);
    co_return placed.result.reply.line + "\r\n";
}

}  // namespace stickylb::agent

// SPDX-License-Identifier: Apache-2.0
#include "session/signed_value.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace stickylb::session {
namespace {

constexpr std::size_t kMinKeyBytes = 16;
constexpr std::size_t kMaxKeyBytes = 4096;
constexpr std::size_t kMacBytes = 32;

std::string hex(std::string_view bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string text;
    text.reserve(bytes.size() * 2);
    for (const unsigned char byte : bytes) {
        text.push_back(kDigits[byte >> 4]);
        text.push_back(kDigits[byte & 0xf]);
    }
    return text;
}

}  // namespace

std::string_view to_string(Rejection rejection) {
    const auto index = static_cast<std::size_t>(rejection);
    return index < kRejectionCount ? kRejectionLabels[index] : "malformed";
}

std::string_view describe(Rejection rejection) {
    switch (rejection) {
#define STICKYLB_X(name, label, help) \
    case Rejection::name: return help;
        STICKYLB_MEMCACHED_REJECTIONS(STICKYLB_X)
#undef STICKYLB_X
    }
    return "malformed";
}

SigningKey::SigningKey(std::string secret) : secret_(std::move(secret)) {
    if (secret_.size() < kMinKeyBytes) {
        throw std::invalid_argument("a key of " + std::to_string(secret_.size()) + " bytes is too short (at least " +
                                    std::to_string(kMinKeyBytes) + ")");
    }
}

SigningKey SigningKey::load(const std::string& path) {
    const auto fail = [&](const std::string& why) { return std::runtime_error("key file " + path + ": " + why); };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        throw fail(std::strerror(errno));
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
        const int error = errno;
        ::close(fd);
        throw fail(std::strerror(error));
    }
    if (!S_ISREG(info.st_mode)) {
        ::close(fd);
        throw fail("not a regular file");
    }
    if ((info.st_mode & 077) != 0) {
        ::close(fd);
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(info.st_mode & 07777));
        throw fail(std::string("group or others may access it (mode ") + mode + "): chmod 600 it");
    }
    if (info.st_size > static_cast<off_t>(kMaxKeyBytes + 1)) {
        ::close(fd);
        throw fail("larger than " + std::to_string(kMaxKeyBytes) + " bytes");
    }
    std::string secret(static_cast<std::size_t>(info.st_size), '\0');
    std::size_t have = 0;
    while (have < secret.size()) {
        const ssize_t got = ::read(fd, secret.data() + have, secret.size() - have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        have += static_cast<std::size_t>(got);
    }
    ::close(fd);
    secret.resize(have);
    if (!secret.empty() && secret.back() == '\n')
        secret.pop_back();
    if (secret.size() > kMaxKeyBytes)
        throw fail("larger than " + std::to_string(kMaxKeyBytes) + " bytes");
    try {
        return SigningKey(std::move(secret));
    } catch (const std::invalid_argument& error) {
        throw fail(error.what());
    }
}

std::string SigningKey::mac(std::string_view memcached_key, std::string_view payload) const {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    std::size_t length = 0;
    EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    EVP_MAC_CTX* context = hmac != nullptr ? EVP_MAC_CTX_new(hmac) : nullptr;
    char sha256[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, sha256, 0),
                                 OSSL_PARAM_construct_end()};
    const unsigned char zero = 0;
    const bool ok =
        context != nullptr &&
        EVP_MAC_init(context, reinterpret_cast<const unsigned char*>(secret_.data()), secret_.size(), params) == 1 &&
        EVP_MAC_update(context, reinterpret_cast<const unsigned char*>(memcached_key.data()), memcached_key.size()) ==
            1 &&
        EVP_MAC_update(context, &zero, 1) == 1 &&
        EVP_MAC_update(context, reinterpret_cast<const unsigned char*>(payload.data()), payload.size()) == 1 &&
        EVP_MAC_final(context, digest.data(), &length, digest.size()) == 1;
    EVP_MAC_CTX_free(context);
    EVP_MAC_free(hmac);
    if (!ok || length != kMacBytes)
        throw std::runtime_error("HMAC-SHA256 failed (OpenSSL)");
    return std::string(reinterpret_cast<const char*>(digest.data()), length);
}

std::string sign_value(const SigningKey* key, std::string_view memcached_key, std::string_view payload) {
    if (key == nullptr)
        return std::string(payload);
    std::string stored;
    stored.reserve(kSignedValueMagic.size() + 2 * kMacBytes + 1 + payload.size());
    stored.append(kSignedValueMagic);
    stored.append(hex(key->mac(memcached_key, payload)));
    stored.push_back('\n');
    stored.append(payload);
    return stored;
}

OpenedValue open_value(const SigningKey* key, std::string_view memcached_key, std::string_view stored) {
    constexpr std::size_t kHeader = kSignedValueMagic.size() + 2 * kMacBytes + 1;
    const bool has_mac = stored.starts_with(kSignedValueMagic);
    if (!has_mac) {
        if (key != nullptr)
            return {{}, Rejection::unsigned_value};
        return {stored, std::nullopt};
    }
    if (stored.size() < kHeader || stored[kHeader - 1] != '\n')
        return {{}, Rejection::malformed};
    const std::string_view payload = stored.substr(kHeader);
    if (key == nullptr)
        return {payload, std::nullopt};
    const std::string expected = hex(key->mac(memcached_key, payload));
    const std::string_view given = stored.substr(kSignedValueMagic.size(), 2 * kMacBytes);
    if (CRYPTO_memcmp(expected.data(), given.data(), expected.size()) != 0)
        return {{}, Rejection::bad_signature};
    return {payload, std::nullopt};
}

}  // namespace stickylb::session

// SPDX-License-Identifier: Apache-2.0
#include "control/ring_fingerprint.h"

#include <openssl/evp.h>

#include <array>
#include <memory>
#include <stdexcept>

namespace stickylb {

std::string ring_fingerprint(std::span<const std::uint32_t> ring, const std::map<std::uint32_t, IpAddress>& backends) {
    const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("SHA-256 unavailable (OpenSSL)");
    // Each slot's text and a newline: names cannot run into each other.
    std::string text;
    for (const std::uint32_t index : ring) {
        const auto backend = backends.find(index);
        text = backend == backends.end() ? "-" : backend->second.to_string();
        text += '\n';
        if (EVP_DigestUpdate(context.get(), text.data(), text.size()) != 1)
            throw std::runtime_error("SHA-256 failed (OpenSSL)");
    }
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(context.get(), digest.data(), &length) != 1)
        throw std::runtime_error("SHA-256 failed (OpenSSL)");
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    for (unsigned int i = 0; i < length; ++i) {
        hex += kHex[digest[i] >> 4];
        hex += kHex[digest[i] & 0xf];
    }
    return hex;
}

}  // namespace stickylb

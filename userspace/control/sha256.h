// SPDX-License-Identifier: Apache-2.0
#pragma once
// SHA-256 (OpenSSL) fed in pieces, for the fingerprints LB hosts compare.
#include <memory>
#include <string>
#include <string_view>

struct evp_md_ctx_st;

namespace stickylb {

class Sha256 {
public:
    Sha256();  // throws std::runtime_error if OpenSSL has no SHA-256
    void update(std::string_view bytes);
    std::string hex();  // lowercase, 64 characters; the object is done after it

private:
    std::unique_ptr<evp_md_ctx_st, void (*)(evp_md_ctx_st*)> context_;
};

std::string sha256_hex(std::string_view bytes);

}  // namespace stickylb

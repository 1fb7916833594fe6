// X25519 through Node's OpenSSL with raw 32-byte keys: no DER wrapping or
// KeyObject per call, which is most of what node:crypto's diffieHellman costs
// for a handshake (bench/handshake.ts measures the three options).
#pragma once
#include <cstdint>

namespace wm {
// Returns false for a low-order peer key (all-zero result) or an OpenSSL error.
bool x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]);
bool x25519_public(uint8_t out[32], const uint8_t priv[32]);
}  // namespace wm

// X25519 (RFC 7748) through libsodium (Debian libsodium-dev). Chosen by measurement
// (bench/handshake.ts runs both in one process): libsodium's 64-bit/AVX ladder is faster than
// OpenSSL's EVP X25519 even with OpenSSL's contexts and key objects reused, and it needs no
// per-call allocation. The scalar multiplications are all libsodium's public API; the only field
// arithmetic of ours is the Edwards -> Montgomery map of the ephemerals' public keys (x25519.cc:
// one inversion of a public value, checked byte for byte against crypto_scalarmult_base).
#pragma once
#include <cstdint>

namespace wm {
// out = X25519(priv, pub). False for a low-order peer key (all-zero result, which WireGuard
// must refuse): libsodium checks it in constant time.
bool x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]);
// out = X25519(priv, 9): the public key of a private key.
bool x25519_public(uint8_t out[32], const uint8_t priv[32]);
// out = X25519(priv, 9) the faster way, for the handshake's ephemerals: [k]B on edwards25519 by
// libsodium's fixed-base comb (precomputed multiples of B), then the birational map to
// Curve25519, u = (1 + y) / (1 - y), which sends [k]B to [k]·9 (B is the image of u = 9). The
// same bytes as x25519_public for every key (unit test: random keys and RFC 7748 §6.1).
bool x25519_public_comb(uint8_t out[32], const uint8_t priv[32]);
// A fresh clamped private key (as `wg genkey`) and its public key: the handshake's ephemerals.
bool x25519_keypair(uint8_t priv[32], uint8_t pub[32]);
}  // namespace wm

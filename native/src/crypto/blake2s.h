// BLAKE2s (RFC 7693), plain and keyed. WireGuard uses it as HASH (32-byte output),
// as MAC (keyed, 16-byte output: mac1, mac2, cookies) and inside HMAC for the KDF.
// Lives natively because the RX thread checks mac1 before anything reaches JavaScript.
#pragma once
#include <cstddef>
#include <cstdint>

namespace wm {

struct Blake2sState {
  uint32_t h[8];
  uint32_t t[2];
  uint32_t f[2];
  uint8_t buf[64];
  size_t buflen;
  size_t outlen;
};

void blake2s_init(Blake2sState* s, size_t outlen, const uint8_t* key, size_t keylen);
void blake2s_update(Blake2sState* s, const uint8_t* in, size_t inlen);
void blake2s_final(Blake2sState* s, uint8_t* out);
// Absorbs one whole 64-byte block that is known not to be the last (the state's buffer must be empty):
// compressed at once, so that a copy of the state carries the work (HMAC's pad blocks, noise.cc).
void blake2s_absorb_block(Blake2sState* s, const uint8_t block[64]);
// One-shot; key may be null when keylen is 0. outlen 1..32, keylen 0..32.
void blake2s(uint8_t* out, size_t outlen, const uint8_t* in, size_t inlen, const uint8_t* key, size_t keylen);

}  // namespace wm

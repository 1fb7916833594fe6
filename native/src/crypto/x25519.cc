#include "x25519.h"

#include <sodium.h>

#include "aead.h"

namespace wm {

namespace {
// sodium_init picks the fastest curve25519 implementation for this CPU (sandy2x with AVX);
// without it libsodium keeps its portable reference code. Thread-safe and idempotent.
bool ready() {
  static const bool ok = sodium_init() >= 0;
  return ok;
}
}  // namespace

bool x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]) {
  // crypto_scalarmult returns -1 for an all-zero output (a low-order point).
  return ready() && crypto_scalarmult(out, priv, pub) == 0;
}

bool x25519_public(uint8_t out[32], const uint8_t priv[32]) {
  return ready() && crypto_scalarmult_base(out, priv) == 0;
}

bool x25519_keypair(uint8_t priv[32], uint8_t pub[32]) {
  if (!random_bytes(priv, 32)) return false;
  priv[0] &= 248;
  priv[31] &= 127;
  priv[31] |= 64;
  return x25519_public(pub, priv);
}

}  // namespace wm

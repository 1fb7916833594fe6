#include "x25519.h"

#include <sodium.h>

#include <cstring>

#include "aead.h"

namespace wm {

namespace {
// sodium_init picks the fastest curve25519 implementation for this CPU (sandy2x with AVX);
// without it libsodium keeps its portable reference code. Thread-safe and idempotent.
bool ready() {
  static const bool ok = sodium_init() >= 0;
  return ok;
}

// GF(2^255 - 19) in five 51-bit limbs, only as far as the Edwards -> Montgomery map
// u = (1 + y) / (1 - y) needs: multiply, invert, pack. Its inputs and output are public (an
// ephemeral public key that goes on the wire), so nothing here needs to be constant-time, but
// it is anyway (no data-dependent branch or index).
using u128 = unsigned __int128;
constexpr uint64_t kMask51 = (uint64_t(1) << 51) - 1;
struct Fe {
  uint64_t v[5];
};

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the field code loads and stores limbs little-endian");

uint64_t load64_le(const uint8_t* p) {
  uint64_t x;
  std::memcpy(&x, p, 8);
  return x;  // x86-64 and arm64 builds are little-endian
}

// y from an Ed25519 point encoding: 255 bits, the sign of x (bit 255) dropped.
Fe fe_frombytes(const uint8_t s[32]) {
  const uint64_t x0 = load64_le(s), x1 = load64_le(s + 8), x2 = load64_le(s + 16), x3 = load64_le(s + 24);
  return Fe{{x0 & kMask51, ((x0 >> 51) | (x1 << 13)) & kMask51, ((x1 >> 38) | (x2 << 26)) & kMask51,
             ((x2 >> 25) | (x3 << 39)) & kMask51, (x3 >> 12) & kMask51}};
}

// The five column sums of a product carried into limbs: output limbs < 2^52.
Fe fe_carry(u128 r0, u128 r1, u128 r2, u128 r3, u128 r4) {
  r1 += uint64_t(r0 >> 51);
  r2 += uint64_t(r1 >> 51);
  r3 += uint64_t(r2 >> 51);
  r4 += uint64_t(r3 >> 51);
  Fe h{{uint64_t(r0) & kMask51, uint64_t(r1) & kMask51, uint64_t(r2) & kMask51, uint64_t(r3) & kMask51,
        uint64_t(r4) & kMask51}};
  h.v[0] += 19 * uint64_t(r4 >> 51);
  h.v[1] += h.v[0] >> 51;
  h.v[0] &= kMask51;
  return h;
}

// h = f * g; inputs' limbs < 2^54.
Fe fe_mul(const Fe& f, const Fe& g) {
  const uint64_t f0 = f.v[0], f1 = f.v[1], f2 = f.v[2], f3 = f.v[3], f4 = f.v[4];
  const uint64_t g0 = g.v[0], g1 = g.v[1], g2 = g.v[2], g3 = g.v[3], g4 = g.v[4];
  const uint64_t g1_19 = 19 * g1, g2_19 = 19 * g2, g3_19 = 19 * g3, g4_19 = 19 * g4;
  return fe_carry(u128(f0) * g0 + u128(f1) * g4_19 + u128(f2) * g3_19 + u128(f3) * g2_19 + u128(f4) * g1_19,
                  u128(f0) * g1 + u128(f1) * g0 + u128(f2) * g4_19 + u128(f3) * g3_19 + u128(f4) * g2_19,
                  u128(f0) * g2 + u128(f1) * g1 + u128(f2) * g0 + u128(f3) * g4_19 + u128(f4) * g3_19,
                  u128(f0) * g3 + u128(f1) * g2 + u128(f2) * g1 + u128(f3) * g0 + u128(f4) * g4_19,
                  u128(f0) * g4 + u128(f1) * g3 + u128(f2) * g2 + u128(f3) * g1 + u128(f4) * g0);
}

// f^2 (15 products where fe_mul takes 25)
Fe fe_sq(const Fe& f) {
  const uint64_t f0 = f.v[0], f1 = f.v[1], f2 = f.v[2], f3 = f.v[3], f4 = f.v[4];
  const uint64_t d0 = 2 * f0, d1 = 2 * f1, d2 = 2 * f2, d3 = 2 * f3, f3_19 = 19 * f3, f4_19 = 19 * f4;
  return fe_carry(u128(f0) * f0 + u128(d1) * f4_19 + u128(d2) * f3_19, u128(d0) * f1 + u128(d2) * f4_19 + u128(f3) * f3_19,
                  u128(d0) * f2 + u128(f1) * f1 + u128(d3) * f4_19, u128(d0) * f3 + u128(d1) * f2 + u128(f4) * f4_19,
                  u128(d0) * f4 + u128(d1) * f3 + u128(f2) * f2);
}

// f^(2^n)
Fe fe_sqn(Fe f, int n) {
  for (int i = 0; i < n; i++) f = fe_sq(f);
  return f;
}

// z^(p - 2) = z^-1 (z != 0), by the usual addition chain (254 squarings, 11 multiplications).
Fe fe_invert(const Fe& z) {
  const Fe z2 = fe_sq(z);
  const Fe z9 = fe_mul(fe_sqn(z2, 2), z);
  const Fe z11 = fe_mul(z9, z2);
  const Fe z2_5_0 = fe_mul(fe_sq(z11), z9);
  const Fe z2_10_0 = fe_mul(fe_sqn(z2_5_0, 5), z2_5_0);
  const Fe z2_20_0 = fe_mul(fe_sqn(z2_10_0, 10), z2_10_0);
  const Fe z2_40_0 = fe_mul(fe_sqn(z2_20_0, 20), z2_20_0);
  const Fe z2_50_0 = fe_mul(fe_sqn(z2_40_0, 10), z2_10_0);
  const Fe z2_100_0 = fe_mul(fe_sqn(z2_50_0, 50), z2_50_0);
  const Fe z2_200_0 = fe_mul(fe_sqn(z2_100_0, 100), z2_100_0);
  const Fe z2_250_0 = fe_mul(fe_sqn(z2_200_0, 50), z2_50_0);
  return fe_mul(fe_sqn(z2_250_0, 5), z11);
}

// The canonical 32-byte encoding (fully reduced mod p).
void fe_tobytes(uint8_t s[32], Fe h) {
  auto carry = [&h] {
    for (int i = 0; i < 4; i++) {
      h.v[i + 1] += h.v[i] >> 51;
      h.v[i] &= kMask51;
    }
    const uint64_t c = h.v[4] >> 51;
    h.v[4] &= kMask51;
    h.v[0] += 19 * c;
  };
  carry();
  carry();  // now every limb < 2^51 (limb 0 at most 2^51 + 18·19), the value < 2^255 + 2^9
  // q = 1 iff h >= p: adding 19 carries out of bit 255 exactly then
  uint64_t q = (h.v[0] + 19) >> 51;
  for (int i = 1; i < 5; i++) q = (h.v[i] + q) >> 51;
  h.v[0] += 19 * q;
  for (int i = 0; i < 4; i++) {
    h.v[i + 1] += h.v[i] >> 51;
    h.v[i] &= kMask51;
  }
  h.v[4] &= kMask51;  // drops the 2^255 that q·19 pushed up: h - q·p
  const uint64_t w[4] = {h.v[0] | (h.v[1] << 51), (h.v[1] >> 13) | (h.v[2] << 38), (h.v[2] >> 26) | (h.v[3] << 25),
                         (h.v[3] >> 39) | (h.v[4] << 12)};
  std::memcpy(s, w, 32);
}
}  // namespace

bool x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]) {
  // crypto_scalarmult returns -1 for an all-zero output (a low-order point).
  return ready() && crypto_scalarmult(out, priv, pub) == 0;
}

bool x25519_public(uint8_t out[32], const uint8_t priv[32]) {
  return ready() && crypto_scalarmult_base(out, priv) == 0;
}

bool x25519_public_comb(uint8_t out[32], const uint8_t priv[32]) {
  if (!ready()) return false;
  uint8_t k[32], ed[32];
  std::memcpy(k, priv, 32);
  k[0] &= 248;  // clamped as X25519 clamps (RFC 7748 §5)
  k[31] &= 127;
  k[31] |= 64;
  // [k]B on edwards25519 from libsodium's precomputed tables (B is the image of u = 9)
  const bool ok = crypto_scalarmult_ed25519_base_noclamp(ed, k) == 0;
  secure_zero(k, sizeof k);
  if (!ok) return false;
  // u = (1 + y) / (1 - y); 1 - y computed as 2p + 1 - y so that no limb goes negative. y != 1:
  // [k]B is not the identity for a clamped k (L, B's order, is prime and > k's factor 8).
  const Fe y = fe_frombytes(ed);
  const Fe num{{y.v[0] + 1, y.v[1], y.v[2], y.v[3], y.v[4]}};
  const Fe den{{0xFFFFFFFFFFFDAull + 1 - y.v[0], 0xFFFFFFFFFFFFEull - y.v[1], 0xFFFFFFFFFFFFEull - y.v[2],
                0xFFFFFFFFFFFFEull - y.v[3], 0xFFFFFFFFFFFFEull - y.v[4]}};
  fe_tobytes(out, fe_mul(num, fe_invert(den)));
  return true;
}

bool x25519_keypair(uint8_t priv[32], uint8_t pub[32]) {
  if (!random_bytes(priv, 32)) return false;
  priv[0] &= 248;
  priv[31] &= 127;
  priv[31] |= 64;
  return x25519_public_comb(pub, priv);
}

}  // namespace wm

// Whole steps of WireGuard's Noise_IKpsk2 handshake (whitepaper §5.4.2–5.4.4), so that one
// handshake message costs one crossing from JavaScript instead of ~15 (every HASH, KDF,
// DH and AEAD separately). The state machine, replay and flood guards, peer lookup and
// indices stay in src/wireguard/noise.ts; these functions only compute. Every step
// carries its running hash h and chaining key ck in and out.
#pragma once
#include <cstddef>
#include <cstdint>

namespace wm {
namespace noise {

constexpr size_t kKeyLen = 32;
constexpr size_t kInitiationSize = 148;
constexpr size_t kResponseSize = 92;
constexpr size_t kTimestampLen = 12;

// Why a step refused its input.
enum class Fail { kNone = 0, kLowOrder = 1, kDecrypt = 2, kInternal = 3 };

// HMAC-BLAKE2s (RFC 2104, 64-byte blocks); keylen ≤ 64.
void hmac(uint8_t out[32], const uint8_t* key, size_t keylen, const uint8_t* in, size_t inlen);
// HKDF as WireGuard uses it: n (1..3) 32-byte outputs written to out[0..32n).
void kdf(uint8_t* out, int n, const uint8_t ck[32], const uint8_t* in, size_t inlen);

// Initiator, message 1. Writes msg[0..116) (type, sender, ephemeral, encrypted static,
// encrypted timestamp; mac1/mac2 zero), the new h and ck, and the ephemeral private key.
// h0 = HASH(HASH(C0 || identifier) || responder public); ss = DH(our static, theirs).
struct InitiationOut {
  uint8_t msg[kInitiationSize];
  uint8_t h[kKeyLen];
  uint8_t ck[kKeyLen];
  uint8_t eph_priv[kKeyLen];
};
Fail create_initiation(InitiationOut* out, uint32_t sender, const uint8_t h0[32], const uint8_t remote_static[32],
                       const uint8_t local_public[32], const uint8_t ss[32], const uint8_t timestamp[12]);

// Responder, message 1 up to the initiator's static key (needed to find the peer).
struct InitiationStaticOut {
  uint8_t h[kKeyLen];
  uint8_t ck[kKeyLen];
  uint8_t peer_static[kKeyLen];
};
Fail consume_initiation_static(InitiationStaticOut* out, const uint8_t local_priv[32], const uint8_t h0[32],
                               const uint8_t msg[kInitiationSize]);
// Responder, the rest of message 1 once the peer is known: decrypts the timestamp.
struct InitiationTimestampOut {
  uint8_t h[kKeyLen];
  uint8_t ck[kKeyLen];
  uint8_t timestamp[kTimestampLen];
};
Fail consume_initiation_timestamp(InitiationTimestampOut* out, const uint8_t h[32], const uint8_t ck[32],
                                  const uint8_t ss[32], const uint8_t msg[kInitiationSize]);

// Responder, message 2. Writes msg[0..60) (type, sender, receiver, ephemeral, empty AEAD), and
// the transport keys KDF2(ck, ε) = τ1 | τ2 (whitepaper §5.4.5: the responder's receive | send
// key), derived here so that the session costs no further crossing.
struct ResponseOut {
  uint8_t msg[kResponseSize];
  uint8_t h[kKeyLen];
  uint8_t ck[kKeyLen];
  uint8_t eph_priv[kKeyLen];
  uint8_t keys[2 * kKeyLen];
};
Fail create_response(ResponseOut* out, uint32_t sender, uint32_t receiver, const uint8_t h[32], const uint8_t ck[32],
                     const uint8_t remote_ephemeral[32], const uint8_t remote_static[32], const uint8_t psk[32]);

// Initiator, message 2: checks the response's empty AEAD. out_h, out_ck: the new h and ck;
// out_keys: the transport keys KDF2(ck, ε) = τ1 | τ2 (the initiator's send | receive key).
Fail consume_response(uint8_t out_h[32], uint8_t out_ck[32], uint8_t out_keys[64], const uint8_t h[32], const uint8_t ck[32],
                      const uint8_t eph_priv[32], const uint8_t local_priv[32], const uint8_t psk[32],
                      const uint8_t msg[kResponseSize]);

}  // namespace noise
}  // namespace wm

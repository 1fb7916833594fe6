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

// TAI64N (whitepaper §5.4.2): the 8-byte big-endian label 2^62 + 10 + seconds, then the 4-byte big-endian
// nanoseconds (the caller has already whitened them, src/wireguard/tai64n.ts).
void tai64n(uint8_t out[kTimestampLen], int64_t seconds, uint32_t nanos);

// The cookie macs of a message we send (whitepaper §5.4.4). mac1_key: HASH(LABEL_MAC1 || the receiver's
// static public key), 32 bytes, which the caller keeps per peer; cookie: the receiver's last cookie (16 bytes)
// while it is fresh, else null (mac2 then stays zero).
struct MacKeys {
  const uint8_t* mac1_key;
  const uint8_t* cookie;
};
// Writes mac1 = MAC(mac1_key, msg[0..size-32)) at size-32 and mac2 = MAC(cookie, msg[0..size-16)) at size-16.
void add_macs(uint8_t* msg, size_t size, const MacKeys& keys);

// Initiator, message 1. Writes the whole message (type, sender, ephemeral, encrypted static,
// encrypted timestamp, then mac1/mac2 by `macs`, or zero when it is null), the new h and ck, and the
// ephemeral private key.
// h0 = HASH(HASH(C0 || identifier) || responder public); ss = DH(our static, theirs).
struct InitiationOut {
  uint8_t msg[kInitiationSize];
  uint8_t h[kKeyLen];
  uint8_t ck[kKeyLen];
  uint8_t eph_priv[kKeyLen];
};
Fail create_initiation(InitiationOut* out, uint32_t sender, const uint8_t h0[32], const uint8_t remote_static[32],
                       const uint8_t local_public[32], const uint8_t ss[32], const uint8_t timestamp[12],
                       const MacKeys* macs = nullptr);

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

// Responder, message 2. Writes the whole message (type, sender, receiver, ephemeral, empty AEAD, then
// mac1/mac2 by `macs`, or zero when it is null), and
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
                     const uint8_t remote_ephemeral[32], const uint8_t remote_static[32], const uint8_t psk[32],
                     const MacKeys* macs = nullptr);

// Initiator, message 2: checks the response's empty AEAD. out_h, out_ck: the new h and ck;
// out_keys: the transport keys KDF2(ck, ε) = τ1 | τ2 (the initiator's send | receive key).
Fail consume_response(uint8_t out_h[32], uint8_t out_ck[32], uint8_t out_keys[64], const uint8_t h[32], const uint8_t ck[32],
                      const uint8_t eph_priv[32], const uint8_t local_priv[32], const uint8_t psk[32],
                      const uint8_t msg[kResponseSize]);

}  // namespace noise
}  // namespace wm

#include "noise.h"

#include <sodium.h>

#include <cstring>

#include "aead.h"
#include "blake2s.h"
#include "x25519.h"

namespace wm {
namespace noise {

namespace {

constexpr size_t kBlock = 64;
constexpr uint32_t kMsgInitiation = 1;
constexpr uint32_t kMsgResponse = 2;
const uint8_t kZeroNonce[12] = {0};

// C0 = HASH("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"), computed once.
const uint8_t* initial_chain_key() {
  static uint8_t ck[32];
  static const bool done = [] {
    static const char kConstruction[] = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
    blake2s(ck, 32, reinterpret_cast<const uint8_t*>(kConstruction), sizeof(kConstruction) - 1, nullptr, 0);
    return true;
  }();
  (void)done;
  return ck;
}

// h = HASH(h || data)
void mix_hash(uint8_t h[32], const uint8_t* data, size_t len) {
  Blake2sState s;
  blake2s_init(&s, 32, nullptr, 0);
  blake2s_update(&s, h, 32);
  blake2s_update(&s, data, len);
  blake2s_final(&s, h);
}

void put_le32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = uint8_t(v >> (8 * i));
}

// The handshake's AEADs (counter 0, h as associated data, ≤ 32-byte payloads) through libsodium's
// ChaCha20-Poly1305 (IETF): no cipher context to allocate and set up per call, which for payloads this
// small costs more than the cipher itself (OpenSSL EVP: ~2 µs a call against ~0.3 µs). The transport
// path keeps OpenSSL's contexts (aead.h), built once per key. out: len bytes then the 16-byte tag.
bool seal0(const uint8_t key[32], const uint8_t* in, size_t len, const uint8_t h[32], uint8_t* out) {
  return crypto_aead_chacha20poly1305_ietf_encrypt_detached(out, out + len, nullptr, in, len, h, 32, nullptr,
                                                             kZeroNonce, key) == 0;
}

// in: len bytes of ciphertext then the tag; out: len bytes of plaintext (untouched on failure).
bool open0(const uint8_t key[32], const uint8_t* in, size_t len, const uint8_t h[32], uint8_t* out) {
  return crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, nullptr, in, len, in + len, h, 32, kZeroNonce,
                                                             key) == 0;
}

// Secrets on the stack, wiped whatever way the step leaves.
struct Scratch {
  uint8_t t[3 * 32];
  uint8_t dh[32];
  ~Scratch() { secure_zero(this, sizeof(*this)); }
};

// Zeroes a message being built, writes its type and sender index, and makes the ephemeral key pair
// whose public half goes at msg + eph_at.
bool start_message(uint8_t* msg, size_t size, uint32_t type, uint32_t sender, size_t eph_at, uint8_t eph_priv[32]) {
  memset(msg, 0, size);
  put_le32(msg, type);
  put_le32(msg + 4, sender);
  return x25519_keypair(eph_priv, msg + eph_at);
}

// The key schedule both sides run over a response (ephemeral, two DH results, psk): leaves
// the new ck in ck, tau mixed into h, and the AEAD key for the empty payload in key.
void response_schedule(uint8_t h[32], uint8_t ck[32], uint8_t key[32], const uint8_t ephemeral[32],
                       const uint8_t ee[32], const uint8_t se[32], const uint8_t psk[32]) {
  Scratch s;
  mix_hash(h, ephemeral, 32);
  kdf(ck, 1, ck, ephemeral, 32);
  kdf(ck, 1, ck, ee, 32);
  kdf(ck, 1, ck, se, 32);
  kdf(s.t, 3, ck, psk, 32);
  memcpy(ck, s.t, 32);
  mix_hash(h, s.t + 32, 32);
  memcpy(key, s.t + 64, 32);
}

}  // namespace

namespace {

// An HMAC-BLAKE2s key with its two pad blocks already compressed: a KDF uses the same key for
// up to three outputs, and C0 keys every handshake's first KDF, so each pad costs one compression
// per key instead of one per use. BLAKE2s compresses its last block with the final flag, so with no
// data the inner pad block is itself the last block: that case hashes ipad from scratch.
struct HmacKey {
  Blake2sState inner;
  Blake2sState outer;
  uint8_t ipad[kBlock];
  ~HmacKey() { secure_zero(this, sizeof(*this)); }
};

void hmac_key(HmacKey* k, const uint8_t* key, size_t keylen) {
  uint8_t block[kBlock] = {0};
  if (keylen > kBlock) {
    blake2s(block, 32, key, keylen, nullptr, 0);
  } else {
    memcpy(block, key, keylen);
  }
  uint8_t pad[kBlock];
  for (size_t i = 0; i < kBlock; i++) pad[i] = block[i] ^ 0x36;
  memcpy(k->ipad, pad, kBlock);
  blake2s_init(&k->inner, 32, nullptr, 0);
  blake2s_absorb_block(&k->inner, pad);
  for (size_t i = 0; i < kBlock; i++) pad[i] = block[i] ^ 0x5c;
  blake2s_init(&k->outer, 32, nullptr, 0);
  blake2s_absorb_block(&k->outer, pad);
  secure_zero(block, sizeof(block));
  secure_zero(pad, sizeof(pad));
}

void hmac_with(uint8_t out[32], const HmacKey& k, const uint8_t* in, size_t inlen) {
  uint8_t inner[32];
  Blake2sState s;
  if (inlen > 0) {
    s = k.inner;
    blake2s_update(&s, in, inlen);
  } else {
    blake2s_init(&s, 32, nullptr, 0);
    blake2s_update(&s, k.ipad, kBlock);
  }
  blake2s_final(&s, inner);
  s = k.outer;
  blake2s_update(&s, inner, 32);
  blake2s_final(&s, out);
  secure_zero(inner, sizeof(inner));
  secure_zero(&s, sizeof(s));
}

const HmacKey& initial_chain_hmac_key() {
  static const HmacKey* k = [] {
    auto* key = new HmacKey;
    hmac_key(key, initial_chain_key(), 32);
    return key;
  }();
  return *k;
}

void kdf_with(uint8_t* out, int n, const HmacKey& ck, const uint8_t* in, size_t inlen) {
  uint8_t prk[32];
  uint8_t buf[33];
  hmac_with(prk, ck, in, inlen);
  HmacKey pk;
  hmac_key(&pk, prk, 32);
  size_t prevlen = 0;
  for (int i = 1; i <= n; i++) {
    buf[prevlen] = uint8_t(i);
    hmac_with(out + 32 * (i - 1), pk, buf, prevlen + 1);
    memcpy(buf, out + 32 * (i - 1), 32);
    prevlen = 32;
  }
  secure_zero(prk, sizeof(prk));
  secure_zero(buf, sizeof(buf));
}

// KDF1 from C0 (the first step of message 1 on both sides), with C0's pads precomputed.
void kdf_initial(uint8_t out[32], const uint8_t* in, size_t inlen) { kdf_with(out, 1, initial_chain_hmac_key(), in, inlen); }

}  // namespace

void hmac(uint8_t out[32], const uint8_t* key, size_t keylen, const uint8_t* in, size_t inlen) {
  HmacKey k;
  hmac_key(&k, key, keylen);
  hmac_with(out, k, in, inlen);
}

void kdf(uint8_t* out, int n, const uint8_t ck[32], const uint8_t* in, size_t inlen) {
  HmacKey k;
  hmac_key(&k, ck, 32);
  kdf_with(out, n, k, in, inlen);
}

void tai64n(uint8_t out[kTimestampLen], int64_t seconds, uint32_t nanos) {
  const uint64_t label = (uint64_t(1) << 62) + 10 + uint64_t(seconds);
  for (int i = 0; i < 8; i++) out[i] = uint8_t(label >> (56 - 8 * i));
  for (int i = 0; i < 4; i++) out[8 + i] = uint8_t(nanos >> (24 - 8 * i));
}

void add_macs(uint8_t* msg, size_t size, const MacKeys& keys) {
  blake2s(msg + size - 32, 16, msg, size - 32, keys.mac1_key, 32);
  if (keys.cookie) {
    blake2s(msg + size - 16, 16, msg, size - 16, keys.cookie, 16);
  } else {
    memset(msg + size - 16, 0, 16);
  }
}

Fail create_initiation(InitiationOut* out, uint32_t sender, const uint8_t h0[32], const uint8_t remote_static[32],
                       const uint8_t local_public[32], const uint8_t ss[32], const uint8_t timestamp[12],
                       const MacKeys* macs) {
  Scratch s;
  uint8_t* msg = out->msg;
  uint8_t* eph = msg + 8;
  if (!start_message(msg, kInitiationSize, kMsgInitiation, sender, 8, out->eph_priv)) return Fail::kInternal;
  memcpy(out->h, h0, 32);
  kdf_initial(out->ck, eph, 32);
  mix_hash(out->h, eph, 32);
  if (!x25519(s.dh, out->eph_priv, remote_static)) return Fail::kLowOrder;
  kdf(s.t, 2, out->ck, s.dh, 32);
  memcpy(out->ck, s.t, 32);
  if (!seal0(s.t + 32, local_public, 32, out->h, msg + 40)) return Fail::kInternal;
  mix_hash(out->h, msg + 40, 48);
  kdf(s.t, 2, out->ck, ss, 32);
  memcpy(out->ck, s.t, 32);
  if (!seal0(s.t + 32, timestamp, kTimestampLen, out->h, msg + 88)) return Fail::kInternal;
  mix_hash(out->h, msg + 88, 28);
  if (macs) add_macs(msg, kInitiationSize, *macs);
  return Fail::kNone;
}

Fail consume_initiation_static(InitiationStaticOut* out, const uint8_t local_priv[32], const uint8_t h0[32],
                               const uint8_t msg[kInitiationSize]) {
  Scratch s;
  const uint8_t* eph = msg + 8;
  memcpy(out->h, h0, 32);
  kdf_initial(out->ck, eph, 32);
  mix_hash(out->h, eph, 32);
  if (!x25519(s.dh, local_priv, eph)) return Fail::kLowOrder;
  kdf(s.t, 2, out->ck, s.dh, 32);
  memcpy(out->ck, s.t, 32);
  if (!open0(s.t + 32, msg + 40, 32, out->h, out->peer_static)) return Fail::kDecrypt;
  mix_hash(out->h, msg + 40, 48);
  return Fail::kNone;
}

Fail consume_initiation_timestamp(InitiationTimestampOut* out, const uint8_t h[32], const uint8_t ck[32],
                                  const uint8_t ss[32], const uint8_t msg[kInitiationSize]) {
  Scratch s;
  memcpy(out->h, h, 32);
  kdf(s.t, 2, ck, ss, 32);
  memcpy(out->ck, s.t, 32);
  if (!open0(s.t + 32, msg + 88, kTimestampLen, out->h, out->timestamp)) return Fail::kDecrypt;
  mix_hash(out->h, msg + 88, 28);
  return Fail::kNone;
}

Fail create_response(ResponseOut* out, uint32_t sender, uint32_t receiver, const uint8_t h[32], const uint8_t ck[32],
                     const uint8_t remote_ephemeral[32], const uint8_t remote_static[32], const uint8_t psk[32],
                     const MacKeys* macs) {
  Scratch s;
  uint8_t* msg = out->msg;
  uint8_t* eph = msg + 12;
  if (!start_message(msg, kResponseSize, kMsgResponse, sender, 12, out->eph_priv)) return Fail::kInternal;
  put_le32(msg + 8, receiver);
  uint8_t se[32];
  bool ok = x25519(s.dh, out->eph_priv, remote_ephemeral) && x25519(se, out->eph_priv, remote_static);
  if (ok) {
    memcpy(out->h, h, 32);
    memcpy(out->ck, ck, 32);
    response_schedule(out->h, out->ck, s.t, eph, s.dh, se, psk);
    ok = seal0(s.t, nullptr, 0, out->h, msg + 44);
    if (ok) {
      mix_hash(out->h, msg + 44, 16);
      kdf(out->keys, 2, out->ck, nullptr, 0);
      if (macs) add_macs(msg, kResponseSize, *macs);
    }
  }
  secure_zero(se, sizeof(se));
  return ok ? Fail::kNone : Fail::kLowOrder;
}

Fail consume_response(uint8_t out_h[32], uint8_t out_ck[32], uint8_t out_keys[64], const uint8_t h[32], const uint8_t ck[32],
                      const uint8_t eph_priv[32], const uint8_t local_priv[32], const uint8_t psk[32],
                      const uint8_t msg[kResponseSize]) {
  Scratch s;
  const uint8_t* eph = msg + 12;
  uint8_t se[32];
  bool low = !x25519(s.dh, eph_priv, eph) || !x25519(se, local_priv, eph);
  Fail f = Fail::kLowOrder;
  if (!low) {
    memcpy(out_h, h, 32);
    memcpy(out_ck, ck, 32);
    response_schedule(out_h, out_ck, s.t, eph, s.dh, se, psk);
    uint8_t none[1] = {0};
    f = open0(s.t, msg + 44, 0, out_h, none) ? Fail::kNone : Fail::kDecrypt;
    if (f == Fail::kNone) {
      mix_hash(out_h, msg + 44, 16);
      kdf(out_keys, 2, out_ck, nullptr, 0);
    }
  }
  secure_zero(se, sizeof(se));
  return f;
}

}  // namespace noise
}  // namespace wm

// The native WireGuard handshake steps (crypto/noise.h) and the cookie mechanism (wireguard/cookie.h) on
// attacker bytes: initiations, responses and cookie replies that are either fully random or a valid message
// (built once per process with fixed test keys) with fuzz-chosen byte edits, optionally with mac1 recomputed
// over the edited bytes so the steps behind the mac1 gate see them as the device would. Then sequences of
// TAI64N timestamps through create/consume and the responder's replay rule (src/wireguard/noise.ts).
// Invariants, not only "no crash":
//  - check_mac1 agrees with an independent keyed BLAKE2s; an edited message whose mac1 was not recomputed is
//    never accepted;
//  - a step succeeds exactly when the bytes it authenticates equal the valid message's (an edit there, or a
//    wrong psk, always fails; an edit elsewhere never does), and then its outputs equal the honest peer's;
//  - a cookie reply opens exactly when its nonce and sealed cookie are intact, and the cookie it carries makes
//    a mac2 the responder takes from that source only, and only while the secret is fresh;
//  - TAI64N encodes (seconds, nanoseconds) order-preservingly; an initiation whose timestamp is not newer than
//    the last accepted one (a replay or an older one) is refused;
//  - the step outputs have the sizes the addon documents (crypto_wrap.cc: 244, 96, 76, 252, 128 bytes).
// Input: byte 0 picks the case and flags, the rest is its data.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "../src/crypto/aead.h"
#include "../src/crypto/blake2s.h"
#include "../src/crypto/noise.h"
#include "../src/crypto/x25519.h"
#include "../src/wireguard/cookie.h"
#include "../src/wireguard/messages.h"

using namespace wm;
namespace nz = wm::noise;

static_assert(sizeof(nz::InitiationOut) == 244, "noiseCreateInitiation's out is 244 bytes");
static_assert(sizeof(nz::InitiationStaticOut) == 96, "noiseConsumeInitiationStatic's out is 96 bytes");
static_assert(sizeof(nz::InitiationTimestampOut) == 76, "noiseConsumeInitiationTimestamp's out is 76 bytes");
static_assert(sizeof(nz::ResponseOut) == 252, "noiseCreateResponse's out is 252 bytes");
static_assert(nz::kInitiationSize == kInitiationSize && nz::kResponseSize == kResponseSize, "message sizes agree");

#define CHECK(c)                                                           \
  do {                                                                     \
    if (!(c)) {                                                            \
      fprintf(stderr, "fuzz_noise: invariant failed: %s (line %d)\n", #c, __LINE__); \
      abort();                                                             \
    }                                                                      \
  } while (0)

namespace {

constexpr uint64_t kNowMs = 1000;
constexpr uint32_t kInitiatorIndex = 0x11223344;
constexpr uint32_t kResponderIndex = 0x55667788;
const uint8_t kSrc[6] = {198, 18, 0, 1, 0x0c, 0x80};  // 198.18.0.1:3200, the initiator's endpoint

bool same(const void* a, const void* b, size_t n) { return memcmp(a, b, n) == 0; }

// HASH(label || key), 32 bytes: the mac1 and cookie keys (whitepaper §5.4.4), computed here one-shot as an
// independent reference for CookieChecker's own derivation.
void labelled(uint8_t out[32], const char* label8, const uint8_t key[32]) {
  uint8_t in[40];
  memcpy(in, label8, 8);
  memcpy(in + 8, key, 32);
  blake2s(out, 32, in, sizeof in, nullptr, 0);
}

void private_key(uint8_t k[32], uint8_t fill) {
  memset(k, fill, 32);
  k[0] &= 248;
  k[31] = uint8_t((k[31] & 127) | 64);
}

uint64_t be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

// Both peers' fixed keys, and one valid message of each kind from an honest handshake between them.
struct Fixture {
  uint8_t i_priv[32], i_pub[32], r_priv[32], r_pub[32], psk[32];
  uint8_t h0[32];               // HASH(HASH(C0 || identifier) || responder public)
  uint8_t ss[32];               // DH(I, R), the same from both sides
  uint8_t r_mac1[32], i_mac1[32];  // mac1 keys of messages to R and to I
  uint8_t cookie_key[32];       // HASH("cookie--" || R): the initiator opens R's cookie replies with it
  uint8_t init_ts[12];
  nz::InitiationOut init;       // initiator's state after message 1
  nz::InitiationStaticOut rst;  // responder's state after its two steps over message 1
  nz::InitiationTimestampOut rts;
  nz::ResponseOut resp;
  uint8_t reply[kCookieReplySize];  // R's cookie reply to init.msg from kSrc
  uint8_t cookie[16];
  CookieChecker r_check, i_check;
};

Fixture* make_fixture() {
  auto* f = new Fixture();
  private_key(f->i_priv, 0x11);
  private_key(f->r_priv, 0x22);
  memset(f->psk, 0x33, 32);
  CHECK(x25519_public(f->i_pub, f->i_priv) && x25519_public(f->r_pub, f->r_priv));
  CHECK(x25519(f->ss, f->i_priv, f->r_pub));
  uint8_t other[32];
  CHECK(x25519(other, f->r_priv, f->i_pub) && same(other, f->ss, 32));
  static const char kConstruction[] = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
  static const char kIdentifier[] = "WireGuard v1 zx2c4 Jason@zx2c4.com";
  uint8_t c0[32];
  blake2s(c0, 32, reinterpret_cast<const uint8_t*>(kConstruction), sizeof kConstruction - 1, nullptr, 0);
  Blake2sState s;
  blake2s_init(&s, 32, nullptr, 0);
  blake2s_update(&s, c0, 32);
  blake2s_update(&s, reinterpret_cast<const uint8_t*>(kIdentifier), sizeof kIdentifier - 1);
  blake2s_final(&s, f->h0);
  blake2s_init(&s, 32, nullptr, 0);
  blake2s_update(&s, f->h0, 32);
  blake2s_update(&s, f->r_pub, 32);
  blake2s_final(&s, f->h0);
  labelled(f->r_mac1, "mac1----", f->r_pub);
  labelled(f->i_mac1, "mac1----", f->i_pub);
  labelled(f->cookie_key, "cookie--", f->r_pub);
  f->r_check.set_public_key(f->r_pub);
  f->i_check.set_public_key(f->i_pub);

  nz::tai64n(f->init_ts, 1700000000, 5u << 24);
  nz::MacKeys to_r{f->r_mac1, nullptr}, to_i{f->i_mac1, nullptr};
  CHECK(nz::create_initiation(&f->init, kInitiatorIndex, f->h0, f->r_pub, f->i_pub, f->ss, f->init_ts, &to_r) ==
        nz::Fail::kNone);
  CHECK(f->r_check.check_mac1(f->init.msg, kInitiationSize));
  CHECK(nz::consume_initiation_static(&f->rst, f->r_priv, f->h0, f->init.msg) == nz::Fail::kNone);
  CHECK(same(f->rst.peer_static, f->i_pub, 32));
  CHECK(nz::consume_initiation_timestamp(&f->rts, f->rst.h, f->rst.ck, f->ss, f->init.msg) == nz::Fail::kNone);
  CHECK(same(f->rts.timestamp, f->init_ts, 12) && same(f->rts.h, f->init.h, 32) && same(f->rts.ck, f->init.ck, 32));
  CHECK(nz::create_response(&f->resp, kResponderIndex, kInitiatorIndex, f->rts.h, f->rts.ck, f->init.msg + 8, f->i_pub,
                            f->psk, &to_i) == nz::Fail::kNone);
  CHECK(f->r_check.make_reply(f->init.msg, kInitiationSize, kInitiatorIndex, kSrc, sizeof kSrc, kNowMs, f->reply));
  CHECK(xchacha_open(f->cookie_key, f->reply + 8, f->reply + 32, 16, f->init.msg + kInitiationSize - 32, 16, f->cookie));
  return f;
}

// The message under test: the fuzz bytes themselves (zero-padded or cut to n), or the valid message with
// edits (each a position and an XOR byte); with `remac`, mac1 is then recomputed under mac1_key.
void build(uint8_t* msg, size_t n, const uint8_t* valid, bool raw, bool remac, const uint8_t* mac1_key,
           const uint8_t* d, size_t len) {
  if (raw) {
    memset(msg, 0, n);
    memcpy(msg, d, len < n ? len : n);
  } else {
    memcpy(msg, valid, n);
    for (size_t i = 0; i + 1 < len; i += 2) msg[d[i] % n] ^= d[i + 1];
  }
  if (remac) blake2s(msg + n - 32, 16, msg, n - 32, mac1_key, 32);
}

// The mac1 gate every handshake message passes first (device_rx.cc): returns what the device would decide.
bool gate(const CookieChecker& check, const uint8_t* mac1_key, const uint8_t* msg, size_t n, const uint8_t* valid,
          bool remac) {
  bool ok = check.check_mac1(msg, n);
  uint8_t ref[16];
  blake2s(ref, 16, msg, n - 32, mac1_key, 32);
  CHECK(ok == same(ref, msg + n - 32, 16));
  // A message that differs from the valid one before mac2 and whose mac1 nobody recomputed is never accepted.
  if (!remac && !same(msg, valid, n - 16)) CHECK(!ok);
  if (remac) CHECK(ok);
  return ok;
}

// Responder, message 1.
void initiation(const Fixture& f, bool raw, bool remac, const uint8_t* d, size_t len) {
  uint8_t msg[kInitiationSize];
  build(msg, sizeof msg, f.init.msg, raw, remac, f.r_mac1, d, len);
  gate(f.r_check, f.r_mac1, msg, sizeof msg, f.init.msg, remac);
  classify_message(msg, sizeof msg);
  // The steps run whatever the gate said: mac1 is no secret (anyone with R's public key can compute it).
  nz::InitiationStaticOut st;
  nz::Fail a = nz::consume_initiation_static(&st, f.r_priv, f.h0, msg);
  // The ephemeral and the sealed static are authenticated: any change there fails the AEAD.
  CHECK((a == nz::Fail::kNone) == same(msg + 8, f.init.msg + 8, 80));
  // The response step takes the initiator's ephemeral as it came: refused exactly when it is of low order
  // (the same test the static step made), else a whole message 2 to the sender, mac1 under I's key.
  nz::ResponseOut ro;
  nz::MacKeys to_i{f.i_mac1, nullptr};
  nz::Fail c = nz::create_response(&ro, kResponderIndex, le32(msg + 4), f.rts.h, f.rts.ck, msg + 8, f.i_pub, f.psk, &to_i);
  CHECK(c == nz::Fail::kNone || c == nz::Fail::kLowOrder);
  CHECK((c == nz::Fail::kLowOrder) == (a == nz::Fail::kLowOrder));
  if (c == nz::Fail::kNone) {
    CHECK(le32(ro.msg) == kMsgResponse && le32(ro.msg + 4) == kResponderIndex && le32(ro.msg + 8) == le32(msg + 4));
    CHECK(f.i_check.check_mac1(ro.msg, kResponseSize) && classify_message(ro.msg, kResponseSize) == kMsgResponse);
  }
  if (a != nz::Fail::kNone) return;
  CHECK(same(&st, &f.rst, sizeof st));
  nz::InitiationTimestampOut ts;
  nz::Fail b = nz::consume_initiation_timestamp(&ts, st.h, st.ck, f.ss, msg);
  CHECK((b == nz::Fail::kNone) == same(msg + 88, f.init.msg + 88, 28));
  if (b != nz::Fail::kNone) return;
  CHECK(same(&ts, &f.rts, sizeof ts));
  // The responder already took this initiation (make_fixture): its timestamp is not newer, so it is a replay.
  CHECK(memcmp(ts.timestamp, f.rts.timestamp, 12) <= 0);
}

// Initiator, message 2 (optionally under a psk other than the responder's).
void response(const Fixture& f, bool raw, bool remac, bool wrong_psk, const uint8_t* d, size_t len) {
  uint8_t msg[kResponseSize];
  build(msg, sizeof msg, f.resp.msg, raw, remac, f.i_mac1, d, len);
  gate(f.i_check, f.i_mac1, msg, sizeof msg, f.resp.msg, remac);
  classify_message(msg, sizeof msg);
  uint8_t psk[32];
  memcpy(psk, f.psk, 32);
  if (wrong_psk) psk[len % 32] ^= uint8_t(1 + (len & 0x7f));
  uint8_t h[32], ck[32], keys[64];
  nz::Fail r = nz::consume_response(h, ck, keys, f.init.h, f.init.ck, f.init.eph_priv, f.i_priv, psk, msg);
  CHECK((r == nz::Fail::kNone) == (!wrong_psk && same(msg + 12, f.resp.msg + 12, 48)));
  if (r != nz::Fail::kNone) return;
  // Both sides derive the same h, ck and τ1 | τ2 (the responder's receive | send = the initiator's send | receive).
  CHECK(same(h, f.resp.h, 32) && same(ck, f.resp.ck, 32) && same(keys, f.resp.keys, 64));
}

// A cookie reply as the initiator takes it (src/wireguard/cookie.ts consumeReply), then R's side: a reply to
// an arbitrary handshake message, and mac2 under the cookie.
void cookie_reply(Fixture& f, bool raw, const uint8_t* d, size_t len) {
  uint8_t msg[kCookieReplySize];
  build(msg, sizeof msg, f.reply, raw, false, nullptr, d, len);
  classify_message(msg, sizeof msg);
  uint8_t cookie[16];
  bool ok = xchacha_open(f.cookie_key, msg + 8, msg + 32, 16, f.init.msg + kInitiationSize - 32, 16, cookie);
  CHECK(ok == same(msg + 8, f.reply + 8, 56));
  if (ok) CHECK(same(cookie, f.cookie, 16));

  // R answers the fuzz bytes as a handshake message (the device only does so for a valid mac1; the reply must not
  // care): the sealed cookie depends on the source only, bound to the message's mac1 field as AAD.
  uint8_t hs[kInitiationSize];
  build(hs, sizeof hs, f.init.msg, raw, false, nullptr, d, len);
  uint8_t out[kCookieReplySize + 1];
  out[kCookieReplySize] = 0xa5;
  CHECK(f.r_check.make_reply(hs, sizeof hs, kResponderIndex, kSrc, sizeof kSrc, kNowMs, out));
  CHECK(out[kCookieReplySize] == 0xa5 && out[0] == kMsgCookieReply && le32(out + 4) == kResponderIndex);
  CHECK(xchacha_open(f.cookie_key, out + 8, out + 32, 16, hs + kInitiationSize - 32, 16, cookie));
  CHECK(same(cookie, f.cookie, 16));

  // mac2 under that cookie: good from kSrc while the secret is fresh; never from another source or once stale.
  blake2s(hs + kInitiationSize - 16, 16, hs, kInitiationSize - 16, f.cookie, 16);
  CHECK(f.r_check.check_mac2(hs, sizeof hs, kSrc, sizeof kSrc, kNowMs));
  uint8_t src[6];
  memcpy(src, kSrc, 6);
  src[(len ? d[0] : 0) % 6] ^= uint8_t((len ? d[len - 1] : 0) | 1);  // always another source
  CHECK(!f.r_check.check_mac2(hs, sizeof hs, src, sizeof src, kNowMs));
  CHECK(!f.r_check.check_mac2(hs, sizeof hs, kSrc, sizeof kSrc, kNowMs + kCookieRefreshMs));
  if (len > 1) {
    hs[d[1] % (kInitiationSize - 16)] ^= uint8_t(d[0] | 1);
    CHECK(!f.r_check.check_mac2(hs, sizeof hs, kSrc, sizeof kSrc, kNowMs));
  }
}

// Initiations carrying a sequence of timestamps, through the native steps and the responder's replay rule
// (accept only a TAI64N strictly later than the last accepted one). Records of 13 bytes: an op, then seconds
// (8, big-endian) and nanoseconds (4), reduced into the addon's domain (TimestampParts: s < 2^53, ns < 10^9).
void timestamps(const Fixture& f, const uint8_t* d, size_t len) {
  uint8_t last[12];
  memcpy(last, f.init_ts, 12);  // the responder already took the fixture's initiation
  uint64_t last_s = 1700000000, last_ns = 5u << 24;
  uint64_t prev_s = last_s, prev_ns = last_ns;
  for (size_t at = 0, n = 0; at + 13 <= len && n < 6; at += 13, n++) {
    const uint8_t* r = d + at;
    uint64_t s = be64(r + 1) & ((uint64_t(1) << 53) - 1), ns = le32(r + 9) % 1000000000u;
    switch (r[0] % 4) {
      case 1: s = prev_s, ns = prev_ns; break;            // the same timestamp again: a replay
      case 2: s = last_s, ns = last_ns ? last_ns - 1 : 0; break;  // just older than the last accepted
      case 3: s = last_s, ns = r[12] % 2 ? last_ns + 1 : last_ns; break;
      default: break;
    }
    if (ns >= 1000000000u) ns = 999999999u;
    prev_s = s, prev_ns = ns;
    uint8_t ts[12];
    nz::tai64n(ts, int64_t(s), uint32_t(ns));
    CHECK(be64(ts) == (uint64_t(1) << 62) + 10 + s && le32(ts + 8) == __builtin_bswap32(uint32_t(ns)));
    bool newer = s > last_s || (s == last_s && ns > last_ns);
    CHECK(newer == (memcmp(ts, last, 12) > 0));  // TAI64N's byte order is time order
    nz::MacKeys to_r{f.r_mac1, nullptr};
    nz::InitiationOut init;
    CHECK(nz::create_initiation(&init, kInitiatorIndex, f.h0, f.r_pub, f.i_pub, f.ss, ts, &to_r) == nz::Fail::kNone);
    CHECK(f.r_check.check_mac1(init.msg, kInitiationSize));
    nz::InitiationStaticOut st;
    nz::InitiationTimestampOut out;
    CHECK(nz::consume_initiation_static(&st, f.r_priv, f.h0, init.msg) == nz::Fail::kNone);
    CHECK(nz::consume_initiation_timestamp(&out, st.h, st.ck, f.ss, init.msg) == nz::Fail::kNone);
    CHECK(same(out.timestamp, ts, 12) && same(out.h, init.h, 32) && same(out.ck, init.ck, 32));
    bool accepted = memcmp(out.timestamp, last, 12) > 0;  // noise.ts: tai64nAfter(ts, hs.lastTimestamp)
    CHECK(accepted == newer);
    if ((r[0] % 4) == 2 && last_ns > 0) CHECK(!accepted);
    if (accepted) memcpy(last, out.timestamp, 12), last_s = s, last_ns = ns;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* f = make_fixture();
  if (size == 0) return 0;
  const uint8_t sel = data[0];
  const bool raw = sel & 0x10, remac = sel & 0x20, wrong_psk = sel & 0x40;
  const uint8_t* d = data + 1;
  size_t len = size - 1;
  switch (sel % 4) {
    case 0: initiation(*f, raw, remac, d, len); break;
    case 1: response(*f, raw, remac, wrong_psk, d, len); break;
    case 2: cookie_reply(*f, raw, d, len); break;
    default: timestamps(*f, d, len); break;
  }
  return 0;
}

// Data-path pieces wrapped one by one for the unit tests (test/unit): never in the product addon.
#include <dlfcn.h>
#include <openssl/evp.h>
#include <time.h>

#include <cstring>
#include <string>
#include <vector>

#include "../addon/util.h"
#include "../crypto/chacha.h"
#include "../crypto/noise.h"
#include "../crypto/x25519.h"
#include "../net/offload.h"
#include "../wireguard/allowedips.h"
#include "../wireguard/cookie.h"
#include "../wireguard/ratelimiter.h"
#include "../wireguard/replay.h"
#include "testhooks.h"

namespace wm {
namespace testhooks {

using namespace addon;

namespace {

Napi::Value HChaCha20(const Napi::CallbackInfo& info) {
  const uint8_t *key, *nonce;
  if (!GetBytes(info[0], 32, &key) || !GetBytes(info[1], 16, &nonce))
    return ThrowType(info.Env(), "hchacha20(key 32 bytes, nonce 16 bytes)");
  uint8_t out[32];
  hchacha20(out, key, nonce);
  return Copy(info.Env(), out, 32);
}

double ThreadCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

// OpenSSL's X25519 as well as EVP allows: our private key object and derive context built
// once, the peer's key object per call (a handshake's peer keys are fresh ephemerals).
bool OpensslReuse(EVP_PKEY_CTX* derive, const uint8_t pub[32], uint8_t out[32]) {
  EVP_PKEY* pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, pub, 32);
  size_t len = 32;
  bool ok = pk && EVP_PKEY_derive_set_peer(derive, pk) == 1 && EVP_PKEY_derive(derive, out, &len) == 1;
  EVP_PKEY_free(pk);
  return ok;
}

// The addon's X25519 before libsodium: both key objects built per call (and OpenSSL derives the
// public key of a raw private key when it builds the object, a second scalar multiplication).
bool OpensslFresh(const uint8_t priv[32], const uint8_t pub[32], uint8_t out[32]) {
  EVP_PKEY* sk = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, priv, 32);
  EVP_PKEY* pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, pub, 32);
  EVP_PKEY_CTX* ctx = sk ? EVP_PKEY_CTX_new(sk, nullptr) : nullptr;
  size_t len = 32;
  bool ok = pk && ctx && EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_derive_set_peer(ctx, pk) == 1 &&
            EVP_PKEY_derive(ctx, out, &len) == 1;
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(pk);
  EVP_PKEY_free(sk);
  return ok;
}

// nettle's curve25519_mul (Debian libhogweed6, nettle's public-key half, which GnuTLS depends on), the alternative the benchmark times
// beside libsodium and OpenSSL. Looked up at run time, so the addons do not link it: null when it is not
// installed. Nettle clamps the scalar itself, as RFC 7748 decodeScalar25519 does.
using NettleMul = void (*)(uint8_t* q, const uint8_t* n, const uint8_t* p);
NettleMul NettleCurve25519Mul() {
  static const NettleMul fn = [] {
    void* lib = dlopen("libhogweed.so.6", RTLD_NOW | RTLD_LOCAL);
    return lib ? reinterpret_cast<NettleMul>(dlsym(lib, "nettle_curve25519_mul")) : nullptr;
  }();
  return fn;
}

// x25519Cost(impl, iterations) -> thread CPU seconds per operation, measured natively so that
// the implementations compare without the JS crossing. impl: 'libsodium' | 'libsodium-base' | 'libsodium-comb' |
// 'openssl-reuse' | 'openssl-fresh' | 'openssl-keygen' | 'nettle'. Null for 'nettle' when libhogweed.so.6 is not
// installed. Throws on an unknown impl, a failure, or nettle's bytes differing from libsodium's.
Napi::Value X25519Cost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsNumber()) return ThrowType(env, "x25519Cost(impl, iterations)");
  std::string impl = info[0].As<Napi::String>();
  uint32_t n = info[1].As<Napi::Number>().Uint32Value();
  uint8_t sk[32], pk[32], out[32];
  if (n == 0 || !x25519_keypair(sk, pk)) return ThrowType(env, "x25519Cost: no iterations or no key");
  const NettleMul nettle = impl == "nettle" ? NettleCurve25519Mul() : nullptr;
  if (impl == "nettle") {
    uint8_t ref[32];
    if (!nettle) return env.Null();
    nettle(out, sk, pk);
    if (!x25519(ref, sk, pk) || memcmp(ref, out, 32) != 0) return ThrowType(env, "x25519Cost: nettle differs from libsodium");
  }
  EVP_PKEY* skey = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, sk, 32);
  EVP_PKEY_CTX* derive = skey ? EVP_PKEY_CTX_new(skey, nullptr) : nullptr;
  EVP_PKEY_CTX* keygen = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr);
  bool ok = derive && keygen && EVP_PKEY_derive_init(derive) == 1 && EVP_PKEY_keygen_init(keygen) == 1;
  bool known = true;
  double start = ThreadCpuSeconds();
  for (uint32_t i = 0; ok && known && i < n; i++) {
    if (impl == "libsodium") {
      ok = x25519(out, sk, pk);
    } else if (impl == "libsodium-base") {
      ok = x25519_public(out, sk);
    } else if (impl == "libsodium-comb") {
      ok = x25519_public_comb(out, sk);
    } else if (impl == "openssl-reuse") {
      ok = OpensslReuse(derive, pk, out);
    } else if (impl == "openssl-fresh") {
      ok = OpensslFresh(sk, pk, out);
    } else if (nettle) {
      nettle(out, sk, pk);
    } else if (impl == "openssl-keygen") {
      EVP_PKEY* k = nullptr;
      ok = EVP_PKEY_keygen(keygen, &k) == 1;
      EVP_PKEY_free(k);
    } else {
      known = false;
    }
  }
  double elapsed = ThreadCpuSeconds() - start;
  EVP_PKEY_CTX_free(keygen);
  EVP_PKEY_CTX_free(derive);
  EVP_PKEY_free(skey);
  if (!known) return ThrowType(env, "x25519Cost: unknown implementation " + impl);
  if (!ok) return ThrowType(env, "x25519Cost: " + impl + " failed");
  return Napi::Number::New(env, elapsed / n);
}

// x25519PublicComb(priv 32) -> Buffer 32: x25519_public_comb (the ephemerals' fixed-base path), which the
// unit tests compare with x25519Public (libsodium's crypto_scalarmult_base); null if it failed.
Napi::Value X25519PublicComb(const Napi::CallbackInfo& info) {
  const uint8_t* sk;
  if (!GetBytes(info[0], 32, &sk)) return ThrowType(info.Env(), "x25519PublicComb(priv 32)");
  uint8_t out[32];
  if (!x25519_public_comb(out, sk)) return info.Env().Null();
  return Copy(info.Env(), out, 32);
}

// threadCpuSeconds() -> CPU seconds of the calling (JS) thread alone: process.cpuUsage() also counts V8's
// and libuv's helper threads.
Napi::Value ThreadCpu(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), ThreadCpuSeconds()); }

// noiseStepsCost(iterations) -> { initiator, responder }: thread CPU seconds per handshake for each side
// running only the native steps (crypto/noise.h) back to back, no JavaScript: the floor under what
// src/wireguard/noise.ts achieves (bench/handshake.ts prints both). The initiator creates message 1 and
// consumes message 2; the responder consumes message 1 (both halves) and creates message 2. Each created
// message gets its mac1 (no cookie), as the shipped path writes it.
Napi::Value NoiseStepsCost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t n = info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
  uint8_t a[32], A[32], b[32], B[32], ss[32], h0[32] = {7}, ts[12] = {0}, psk[32] = {0}, h[32], ck[32], keys[64];
  if (n == 0 || !x25519_keypair(a, A) || !x25519_keypair(b, B) || !x25519(ss, a, B))
    return ThrowType(env, "noiseStepsCost(iterations > 0)");
  const uint8_t mac1_key[32] = {9};
  const noise::MacKeys macs{mac1_key, nullptr};
  noise::InitiationOut io;
  noise::InitiationStaticOut so;
  noise::InitiationTimestampOut to;
  noise::ResponseOut ro;
  double init = 0, resp = 0;
  bool ok = true;
  for (uint32_t i = 0; ok && i < n; i++) {
    double t0 = ThreadCpuSeconds();
    ok = noise::create_initiation(&io, 1, h0, B, A, ss, ts, &macs) == noise::Fail::kNone;
    double t1 = ThreadCpuSeconds();
    ok = ok && noise::consume_initiation_static(&so, b, h0, io.msg) == noise::Fail::kNone &&
         noise::consume_initiation_timestamp(&to, so.h, so.ck, ss, io.msg) == noise::Fail::kNone &&
         noise::create_response(&ro, 2, 1, to.h, to.ck, io.msg + 8, A, psk, &macs) == noise::Fail::kNone;
    double t2 = ThreadCpuSeconds();
    ok = ok && noise::consume_response(h, ck, keys, io.h, io.ck, io.eph_priv, a, psk, ro.msg) == noise::Fail::kNone;
    double t3 = ThreadCpuSeconds();
    init += (t1 - t0) + (t3 - t2);
    resp += t2 - t1;
  }
  if (!ok) return ThrowType(env, "noiseStepsCost: a step failed");
  Napi::Object o = Napi::Object::New(env);
  o.Set("initiator", Napi::Number::New(env, init / n));
  o.Set("responder", Napi::Number::New(env, resp / n));
  return o;
}

// splitPacket(vnetHdr: Buffer|null, packet: Buffer) -> Buffer[] | null
Napi::Value SplitPacket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VnetHdr h;
  if (info[0].IsBuffer()) {
    auto hb = info[0].As<Napi::Buffer<uint8_t>>();
    if (hb.Length() != kVnetHdrSize) return ThrowType(env, "vnet header must be 10 bytes");
    vnet_decode(hb.Data(), &h);
  }
  if (!info[1].IsBuffer()) return ThrowType(env, "splitPacket(vnetHdr, packet)");
  auto pkt = info[1].As<Napi::Buffer<uint8_t>>();
  size_t seg = max_segment_size(h, pkt.Data(), pkt.Length());
  if (seg == 0) return env.Null();
  std::vector<uint8_t> out(seg * 1024);
  std::vector<size_t> lens(1024);
  int n = split_packet(h, pkt.Data(), pkt.Length(), out.data(), seg, lens.data(), 1024);
  if (n < 0) return env.Null();
  Napi::Array arr = Napi::Array::New(env, size_t(n));
  for (int i = 0; i < n; i++) arr.Set(uint32_t(i), Copy(env, out.data() + size_t(i) * seg, lens[i]));
  return arr;
}

// coalesce(packets: Buffer[]) -> {vnet: Buffer, data: Buffer}[]
Napi::Value Coalesce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) return ThrowType(env, "coalesce(packets[])");
  Napi::Array in = info[0].As<Napi::Array>();
  std::vector<std::vector<uint8_t>> pkts;
  for (uint32_t i = 0; i < in.Length(); i++) {
    Napi::Value v = in.Get(i);
    if (!v.IsBuffer()) return ThrowType(env, "coalesce: packets must be Buffers");
    auto b = v.As<Napi::Buffer<uint8_t>>();
    pkts.emplace_back(b.Data(), b.Data() + b.Length());
  }
  Coalescer c(1024);
  for (auto& p : pkts) c.add(p.data(), p.size());
  const auto& items = c.finish();
  Napi::Array arr = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("vnet", Copy(env, items[i].vnet, kVnetHdrSize));
    o.Set("data", Copy(env, items[i].data, items[i].len));
    arr.Set(uint32_t(i), o);
  }
  return arr;
}

class ReplayFilterWrap : public Napi::ObjectWrap<ReplayFilterWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "ReplayFilter",
                       {InstanceMethod("validate", &ReplayFilterWrap::Validate),
                        InstanceMethod("reset", &ReplayFilterWrap::Reset)});
  }
  explicit ReplayFilterWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ReplayFilterWrap>(info) {
    filter_.reset();
  }

 private:
  Napi::Value Validate(const Napi::CallbackInfo& info) {
    bool lossless = false;
    uint64_t v = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
    return Napi::Boolean::New(info.Env(), filter_.validate(v));
  }
  Napi::Value Reset(const Napi::CallbackInfo& info) {
    filter_.reset();
    return info.Env().Undefined();
  }
  ReplayFilter filter_;
};

class RateLimiterWrap : public Napi::ObjectWrap<RateLimiterWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "RateLimiter",
                       {InstanceMethod("allow", &RateLimiterWrap::Allow), InstanceMethod("size", &RateLimiterWrap::Size)});
  }
  explicit RateLimiterWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RateLimiterWrap>(info) {}

 private:
  Napi::Value Allow(const Napi::CallbackInfo& info) {
    const uint8_t* ip;
    if (!GetBytes(info[0], 0, &ip)) return ThrowType(info.Env(), "allow(ip, nowNs)");
    size_t n = info[0].As<Napi::Buffer<uint8_t>>().Length();
    bool lossless;
    uint64_t now = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
    return Napi::Boolean::New(info.Env(), rl_.allow(ip, int(n), now));
  }
  Napi::Value Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(rl_.size())); }
  RateLimiter rl_;
};

class AllowedIPsWrap : public Napi::ObjectWrap<AllowedIPsWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "AllowedIPs",
                       {InstanceMethod("insert", &AllowedIPsWrap::Insert),
                        InstanceMethod("removePeer", &AllowedIPsWrap::RemovePeer),
                        InstanceMethod("lookup", &AllowedIPsWrap::Lookup),
                        InstanceMethod("size", &AllowedIPsWrap::Size),
                        InstanceMethod("listed", &AllowedIPsWrap::Listed),
                        InstanceMethod("walk", &AllowedIPsWrap::Walk),
                        InstanceMethod("peerPrefixes", &AllowedIPsWrap::PeerPrefixes)});
  }
  explicit AllowedIPsWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AllowedIPsWrap>(info) {}

 private:
  Napi::Value Insert(const Napi::CallbackInfo& info) {
    auto a = info[0].As<Napi::Buffer<uint8_t>>();
    if (a.Length() != 4 && a.Length() != 16) return ThrowType(info.Env(), "address must be 4 or 16 bytes");
    t_.insert(a.Data(), int(a.Length()), info[1].As<Napi::Number>().Int32Value(),
              info[2].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }
  Napi::Value RemovePeer(const Napi::CallbackInfo& info) {
    t_.remove_peer(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }
  Napi::Value Lookup(const Napi::CallbackInfo& info) {
    auto a = info[0].As<Napi::Buffer<uint8_t>>();
    if (a.Length() != 4 && a.Length() != 16) return ThrowType(info.Env(), "address must be 4 or 16 bytes");
    uint32_t p = t_.lookup(a.Data(), int(a.Length()));
    return Napi::Number::New(info.Env(), p == AllowedIPs::kNoPeer ? -1.0 : double(p));
  }
  Napi::Value Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(t_.size())); }
  Napi::Value Listed(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(t_.listed())); }
  // The whole prefix list (AllowedIPs::entries, every prefix sorted): the churn benchmark's anchor.
  Napi::Value Walk(const Napi::CallbackInfo& info) {
    std::vector<AllowedIPs::Entry> out;
    t_.entries(&out);
    return Napi::Number::New(info.Env(), double(out.size()));
  }
  // A peer's prefixes: [[Buffer, cidr], ...] (AllowedIPs::peer_prefixes).
  Napi::Value PeerPrefixes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) return ThrowType(env, "peerPrefixes(peer)");
    std::vector<AllowedIPs::Entry> out;
    t_.peer_prefixes(info[0].As<Napi::Number>().Uint32Value(), &out);
    Napi::Array arr = Napi::Array::New(env, out.size());
    for (size_t i = 0; i < out.size(); i++) {
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(uint32_t(0), Napi::Buffer<uint8_t>::Copy(env, out[i].addr, size_t(out[i].family_bytes)));
      pair.Set(uint32_t(1), Napi::Number::New(env, out[i].cidr));
      arr.Set(uint32_t(i), pair);
    }
    return arr;
  }
  AllowedIPs t_;
};

class CookieCheckerWrap : public Napi::ObjectWrap<CookieCheckerWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "CookieChecker",
                       {InstanceMethod("setPublicKey", &CookieCheckerWrap::SetPublicKey),
                        InstanceMethod("checkMac1", &CookieCheckerWrap::CheckMac1),
                        InstanceMethod("checkMac2", &CookieCheckerWrap::CheckMac2),
                        InstanceMethod("makeReply", &CookieCheckerWrap::MakeReply)});
  }
  explicit CookieCheckerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CookieCheckerWrap>(info) {}

 private:
  Napi::Value SetPublicKey(const Napi::CallbackInfo& info) {
    const uint8_t* k;
    if (!GetBytes(info[0], 32, &k)) return ThrowType(info.Env(), "public key must be 32 bytes");
    c_.set_public_key(k);
    return info.Env().Undefined();
  }
  Napi::Value CheckMac1(const Napi::CallbackInfo& info) {
    auto m = info[0].As<Napi::Buffer<uint8_t>>();
    return Napi::Boolean::New(info.Env(), c_.check_mac1(m.Data(), m.Length()));
  }
  Napi::Value CheckMac2(const Napi::CallbackInfo& info) {
    auto m = info[0].As<Napi::Buffer<uint8_t>>();
    auto s = info[1].As<Napi::Buffer<uint8_t>>();
    uint64_t now = uint64_t(info[2].As<Napi::Number>().DoubleValue());
    return Napi::Boolean::New(info.Env(), c_.check_mac2(m.Data(), m.Length(), s.Data(), s.Length(), now));
  }
  Napi::Value MakeReply(const Napi::CallbackInfo& info) {
    auto m = info[0].As<Napi::Buffer<uint8_t>>();
    uint32_t receiver = info[1].As<Napi::Number>().Uint32Value();
    auto s = info[2].As<Napi::Buffer<uint8_t>>();
    uint64_t now = uint64_t(info[3].As<Napi::Number>().DoubleValue());
    uint8_t out[64];
    if (!c_.make_reply(m.Data(), m.Length(), receiver, s.Data(), s.Length(), now, out)) return info.Env().Null();
    return Copy(info.Env(), out, 64);
  }
  CookieChecker c_;
};

}  // namespace

void RegisterPrimitives(Napi::Env env, Napi::Object exports) {
  exports.Set("hchacha20", Napi::Function::New(env, HChaCha20));
  exports.Set("x25519Cost", Napi::Function::New(env, X25519Cost));
  exports.Set("x25519PublicComb", Napi::Function::New(env, X25519PublicComb));
  exports.Set("noiseStepsCost", Napi::Function::New(env, NoiseStepsCost));
  exports.Set("threadCpuSeconds", Napi::Function::New(env, ThreadCpu));
  exports.Set("splitPacket", Napi::Function::New(env, SplitPacket));
  exports.Set("coalesce", Napi::Function::New(env, Coalesce));
  exports.Set("ReplayFilter", ReplayFilterWrap::Init(env));
  exports.Set("RateLimiter", RateLimiterWrap::Init(env));
  exports.Set("AllowedIPs", AllowedIPsWrap::Init(env));
  exports.Set("CookieChecker", CookieCheckerWrap::Init(env));
}

}  // namespace testhooks
}  // namespace wm

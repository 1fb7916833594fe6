// The primitives and whole Noise steps the TypeScript handshake (src/wireguard/{crypto,noise}.ts) calls, and the
// device's clock.
#include <cstring>
#include <vector>

#include "../crypto/aead.h"
#include "../crypto/blake2s.h"
#include "../crypto/noise.h"
#include "../crypto/x25519.h"
#include "../wireguard/device.h"
#include "util.h"
#include "wraps.h"

namespace wm {
namespace addon {

namespace {

Napi::Value Blake2s(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t outlen = info[0].As<Napi::Number>().Uint32Value();
  if (outlen < 1 || outlen > 32 || !info[1].IsBuffer()) return ThrowType(env, "blake2s(outlen 1..32, data, key?)");
  auto data = info[1].As<Napi::Buffer<uint8_t>>();
  const uint8_t* key = nullptr;
  size_t keylen = 0;
  if (info.Length() > 2 && info[2].IsBuffer()) {
    auto k = info[2].As<Napi::Buffer<uint8_t>>();
    if (k.Length() > 32) return ThrowType(env, "blake2s key longer than 32 bytes");
    key = k.Data();
    keylen = k.Length();
  }
  uint8_t out[32];
  blake2s(out, outlen, data.Data(), data.Length(), key, keylen);
  return Copy(env, out, outlen);
}

// aead(seal: boolean, xchacha: boolean, key, nonce, data, aad) -> Buffer | null
Napi::Value Aead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool seal = info[0].ToBoolean();
  bool x = info[1].ToBoolean();
  const uint8_t *key, *nonce;
  if (!GetBytes(info[2], 32, &key) || !GetBytes(info[3], x ? 24 : 12, &nonce) || !info[4].IsBuffer())
    return ThrowType(env, "aead(seal, xchacha, key 32, nonce 12|24, data, aad?)");
  auto data = info[4].As<Napi::Buffer<uint8_t>>();
  const uint8_t* aad = nullptr;
  size_t aadlen = 0;
  if (info.Length() > 5 && info[5].IsBuffer()) {
    aad = info[5].As<Napi::Buffer<uint8_t>>().Data();
    aadlen = info[5].As<Napi::Buffer<uint8_t>>().Length();
  }
  if (!seal && data.Length() < kAeadTagSize) return env.Null();
  size_t outlen = seal ? data.Length() + kAeadTagSize : data.Length() - kAeadTagSize;
  std::vector<uint8_t> out(outlen + kAeadTagSize);
  bool ok;
  if (x) {
    ok = seal ? xchacha_seal(key, nonce, data.Data(), data.Length(), aad, aadlen, out.data())
              : xchacha_open(key, nonce, data.Data(), outlen, aad, aadlen, out.data());
  } else {
    ChaChaPoly c(key, seal);
    ok = seal ? c.seal(nonce, data.Data(), data.Length(), aad, aadlen, out.data())
              : c.open(nonce, data.Data(), outlen, aad, aadlen, out.data());
  }
  if (!ok) return env.Null();
  return Copy(env, out.data(), outlen);
}

// x25519(priv, pub) -> Buffer | null (null: low-order peer key)
Napi::Value X25519(const Napi::CallbackInfo& info) {
  const uint8_t *sk, *pk;
  if (!GetBytes(info[0], 32, &sk) || !GetBytes(info[1], 32, &pk)) return ThrowType(info.Env(), "x25519(priv 32, pub 32)");
  uint8_t out[32];
  if (!x25519(out, sk, pk)) return info.Env().Null();
  return Copy(info.Env(), out, 32);
}

Napi::Value X25519Public(const Napi::CallbackInfo& info) {
  const uint8_t* sk;
  if (!GetBytes(info[0], 32, &sk)) return ThrowType(info.Env(), "x25519Public(priv 32)");
  uint8_t out[32];
  if (!x25519_public(out, sk)) return info.Env().Null();
  return Copy(info.Env(), out, 32);
}

// Handshake steps (crypto/noise.h): each writes its *Out struct into the caller's Buffer `out` (exactly
// that size; the JS side keeps one and slices it) and returns the Fail code (0: done). Writing into a
// Buffer the caller owns, rather than returning a new one, keeps a handshake free of per-step external
// allocations, which cost the JS thread more (GC of external memory) than the step's hashing.
template <typename T>
bool OutStruct(const Napi::Value& v, uint8_t** out) {
  const uint8_t* p;
  if (!GetBytes(v, sizeof(T), &p)) return false;
  *out = const_cast<uint8_t*>(p);
  return true;
}

template <typename T>
Napi::Value StepDone(Napi::Env env, noise::Fail f, T* local, uint8_t* out) {
  if (f == noise::Fail::kNone) memcpy(out, local, sizeof(T));
  secure_zero(local, sizeof(T));
  return Napi::Number::New(env, double(f));
}

// noiseKdf(n 1..3, ck 32, input) -> Buffer(32n)
Napi::Value NoiseKdf(const Napi::CallbackInfo& info) {
  const uint8_t *ck, *in;
  uint32_t n = info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
  if (n < 1 || n > 3 || !GetBytes(info[1], 32, &ck) || !GetBytes(info[2], 0, &in))
    return ThrowType(info.Env(), "noiseKdf(n 1..3, ck 32, input)");
  uint8_t out[96];
  noise::kdf(out, int(n), ck, in, info[2].As<Napi::Buffer<uint8_t>>().Length());
  Napi::Value v = Copy(info.Env(), out, 32 * n);
  secure_zero(out, sizeof(out));
  return v;
}

// The cookie macs of a create step from its last two arguments, info[i] = mac1Key (32 bytes) or null and
// info[i + 1] = cookie (16 bytes) or null; *use is false when mac1Key is null (the macs stay zero). False on
// any other type or length.
bool GetMacKeys(const Napi::CallbackInfo& info, size_t i, noise::MacKeys* keys, bool* use) {
  keys->mac1_key = nullptr;
  keys->cookie = nullptr;
  *use = !info[i].IsNull() && !info[i].IsUndefined();
  if (*use && !GetBytes(info[i], 32, &keys->mac1_key)) return false;
  return info[i + 1].IsNull() || info[i + 1].IsUndefined() || (*use && GetBytes(info[i + 1], 16, &keys->cookie));
}

// A TAI64N's two numbers: whole seconds in [0, 2^53), nanoseconds in [0, 10^9). A NaN, negative or
// fractional value would wrap in the conversion and move the peer's replay high-water mark.
static bool TimestampParts(const Napi::Value& s, const Napi::Value& ns) {
  if (!s.IsNumber() || !ns.IsNumber()) return false;
  const double sec = s.As<Napi::Number>().DoubleValue(), nano = ns.As<Napi::Number>().DoubleValue();
  return sec >= 0 && sec < 9007199254740992.0 && sec == static_cast<double>(static_cast<int64_t>(sec)) && nano >= 0 &&
         nano < 1e9 && nano == static_cast<double>(static_cast<uint32_t>(nano));
}

// noiseCreateInitiation(out 244, sender, h0, remoteStatic, localPublic, ss, tsSeconds, tsNanos, mac1Key | null,
// cookie | null): the TAI64N timestamp is built here from its two (already whitened) numbers.
Napi::Value NoiseCreateInitiation(const Napi::CallbackInfo& info) {
  const uint8_t *h0, *rs, *lp, *ss;
  uint8_t* dst;
  noise::MacKeys macs;
  bool use_macs;
  if (!OutStruct<noise::InitiationOut>(info[0], &dst) || !info[1].IsNumber() || !GetBytes(info[2], 32, &h0) ||
      !GetBytes(info[3], 32, &rs) || !GetBytes(info[4], 32, &lp) || !GetBytes(info[5], 32, &ss) ||
      !TimestampParts(info[6], info[7]) || !GetMacKeys(info, 8, &macs, &use_macs))
    return ThrowType(info.Env(),
                     "noiseCreateInitiation(out 244, sender, h0 32, remoteStatic 32, localPublic 32, ss 32, tsSeconds, "
                     "tsNanos, mac1Key 32 | null, cookie 16 | null)");
  uint8_t ts[noise::kTimestampLen];
  noise::tai64n(ts, info[6].As<Napi::Number>().Int64Value(), info[7].As<Napi::Number>().Uint32Value());
  noise::InitiationOut out;
  noise::Fail f = noise::create_initiation(&out, info[1].As<Napi::Number>().Uint32Value(), h0, rs, lp, ss, ts,
                                           use_macs ? &macs : nullptr);
  return StepDone(info.Env(), f, &out, dst);
}

// noiseConsumeInitiationStatic(out 96, localPriv, h0, msg 148)
Napi::Value NoiseConsumeInitiationStatic(const Napi::CallbackInfo& info) {
  const uint8_t *sk, *h0, *msg;
  uint8_t* dst;
  if (!OutStruct<noise::InitiationStaticOut>(info[0], &dst) || !GetBytes(info[1], 32, &sk) ||
      !GetBytes(info[2], 32, &h0) || !GetBytes(info[3], noise::kInitiationSize, &msg))
    return ThrowType(info.Env(), "noiseConsumeInitiationStatic(out 96, localPriv 32, h0 32, msg 148)");
  noise::InitiationStaticOut out;
  return StepDone(info.Env(), noise::consume_initiation_static(&out, sk, h0, msg), &out, dst);
}

// noiseConsumeInitiationTimestamp(out 76, h, ck, ss, msg 148)
Napi::Value NoiseConsumeInitiationTimestamp(const Napi::CallbackInfo& info) {
  const uint8_t *h, *ck, *ss, *msg;
  uint8_t* dst;
  if (!OutStruct<noise::InitiationTimestampOut>(info[0], &dst) || !GetBytes(info[1], 32, &h) ||
      !GetBytes(info[2], 32, &ck) || !GetBytes(info[3], 32, &ss) || !GetBytes(info[4], noise::kInitiationSize, &msg))
    return ThrowType(info.Env(), "noiseConsumeInitiationTimestamp(out 76, h 32, ck 32, ss 32, msg 148)");
  noise::InitiationTimestampOut out;
  return StepDone(info.Env(), noise::consume_initiation_timestamp(&out, h, ck, ss, msg), &out, dst);
}

// noiseCreateResponse(out 252: msg | h | ck | ephPriv | τ1 | τ2, sender, receiver, h, ck, remoteEphemeral, remoteStatic, psk,
// mac1Key | null, cookie | null)
Napi::Value NoiseCreateResponse(const Napi::CallbackInfo& info) {
  const uint8_t *h, *ck, *re, *rs, *psk;
  uint8_t* dst;
  noise::MacKeys macs;
  bool use_macs;
  if (!OutStruct<noise::ResponseOut>(info[0], &dst) || !info[1].IsNumber() || !info[2].IsNumber() ||
      !GetBytes(info[3], 32, &h) || !GetBytes(info[4], 32, &ck) || !GetBytes(info[5], 32, &re) ||
      !GetBytes(info[6], 32, &rs) || !GetBytes(info[7], 32, &psk) || !GetMacKeys(info, 8, &macs, &use_macs))
    return ThrowType(info.Env(),
                     "noiseCreateResponse(out 252, sender, receiver, h 32, ck 32, remoteEphemeral 32, remoteStatic 32, "
                     "psk 32, mac1Key 32 | null, cookie 16 | null)");
  noise::ResponseOut out;
  noise::Fail f = noise::create_response(&out, info[1].As<Napi::Number>().Uint32Value(),
                                         info[2].As<Napi::Number>().Uint32Value(), h, ck, re, rs, psk,
                                         use_macs ? &macs : nullptr);
  return StepDone(info.Env(), f, &out, dst);
}

// noiseConsumeResponse(out 128: h | ck | τ1 | τ2, h, ck, ephPriv, localPriv, psk, msg 92)
Napi::Value NoiseConsumeResponse(const Napi::CallbackInfo& info) {
  struct StepOut {
    uint8_t h[32];
    uint8_t ck[32];
    uint8_t keys[64];
  };
  const uint8_t *h, *ck, *ep, *sk, *psk, *msg;
  uint8_t* dst;
  if (!OutStruct<StepOut>(info[0], &dst) || !GetBytes(info[1], 32, &h) || !GetBytes(info[2], 32, &ck) ||
      !GetBytes(info[3], 32, &ep) || !GetBytes(info[4], 32, &sk) || !GetBytes(info[5], 32, &psk) ||
      !GetBytes(info[6], noise::kResponseSize, &msg))
    return ThrowType(info.Env(), "noiseConsumeResponse(out 128, h 32, ck 32, ephPriv 32, localPriv 32, psk 32, msg 92)");
  StepOut out;
  return StepDone(info.Env(), noise::consume_response(out.h, out.ck, out.keys, h, ck, ep, sk, psk, msg), &out, dst);
}

Napi::Value NowMs(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(monotonic_ms())); }

}  // namespace

void RegisterCrypto(Napi::Env env, Napi::Object exports) {
  exports.Set("blake2s", Napi::Function::New(env, Blake2s));
  exports.Set("aead", Napi::Function::New(env, Aead));
  exports.Set("nowMs", Napi::Function::New(env, NowMs));
  exports.Set("x25519", Napi::Function::New(env, X25519));
  exports.Set("x25519Public", Napi::Function::New(env, X25519Public));
  exports.Set("noiseKdf", Napi::Function::New(env, NoiseKdf));
  exports.Set("noiseCreateInitiation", Napi::Function::New(env, NoiseCreateInitiation));
  exports.Set("noiseConsumeInitiationStatic", Napi::Function::New(env, NoiseConsumeInitiationStatic));
  exports.Set("noiseConsumeInitiationTimestamp", Napi::Function::New(env, NoiseConsumeInitiationTimestamp));
  exports.Set("noiseCreateResponse", Napi::Function::New(env, NoiseCreateResponse));
  exports.Set("noiseConsumeResponse", Napi::Function::New(env, NoiseConsumeResponse));
}

}  // namespace addon
}  // namespace wm

// The primitives the TypeScript handshake (src/wireguard/crypto.ts) calls, and the device's clock.
#include <vector>

#include "../crypto/aead.h"
#include "../crypto/blake2s.h"
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

Napi::Value NowMs(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(monotonic_ms())); }

}  // namespace

void RegisterCrypto(Napi::Env env, Napi::Object exports) {
  exports.Set("blake2s", Napi::Function::New(env, Blake2s));
  exports.Set("aead", Napi::Function::New(env, Aead));
  exports.Set("nowMs", Napi::Function::New(env, NowMs));
  exports.Set("x25519", Napi::Function::New(env, X25519));
  exports.Set("x25519Public", Napi::Function::New(env, X25519Public));
}

}  // namespace addon
}  // namespace wm

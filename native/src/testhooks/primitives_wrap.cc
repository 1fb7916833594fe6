// Data-path pieces wrapped one by one for the unit tests (test/unit): never in the product addon.
#include <vector>

#include "../addon/util.h"
#include "../crypto/chacha.h"
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
                        InstanceMethod("walk", &AllowedIPsWrap::Walk)});
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
  // The whole prefix list (a full walk of the trie): the churn benchmark's anchor.
  Napi::Value Walk(const Napi::CallbackInfo& info) {
    std::vector<AllowedIPs::Entry> out;
    t_.entries(&out);
    return Napi::Number::New(info.Env(), double(out.size()));
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
  exports.Set("splitPacket", Napi::Function::New(env, SplitPacket));
  exports.Set("coalesce", Napi::Function::New(env, Coalesce));
  exports.Set("ReplayFilter", ReplayFilterWrap::Init(env));
  exports.Set("RateLimiter", RateLimiterWrap::Init(env));
  exports.Set("AllowedIPs", AllowedIPsWrap::Init(env));
  exports.Set("CookieChecker", CookieCheckerWrap::Init(env));
}

}  // namespace testhooks
}  // namespace wm

// Node-API surface of the native data path. Everything here runs on the
// JavaScript thread; the packet threads live in wireguard/device.cc and talk
// back only through the event queue drained by the thread-safe function below.
#include <napi.h>
#include <sys/prctl.h>

#include <atomic>
#include <cstring>

#include "crypto/aead.h"
#include "crypto/blake2s.h"
#include "crypto/chacha.h"
#include "crypto/x25519.h"
#include "net/delayline.h"
#include "net/offload.h"
#include "wireguard/allowedips.h"
#include "wireguard/cookie.h"
#include "policy/bench.h"
#include "proxy/lookup.h"
#include "proxy/proxy.h"
#include "wireguard/device.h"
#include "wireguard/messages.h"
#include "wireguard/ratelimiter.h"
#include "wireguard/replay.h"

namespace {

using wm::Endpoint;

Napi::Value ThrowType(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool GetBytes(const Napi::Value& v, size_t want, const uint8_t** out) {
  if (!v.IsBuffer()) return false;
  auto b = v.As<Napi::Buffer<uint8_t>>();
  if (want && b.Length() != want) return false;
  *out = b.Data();
  return true;
}

Napi::Buffer<uint8_t> Copy(Napi::Env env, const uint8_t* p, size_t n) { return Napi::Buffer<uint8_t>::Copy(env, p, n); }

// ---- primitives exposed for the handshake code and for tests ---------------

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
  wm::blake2s(out, outlen, data.Data(), data.Length(), key, keylen);
  return Copy(env, out, outlen);
}

Napi::Value HChaCha20(const Napi::CallbackInfo& info) {
  const uint8_t *key, *nonce;
  if (!GetBytes(info[0], 32, &key) || !GetBytes(info[1], 16, &nonce))
    return ThrowType(info.Env(), "hchacha20(key 32 bytes, nonce 16 bytes)");
  uint8_t out[32];
  wm::hchacha20(out, key, nonce);
  return Copy(info.Env(), out, 32);
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
  if (!seal && data.Length() < wm::kAeadTagSize) return env.Null();
  size_t outlen = seal ? data.Length() + wm::kAeadTagSize : data.Length() - wm::kAeadTagSize;
  std::vector<uint8_t> out(outlen + wm::kAeadTagSize);
  bool ok;
  if (x) {
    ok = seal ? wm::xchacha_seal(key, nonce, data.Data(), data.Length(), aad, aadlen, out.data())
              : wm::xchacha_open(key, nonce, data.Data(), outlen, aad, aadlen, out.data());
  } else {
    wm::ChaChaPoly c(key, seal);
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
  if (!wm::x25519(out, sk, pk)) return info.Env().Null();
  return Copy(info.Env(), out, 32);
}

Napi::Value X25519Public(const Napi::CallbackInfo& info) {
  const uint8_t* sk;
  if (!GetBytes(info[0], 32, &sk)) return ThrowType(info.Env(), "x25519Public(priv 32)");
  uint8_t out[32];
  if (!wm::x25519_public(out, sk)) return info.Env().Null();
  return Copy(info.Env(), out, 32);
}

Napi::Value NowMs(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(wm::monotonic_ms())); }

Napi::Value ClassifyMessage(const Napi::CallbackInfo& info) {
  if (!info[0].IsBuffer()) return ThrowType(info.Env(), "classifyMessage(buffer)");
  auto b = info[0].As<Napi::Buffer<uint8_t>>();
  return Napi::Number::New(info.Env(), wm::classify_message(b.Data(), b.Length()));
}

// splitPacket(vnetHdr: Buffer|null, packet: Buffer) -> Buffer[] | null
Napi::Value SplitPacket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  wm::VnetHdr h;
  if (info[0].IsBuffer()) {
    auto hb = info[0].As<Napi::Buffer<uint8_t>>();
    if (hb.Length() != wm::kVnetHdrSize) return ThrowType(env, "vnet header must be 10 bytes");
    wm::vnet_decode(hb.Data(), &h);
  }
  if (!info[1].IsBuffer()) return ThrowType(env, "splitPacket(vnetHdr, packet)");
  auto pkt = info[1].As<Napi::Buffer<uint8_t>>();
  size_t seg = wm::max_segment_size(h, pkt.Data(), pkt.Length());
  if (seg == 0) return env.Null();
  std::vector<uint8_t> out(seg * 1024);
  std::vector<size_t> lens(1024);
  int n = wm::split_packet(h, pkt.Data(), pkt.Length(), out.data(), seg, lens.data(), 1024);
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
  wm::Coalescer c(1024);
  for (auto& p : pkts) c.add(p.data(), p.size());
  const auto& items = c.finish();
  Napi::Array arr = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("vnet", Copy(env, items[i].vnet, wm::kVnetHdrSize));
    o.Set("data", Copy(env, items[i].data, items[i].len));
    arr.Set(uint32_t(i), o);
  }
  return arr;
}

// ---- small native classes wrapped for unit tests ----------------------------

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
  wm::ReplayFilter filter_;
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
  wm::RateLimiter rl_;
};

class AllowedIPsWrap : public Napi::ObjectWrap<AllowedIPsWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "AllowedIPs",
                       {InstanceMethod("insert", &AllowedIPsWrap::Insert),
                        InstanceMethod("removePeer", &AllowedIPsWrap::RemovePeer),
                        InstanceMethod("lookup", &AllowedIPsWrap::Lookup),
                        InstanceMethod("size", &AllowedIPsWrap::Size)});
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
    return Napi::Number::New(info.Env(), p == wm::AllowedIPs::kNoPeer ? -1.0 : double(p));
  }
  Napi::Value Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(t_.size())); }
  wm::AllowedIPs t_;
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
  wm::CookieChecker c_;
};

// ---- the device --------------------------------------------------------------

bool ParseEndpoint(const Napi::Value& host, const Napi::Value& port, Endpoint* ep) {
  if (!host.IsString() || !port.IsNumber()) return false;
  return Endpoint::parse(host.As<Napi::String>().Utf8Value(), port.As<Napi::Number>().Int32Value(), ep);
}

bool ParseFrontend(const uint8_t* r, wm::Frontend* fe) {
  std::memset(fe, 0, sizeof *fe);
  fe->family = r[0];
  fe->proto = r[1];
  fe->port = uint16_t(r[2] | (r[3] << 8));
  if ((fe->family != 4 && fe->family != 6) || (fe->proto != wm::kProtoTCP && fe->proto != wm::kProtoUDP) || fe->port == 0)
    return false;
  std::memcpy(fe->addr, r + 4, fe->family == 4 ? 4 : 16);
  return true;
}

bool ParseBackends(const Napi::Value& v, std::vector<wm::BackendKey>* keys, std::vector<uint32_t>* weights) {
  if (!v.IsBuffer()) return false;
  auto b = v.As<Napi::Buffer<uint8_t>>();
  if (b.Length() % 24) return false;
  for (size_t off = 0; off < b.Length(); off += 24) {
    const uint8_t* r = b.Data() + off;
    wm::BackendKey k;
    std::memset(&k, 0, sizeof k);
    k.family = r[0];
    k.port = uint16_t(r[2] | (r[3] << 8));
    if ((k.family != 4 && k.family != 6) || k.port == 0) return false;
    std::memcpy(k.addr, r + 8, k.family == 4 ? 4 : 16);
    keys->push_back(k);
    weights->push_back(wm::le32(r + 4));
  }
  return true;
}

bool ParseService(const Napi::CallbackInfo& info, wm::LbService* svc, std::string* err) {
  *err = "serviceUpsert(id, m: prime 3..1048573, frontends: Buffer of 20-byte rows, backends: Buffer of 24-byte rows)";
  if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsBuffer()) return false;
  svc->id = info[0].As<Napi::Number>().Uint32Value();
  svc->m = info[1].As<Napi::Number>().Uint32Value();
  if (svc->m < 3 || svc->m > 1048573 || !wm::is_prime(svc->m)) return false;
  auto f = info[2].As<Napi::Buffer<uint8_t>>();
  if (f.Length() % 20) return false;
  for (size_t off = 0; off < f.Length(); off += 20) {
    wm::Frontend fe;
    if (!ParseFrontend(f.Data() + off, &fe)) {
      *err = "frontend row: family must be 4 or 6, protocol TCP (6) or UDP (17), port 1..65535";
      return false;
    }
    svc->frontends.push_back(fe);
  }
  if (!ParseBackends(info[3], &svc->backends, &svc->weights)) {
    *err = "backend rows are 24 bytes: family 4|6, port 1..65535";
    return false;
  }
  return true;
}

Napi::Object BackendObject(Napi::Env env, const wm::BackendKey& b) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("address", Napi::Buffer<uint8_t>::Copy(env, b.addr, b.family == 4 ? 4 : 16));
  o.Set("port", double(b.port));
  return o;
}

class DeviceWrap : public Napi::ObjectWrap<DeviceWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(
        env, "Device",
        {InstanceMethod("start", &DeviceWrap::Start), InstanceMethod("close", &DeviceWrap::Close),
         InstanceAccessor("tunName", &DeviceWrap::TunName, nullptr),
         InstanceAccessor("port", &DeviceWrap::Port, nullptr), InstanceAccessor("gso", &DeviceWrap::Gso, nullptr),
         InstanceMethod("setMtu", &DeviceWrap::SetMtu), InstanceMethod("rebind", &DeviceWrap::Rebind),
         InstanceMethod("setFwmark", &DeviceWrap::SetFwmark), InstanceMethod("setPublicKey", &DeviceWrap::SetPublicKey),
         InstanceMethod("upsertPeer", &DeviceWrap::UpsertPeer), InstanceMethod("removePeer", &DeviceWrap::RemovePeer),
         InstanceMethod("setEndpoint", &DeviceWrap::SetEndpoint),
         InstanceMethod("setAllowedIPs", &DeviceWrap::SetAllowedIPs),
         InstanceMethod("installKeypair", &DeviceWrap::InstallKeypair),
         InstanceMethod("clearKeypairs", &DeviceWrap::ClearKeypairs),
         InstanceMethod("sendKeepalive", &DeviceWrap::SendKeepalive),
         InstanceMethod("flushStaged", &DeviceWrap::FlushStaged),
         InstanceMethod("refreshMtu", &DeviceWrap::RefreshMtu),
         InstanceMethod("sendHandshake", &DeviceWrap::SendHandshake),
         InstanceMethod("peerStats", &DeviceWrap::PeerStats), InstanceMethod("counters", &DeviceWrap::Counters),
         InstanceMethod("enablePolicy", &DeviceWrap::EnablePolicy),
         InstanceMethod("setPeerIdentity", &DeviceWrap::SetPeerIdentity),
         InstanceMethod("ipcacheUpdate", &DeviceWrap::IpcacheUpdate),
         InstanceMethod("ipcacheLookup", &DeviceWrap::IpcacheLookup),
         InstanceMethod("setEndpointPolicy", &DeviceWrap::SetEndpointPolicy),
         InstanceMethod("removeEndpoint", &DeviceWrap::RemoveEndpoint),
         InstanceMethod("drainFlows", &DeviceWrap::DrainFlows), InstanceMethod("ctGc", &DeviceWrap::CtGc),
         InstanceMethod("policyCheck", &DeviceWrap::PolicyCheck),
         InstanceMethod("setConntrackLimits", &DeviceWrap::SetConntrackLimits),
         InstanceMethod("setHostFirewall", &DeviceWrap::SetHostFirewall),
         InstanceMethod("ctEndpointEntries", &DeviceWrap::CtEndpointEntries),
         InstanceMethod("probe", &DeviceWrap::Probe), InstanceMethod("serviceUpsert", &DeviceWrap::ServiceUpsert),
         InstanceMethod("serviceRemove", &DeviceWrap::ServiceRemove),
         InstanceMethod("servicePick", &DeviceWrap::ServicePick),
         InstanceMethod("serviceNat", &DeviceWrap::ServiceNat), InstanceMethod("setProxy", &DeviceWrap::SetProxy),
         InstanceMethod("proxyOriginal", &DeviceWrap::ProxyOriginal)});
  }

  explicit DeviceWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      Napi::TypeError::New(env, "Device(options)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    wm::Device::Options opts;
    if (o.Has("tunName") && o.Get("tunName").IsString()) opts.tun_name = o.Get("tunName").As<Napi::String>();
    if (o.Has("createTun")) opts.create_tun = o.Get("createTun").ToBoolean();
    if (o.Has("vnetHdr")) opts.vnet_hdr = o.Get("vnetHdr").ToBoolean();
    if (o.Has("mtu") && o.Get("mtu").IsNumber()) opts.mtu = o.Get("mtu").As<Napi::Number>().Int32Value();
    if (o.Has("port") && o.Get("port").IsNumber()) opts.port = o.Get("port").As<Napi::Number>().Int32Value();
    if (o.Has("fwmark") && o.Get("fwmark").IsNumber()) opts.fwmark = o.Get("fwmark").As<Napi::Number>().Uint32Value();
    std::string err;
    if (!dev_.open(opts, &err)) {
      Napi::Error e = Napi::Error::New(env, err);
      e.Set("code", Napi::String::New(env, "WM_DEVICE_OPEN"));
      e.ThrowAsJavaScriptException();
    }
  }

  ~DeviceWrap() { dev_.stop(); }
  wm::Device& device() { return dev_; }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsFunction()) return ThrowType(env, "start(onEvents)");
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "wiremesh-events", 0, 1);
    tsfn_.Unref(env);  // the device does not keep the process alive by itself
    started_ = true;
    dev_.start([this] {
      if (!notify_pending_.exchange(true)) tsfn_.NonBlockingCall([this](Napi::Env env, Napi::Function cb) {
        notify_pending_.store(false);
        Deliver(env, cb);
      });
    });
    return env.Undefined();
  }

  void Deliver(Napi::Env env, Napi::Function cb) {
    std::vector<wm::Event> events;
    dev_.drain_events(&events);
    if (events.empty()) return;
    Napi::Array arr = Napi::Array::New(env, events.size());
    for (size_t i = 0; i < events.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      const wm::Event& e = events[i];
      o.Set("kind", Napi::Number::New(env, e.kind));
      o.Set("peer", Napi::Number::New(env, e.peer));
      if (e.kind == wm::kEventHandshakeMessage) {
        o.Set("data", Copy(env, e.data.data(), e.data.size()));
        o.Set("host", Napi::String::New(env, e.from.ip_string()));
        o.Set("port", Napi::Number::New(env, e.from.port()));
      }
      arr.Set(uint32_t(i), o);
    }
    cb.Call({arr});
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    dev_.stop();
    if (started_) {
      tsfn_.Release();
      started_ = false;
    }
    return info.Env().Undefined();
  }
  Napi::Value TunName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dev_.tun_name()); }
  Napi::Value Port(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), dev_.port()); }
  Napi::Value Gso(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), dev_.gso()); }
  Napi::Value SetMtu(const Napi::CallbackInfo& info) {
    dev_.set_mtu(info[0].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
  }
  Napi::Value Rebind(const Napi::CallbackInfo& info) {
    std::string err;
    if (!dev_.rebind(info[0].As<Napi::Number>().Int32Value(), &err)) {
      Napi::Error e = Napi::Error::New(info.Env(), err);
      e.Set("code", Napi::String::New(info.Env(), "WM_PORT_IN_USE"));
      e.ThrowAsJavaScriptException();
    }
    return info.Env().Undefined();
  }
  Napi::Value SetFwmark(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), dev_.set_fwmark(info[0].As<Napi::Number>().Uint32Value()));
  }
  Napi::Value SetPublicKey(const Napi::CallbackInfo& info) {
    const uint8_t* k;
    if (!GetBytes(info[0], 32, &k)) return ThrowType(info.Env(), "public key must be 32 bytes");
    dev_.set_public_key(k);
    return info.Env().Undefined();
  }
  Napi::Value UpsertPeer(const Napi::CallbackInfo& info) {
    dev_.upsert_peer(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }
  Napi::Value RemovePeer(const Napi::CallbackInfo& info) {
    dev_.remove_peer(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }
  Napi::Value SetEndpoint(const Napi::CallbackInfo& info) {
    Endpoint ep;
    if (!info[1].IsNull() && !ParseEndpoint(info[1], info[2], &ep))
      return ThrowType(info.Env(), "setEndpoint(peer, host, port): bad address");
    dev_.set_endpoint(info[0].As<Napi::Number>().Uint32Value(), ep);
    return info.Env().Undefined();
  }
  // setAllowedIPs(peer, [[addrBuffer, cidr], ...])
  Napi::Value SetAllowedIPs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[1].IsArray()) return ThrowType(env, "setAllowedIPs(peer, prefixes[])");
    Napi::Array a = info[1].As<Napi::Array>();
    std::vector<wm::AllowedIPs::Entry> prefixes;
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Array pair = a.Get(i).As<Napi::Array>();
      auto addr = pair.Get(uint32_t(0)).As<Napi::Buffer<uint8_t>>();
      wm::AllowedIPs::Entry e;
      std::memset(e.addr, 0, 16);
      if (addr.Length() != 4 && addr.Length() != 16) return ThrowType(env, "prefix address must be 4 or 16 bytes");
      std::memcpy(e.addr, addr.Data(), addr.Length());
      e.family_bytes = int(addr.Length());
      e.cidr = pair.Get(uint32_t(1)).As<Napi::Number>().Int32Value();
      e.peer = 0;
      prefixes.push_back(e);
    }
    dev_.set_allowed_ips(info[0].As<Napi::Number>().Uint32Value(), prefixes);
    return env.Undefined();
  }
  // installKeypair(peer, localIndex, remoteIndex, sendKey, recvKey, initiator)
  Napi::Value InstallKeypair(const Napi::CallbackInfo& info) {
    const uint8_t *sk, *rk;
    if (!GetBytes(info[3], 32, &sk) || !GetBytes(info[4], 32, &rk)) return ThrowType(info.Env(), "keys must be 32 bytes");
    bool ok = dev_.install_keypair(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Uint32Value(),
                                   info[2].As<Napi::Number>().Uint32Value(), sk, rk, info[5].ToBoolean());
    return Napi::Boolean::New(info.Env(), ok);
  }
  Napi::Value ClearKeypairs(const Napi::CallbackInfo& info) {
    dev_.clear_keypairs(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }
  Napi::Value SendKeepalive(const Napi::CallbackInfo& info) {
    dev_.send_keepalive(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }
  Napi::Value FlushStaged(const Napi::CallbackInfo& info) {
    dev_.flush_staged(info[0].As<Napi::Number>().Uint32Value(), info[1].ToBoolean());
    return info.Env().Undefined();
  }
  Napi::Value RefreshMtu(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), dev_.refresh_mtu()); }
  Napi::Value SendHandshake(const Napi::CallbackInfo& info) {
    Endpoint ep;
    if (!ParseEndpoint(info[0], info[1], &ep) || !info[2].IsBuffer())
      return ThrowType(info.Env(), "sendHandshake(host, port, message)");
    auto b = info[2].As<Napi::Buffer<uint8_t>>();
    return Napi::Boolean::New(info.Env(), dev_.send_handshake(ep, b.Data(), b.Length()));
  }
  Napi::Value PeerStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<wm::PeerStats> stats;
    dev_.peer_stats(&stats, info.Length() > 0 && info[0].ToBoolean());
    Napi::Array arr = Napi::Array::New(env, stats.size());
    for (size_t i = 0; i < stats.size(); i++) {
      const auto& s = stats[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("id", double(s.id));
      o.Set("rxBytes", double(s.rx_bytes));
      o.Set("txBytes", double(s.tx_bytes));
      o.Set("rxPackets", double(s.rx_packets));
      o.Set("txPackets", double(s.tx_packets));
      o.Set("lastDataSentMs", double(s.last_data_sent_ms));
      o.Set("lastDataRecvMs", double(s.last_data_recv_ms));
      o.Set("lastAuthSentMs", double(s.last_auth_sent_ms));
      o.Set("lastAuthRecvMs", double(s.last_auth_recv_ms));
      o.Set("sentUnansweredMs", double(s.sent_unanswered_ms));
      o.Set("recvUnansweredMs", double(s.recv_unanswered_ms));
      o.Set("hasCurrent", s.has_current);
      o.Set("currentInitiator", s.current_initiator);
      o.Set("currentAgeMs", double(s.current_age_ms));
      o.Set("hasNext", s.has_next);
      o.Set("lastProbeReplyMs", double(s.last_probe_reply_ms));
      o.Set("probeRttUs", double(s.probe_rtt_us));
      o.Set("probesSent", double(s.probes_sent));
      o.Set("probeReplies", double(s.probe_replies));
      if (s.endpoint.valid()) {
        o.Set("host", s.endpoint.ip_string());
        o.Set("port", double(s.endpoint.port()));
      }
      arr.Set(uint32_t(i), o);
    }
    return arr;
  }
  Napi::Value Counters(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    for (int i = 0; i < wm::kCounterCount; i++) o.Set(wm::kCounterNames[i], double(dev_.counter(i)));
    if (wm::PolicyEngine* pe = dev_.policy()) {
      for (int i = 0; i < wm::kPolCounterCount; i++) o.Set(wm::kPolicyCounterNames[i], double(pe->counter(i)));
      o.Set("conntrack_entries", double(pe->ct_size()));
      for (int i = 0; i < wm::Conntrack::kCounterCount; i++) o.Set(wm::Conntrack::kCounterNames[i], double(pe->ct_counter(i)));
      o.Set("ipcache_entries", double(pe->ipcache_size()));
    }
    if (wm::LoadBalancer* lb = dev_.lb()) {
      for (int i = 0; i < wm::kLbCounterCount; i++) o.Set(wm::kLbCounterNames[i], double(lb->counter(i)));
      o.Set("service_nat_entries", double(lb->nat_size()));
      o.Set("service_nat_endpoint_max_entries", double(lb->nat_client_max()));    // the client holding most, now
      o.Set("service_nat_endpoint_peak_entries", double(lb->nat_client_peak()));  // the most one client held since start
    }
    return o;
  }

  // ---- mesh mode: identities and policy (src/agent/datapath.ts drives these)

  wm::PolicyEngine* Engine(Napi::Env env) {
    wm::PolicyEngine* pe = dev_.policy();
    if (!pe) {
      Napi::Error e = Napi::Error::New(env, "policy is not enabled on this device (enablePolicy())");
      e.Set("code", Napi::String::New(env, "WM_POLICY_DISABLED"));
      e.ThrowAsJavaScriptException();
    }
    return pe;
  }
  Napi::Value EnablePolicy(const Napi::CallbackInfo& info) {
    dev_.enable_policy();
    return info.Env().Undefined();
  }
  // setPeerIdentity(peer, tagged, defaultIdentity, clusterIds[])
  Napi::Value SetPeerIdentity(const Napi::CallbackInfo& info) {
    if (!info[3].IsArray()) return ThrowType(info.Env(), "setPeerIdentity(peer, tagged, defaultIdentity, clusters[])");
    Napi::Array a = info[3].As<Napi::Array>();
    std::vector<uint8_t> clusters;
    for (uint32_t i = 0; i < a.Length(); i++) clusters.push_back(uint8_t(a.Get(i).As<Napi::Number>().Uint32Value()));
    dev_.set_peer_identity(info[0].As<Napi::Number>().Uint32Value(), info[1].ToBoolean(),
                           info[2].As<Napi::Number>().Uint32Value(), clusters);
    return info.Env().Undefined();
  }
  // ipcacheUpdate(upserts, removes): rows of 28 bytes, little-endian:
  // family (4|16) u8, prefix length u8, 2 reserved, identity u32, endpoint u32, address[16].
  Napi::Value IpcacheUpdate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    wm::PolicyEngine* pe = Engine(env);
    if (!pe) return env.Undefined();
    for (int arg = 0; arg < 2; arg++) {
      if (!info[arg].IsBuffer()) return ThrowType(env, "ipcacheUpdate(upserts: Buffer, removes: Buffer)");
      auto b = info[arg].As<Napi::Buffer<uint8_t>>();
      if (b.Length() % 28) return ThrowType(env, "ipcache rows are 28 bytes");
      for (size_t off = 0; off < b.Length(); off += 28) {
        const uint8_t* r = b.Data() + off;
        int fam = r[0], cidr = r[1];
        if ((fam != 4 && fam != 16) || cidr > fam * 8) return ThrowType(env, "ipcache row: bad family or prefix length");
        if (arg == 0)
          pe->ipcache_upsert(r + 12, fam, cidr, wm::IpcacheValue{wm::le32(r + 4), wm::le32(r + 8)});
        else
          pe->ipcache_remove(r + 12, fam, cidr);
      }
    }
    return env.Undefined();
  }
  Napi::Value IpcacheLookup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    wm::PolicyEngine* pe = Engine(env);
    if (!pe) return env.Undefined();
    if (!info[0].IsBuffer()) return ThrowType(env, "ipcacheLookup(address: Buffer)");
    auto b = info[0].As<Napi::Buffer<uint8_t>>();
    if (b.Length() != 4 && b.Length() != 16) return ThrowType(env, "address must be 4 or 16 bytes");
    wm::IpcacheValue v;
    if (!pe->ipcache_lookup(b.Data(), int(b.Length()), &v)) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    o.Set("identity", double(v.identity));
    o.Set("endpoint", double(v.endpoint));
    return o;
  }
  // Policy entry rows of 16 bytes: identity u32, proto u8, deny u8, port_lo u16,
  // port_hi u16, 2 reserved, rule u32 (little-endian).
  static bool ParsePolicyMap(const Napi::Value& v, std::shared_ptr<const wm::PolicyMap>* out) {
    if (v.IsNull() || v.IsUndefined()) return true;
    if (!v.IsBuffer()) return false;
    auto b = v.As<Napi::Buffer<uint8_t>>();
    if (b.Length() % 16) return false;
    std::vector<wm::PolicyEntry> entries(b.Length() / 16);
    for (size_t i = 0; i < entries.size(); i++) {
      const uint8_t* r = b.Data() + i * 16;
      wm::PolicyEntry& e = entries[i];
      e.identity = wm::le32(r);
      e.proto = r[4];
      e.action = r[5];
      if (e.action > wm::kActionRedirect) return false;
      e.port_lo = uint16_t(r[6] | (r[7] << 8));
      e.port_hi = uint16_t(r[8] | (r[9] << 8));
      e.rule = wm::le32(r + 12);
      if (e.port_hi < e.port_lo) return false;
    }
    *out = std::make_shared<const wm::PolicyMap>(std::move(entries));
    return true;
  }
  // setEndpointPolicy(endpointId, identity, ingress: Buffer | null, egress: Buffer | null)
  Napi::Value SetEndpointPolicy(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    wm::PolicyEngine* pe = Engine(env);
    if (!pe) return env.Undefined();
    std::shared_ptr<const wm::PolicyMap> in, eg;
    if (!ParsePolicyMap(info[2], &in) || !ParsePolicyMap(info[3], &eg))
      return ThrowType(env, "policy maps are null or Buffers of 16-byte rows with port_lo <= port_hi");
    pe->set_endpoint(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Uint32Value(), std::move(in),
                     std::move(eg));
    return env.Undefined();
  }
  Napi::Value RemoveEndpoint(const Napi::CallbackInfo& info) {
    wm::PolicyEngine* pe = Engine(info.Env());
    if (pe) pe->remove_endpoint(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }
  // drainFlows() -> { records: Buffer (72-byte FlowRecords), lost }
  Napi::Value DrainFlows(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    wm::PolicyEngine* pe = Engine(env);
    if (!pe) return env.Undefined();
    std::vector<wm::FlowRecord> recs;
    uint64_t lost = pe->drain_flows(&recs);
    Napi::Object o = Napi::Object::New(env);
    o.Set("records", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(recs.data()),
                                                 recs.size() * sizeof(wm::FlowRecord)));
    o.Set("lost", double(lost));
    return o;
  }
  // policyCheck(packet: Buffer, srcIdentity?: number) -> the engine's verdict on one
  // IP packet, as the TX thread (no identity: read from the TUN) or the RX
  // thread (from peer 1, tagged with srcIdentity) would take it; 'malformed'
  // when parsing refuses it. For tests and tools: no packet moves.
  Napi::Value PolicyCheck(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    wm::PolicyEngine* pe = Engine(env);
    if (!pe) return env.Undefined();
    if (!info[0].IsBuffer()) return ThrowType(env, "policyCheck(packet: Buffer, srcIdentity?: number)");
    auto b = info[0].As<Napi::Buffer<uint8_t>>();
    wm::IpInfo ip;
    wm::PacketView pv;
    if (!wm::parse_ip(b.Data(), b.Length(), &ip) || !wm::parse_l4(b.Data(), ip, &pv))
      return Napi::String::New(env, "malformed");
    uint64_t wall = uint64_t(wm::monotonic_ms());
    std::shared_lock<std::shared_mutex> lock(pe->mu);
    if (info[1].IsNumber()) {
      static const char* const rx[] = {"drop", "deliver", "redirect"};
      return Napi::String::New(env, rx[pe->rx(pv, info[1].As<Napi::Number>().Uint32Value(), 1, wall)]);
    }
    static const char* const tx[] = {"drop", "forward", "hairpin", "redirect"};
    uint32_t wire = 0;
    return Napi::String::New(env, tx[pe->tx(pv, wall, &wire)]);
  }
  // setConntrackLimits(maxEntries, perEndpoint, natPerEndpoint?): the policy conntrack's bounds; the
  // service NAT table gets maxEntries too (a flow holds two of its entries) and
  // natPerEndpoint per client (default: LoadBalancer::kDefaultPerClient).
  Napi::Value SetConntrackLimits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    wm::PolicyEngine* pe = Engine(env);
    if (!pe) return env.Undefined();
    if (!info[0].IsNumber() || !info[1].IsNumber()) return ThrowType(env, "setConntrackLimits(maxEntries, perEndpoint)");
    int64_t max = info[0].As<Napi::Number>().Int64Value(), per = info[1].As<Napi::Number>().Int64Value();
    if (max < 1 || per < 1) return ThrowType(env, "conntrack limits must be positive");
    int64_t nat_per = info[2].IsNumber() ? info[2].As<Napi::Number>().Int64Value() : int64_t(wm::LoadBalancer::kDefaultPerClient);
    if (nat_per < 2) return ThrowType(env, "natPerEndpoint must be at least 2 (one flow)");
    pe->ct_set_limits(size_t(max), size_t(per));
    dev_.lb()->set_nat_limit(size_t(max), size_t(nat_per));
    return env.Undefined();
  }
  Napi::Value SetHostFirewall(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    wm::PolicyEngine* pe = Engine(env);
    if (pe) pe->set_host_firewall(info[0].ToBoolean());
    return env.Undefined();
  }
  Napi::Value CtEndpointEntries(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    wm::PolicyEngine* pe = Engine(env);
    if (!pe) return env.Undefined();
    return Napi::Number::New(env, double(pe->ct_endpoint_entries(info[0].As<Napi::Number>().Uint32Value())));
  }
  Napi::Value CtGc(const Napi::CallbackInfo& info) {
    wm::PolicyEngine* pe = Engine(info.Env());
    if (!pe) return info.Env().Undefined();
    size_t n = pe->ct_gc() + dev_.lb()->gc(uint32_t(wm::monotonic_ms() / 1000));
    return Napi::Number::New(info.Env(), double(n));
  }

  // ---- mesh mode: services (src/services/datapath.ts drives these)

  // probe(peerIds[]): one liveness probe to each
  Napi::Value Probe(const Napi::CallbackInfo& info) {
    if (!info[0].IsArray()) return ThrowType(info.Env(), "probe(peerIds[])");
    Napi::Array a = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) dev_.probe(a.Get(i).As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }
  // serviceUpsert(id, m, frontends, backends): frontend rows of 20 bytes
  // (family 4|6 u8, protocol u8, port u16 LE, address[16]); backend rows of 24
  // bytes (family u8, reserved u8, port u16 LE, weight u32 LE, address[16]).
  Napi::Value ServiceUpsert(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Engine(env)) return env.Undefined();
    auto svc = std::make_shared<wm::LbService>();
    std::string err;
    if (!ParseService(info, svc.get(), &err)) return ThrowType(env, err);
    dev_.lb()->upsert(std::move(svc));
    return env.Undefined();
  }
  Napi::Value ServiceRemove(const Napi::CallbackInfo& info) {
    if (Engine(info.Env())) dev_.lb()->remove(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }
  // setProxy(address: Buffer(4), port): where redirected flows go (the agent's L7 proxy)
  Napi::Value SetProxy(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const uint8_t* a;
    if (!Engine(env)) return env.Undefined();
    if (!GetBytes(info[0], 4, &a) || !info[1].IsNumber()) return ThrowType(env, "setProxy(address: 4-byte Buffer, port)");
    dev_.lb()->set_proxy(a, uint16_t(info[1].As<Napi::Number>().Uint32Value()));
    return env.Undefined();
  }
  // proxyOriginal(client: Buffer(4), clientPort) -> { address, port, identity } | null
  Napi::Value ProxyOriginal(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const uint8_t* a;
    if (!Engine(env)) return env.Undefined();
    if (!GetBytes(info[0], 4, &a) || !info[1].IsNumber()) return ThrowType(env, "proxyOriginal(client: 4-byte Buffer, port)");
    uint8_t dst[4];
    uint16_t port;
    uint32_t identity;
    if (!dev_.lb()->proxy_original(a, uint16_t(info[1].As<Napi::Number>().Uint32Value()), dst, &port, &identity)) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    o.Set("address", Napi::Buffer<uint8_t>::Copy(env, dst, 4));
    o.Set("port", double(port));
    o.Set("identity", double(identity));
    return o;
  }
  // servicePick(frontendRow: Buffer(20), source: Buffer(4|16), sourcePort) -> { address, port } | null
  Napi::Value ServicePick(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Engine(env)) return env.Undefined();
    wm::Frontend fe;
    if (!info[0].IsBuffer() || info[0].As<Napi::Buffer<uint8_t>>().Length() != 20 || !info[1].IsBuffer() ||
        !ParseFrontend(info[0].As<Napi::Buffer<uint8_t>>().Data(), &fe))
      return ThrowType(env, "servicePick(frontend: 20-byte row, source: Buffer, sourcePort)");
    auto src = info[1].As<Napi::Buffer<uint8_t>>();
    if (src.Length() != (fe.family == 4 ? 4u : 16u)) return ThrowType(env, "source address family differs from the frontend's");
    wm::BackendKey b;
    if (!dev_.lb()->pick(fe, src.Data(), uint16_t(info[2].As<Napi::Number>().Uint32Value()), &b)) return env.Null();
    return BackendObject(env, b);
  }
  // serviceNat(packet, 'forward' | 'reverse', nowS): one packet through the
  // service NAT as the TX thread would (rewritten in place); for tests.
  // Returns 'none' | 'translated' | 'reject' | 'drop'.
  Napi::Value ServiceNat(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Engine(env)) return env.Undefined();
    if (!info[0].IsBuffer() || !info[1].IsString() || !info[2].IsNumber())
      return ThrowType(env, "serviceNat(packet: Buffer, 'forward' | 'reverse', nowS: number)");
    auto b = info[0].As<Napi::Buffer<uint8_t>>();
    wm::IpInfo ip;
    wm::PacketView pv;
    if (!wm::parse_ip(b.Data(), b.Length(), &ip) || !wm::parse_l4(b.Data(), ip, &pv) || !pv.has_ports)
      return Napi::String::New(env, "none");
    uint32_t now_s = info[2].As<Napi::Number>().Uint32Value();
    wm::LoadBalancer* lb = dev_.lb();
    std::shared_lock<std::shared_mutex> lock(lb->mu);
    if (info[1].As<Napi::String>().Utf8Value() == "reverse")
      return Napi::String::New(env, lb->reverse(b.Data(), ip, &pv.sport, pv.dport, pv.tcp_flags, now_s) ? "translated" : "none");
    static const char* const res[] = {"none", "translated", "reject", "drop"};
    return Napi::String::New(env, res[lb->forward(b.Data(), ip, pv.sport, &pv.dport, pv.tcp_flags, now_s)]);
  }

  wm::Device dev_;
  Napi::ThreadSafeFunction tsfn_;
  bool started_ = false;
  std::atomic<bool> notify_pending_{false};
};


// Rule specs from the agent: 'all' | [{ ref, method?, path?, host?, headers?: [{ name, value? }] }]
bool ParseL7Spec(const Napi::Value& v, bool* all, std::vector<wm::HttpRuleSpec>* out, std::string* err) {
  *all = false;
  if (v.IsString()) {
    if (v.As<Napi::String>().Utf8Value() != "all") return *err = "rules: 'all' or an array", false;
    *all = true;
    return true;
  }
  if (!v.IsArray()) return *err = "rules: 'all' or an array", false;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) return *err = "rules[" + std::to_string(i) + "]: an object", false;
    Napi::Object o = e.As<Napi::Object>();
    wm::HttpRuleSpec s;
    s.ref = o.Get("ref").IsNumber() ? o.Get("ref").As<Napi::Number>().Int32Value() : -1;
    for (auto [field, dst] : {std::pair<const char*, std::optional<std::string>*>{"method", &s.method}, {"path", &s.path}, {"host", &s.host}}) {
      Napi::Value f = o.Get(field);
      if (f.IsString()) *dst = f.As<Napi::String>().Utf8Value();
      else if (!f.IsUndefined()) return *err = "rules[" + std::to_string(i) + "]." + field + ": a string", false;
    }
    Napi::Value hs = o.Get("headers");
    if (hs.IsArray()) {
      Napi::Array ha = hs.As<Napi::Array>();
      for (uint32_t k = 0; k < ha.Length(); k++) {
        Napi::Value h = ha.Get(k);
        if (!h.IsObject() || !h.As<Napi::Object>().Get("name").IsString()) return *err = "rules[" + std::to_string(i) + "].headers: { name, value? }", false;
        Napi::Value val = h.As<Napi::Object>().Get("value");
        s.headers.emplace_back(h.As<Napi::Object>().Get("name").As<Napi::String>().Utf8Value(),
                               val.IsString() ? std::optional<std::string>(val.As<Napi::String>().Utf8Value()) : std::nullopt);
      }
    }
    out->push_back(std::move(s));
  }
  return true;
}

Napi::Array Warnings(Napi::Env env, const std::vector<std::string>& w) {
  Napi::Array a = Napi::Array::New(env, w.size());
  for (size_t i = 0; i < w.size(); i++) a.Set(uint32_t(i), Napi::String::New(env, w[i]));
  return a;
}

// new L7Proxy({ address: Buffer(4), port, workers, lookupFds: number[] }, onRuleRequests): the native L7
// proxy, in the proxy process (src/proxy/worker.ts); worker i asks the agent for each accepted flow's
// original destination on lookupFds[i] (proxy/lookup.h).
class L7ProxyWrap : public Napi::ObjectWrap<L7ProxyWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "L7Proxy",
                       {InstanceMethod("takeRequests", &L7ProxyWrap::TakeRequests),
                        InstanceMethod("setRules", &L7ProxyWrap::SetRules),
                        InstanceMethod("invalidate", &L7ProxyWrap::Invalidate),
                        InstanceMethod("drain", &L7ProxyWrap::Drain), InstanceMethod("stats", &L7ProxyWrap::Stats),
                        InstanceMethod("close", &L7ProxyWrap::Close)});
  }
  explicit L7ProxyWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<L7ProxyWrap>(info) {
    Napi::Env env = info.Env();
    const uint8_t* addr;
    const char* usage = "new L7Proxy({ address: 4-byte Buffer, port, workers, lookupFds: one fd per worker }, onRuleRequests)";
    if (!info[0].IsObject() || !info[1].IsFunction() || !GetBytes(info[0].As<Napi::Object>().Get("address"), 4, &addr) ||
        !info[0].As<Napi::Object>().Get("port").IsNumber() || !info[0].As<Napi::Object>().Get("lookupFds").IsArray()) {
      ThrowType(env, usage);
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    uint16_t port = uint16_t(o.Get("port").As<Napi::Number>().Uint32Value());
    int workers = o.Get("workers").IsNumber() ? o.Get("workers").As<Napi::Number>().Int32Value() : 1;
    Napi::Array fda = o.Get("lookupFds").As<Napi::Array>();
    if (workers < 1 || workers > 16 || fda.Length() != uint32_t(workers)) {
      ThrowType(env, usage);
      return;
    }
    auto fds = std::make_shared<std::vector<int>>();
    for (uint32_t i = 0; i < fda.Length(); i++) {
      if (!fda.Get(i).IsNumber()) {
        ThrowType(env, usage);
        return;
      }
      fds->push_back(fda.Get(i).As<Napi::Number>().Int32Value());
    }
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "wiremesh-l7proxy", 0, 1);
    tsfn_.Unref(env);
    have_tsfn_ = true;
    std::string err;
    // One sequence number per worker: each is only touched by its own loop.
    auto seqs = std::make_shared<std::vector<uint32_t>>(fds->size(), 0);
    bool ok = proxy_.start(
        addr, port, workers,
        [fds, seqs](int w, const uint8_t c[4], uint16_t cp, uint8_t dst[4], uint16_t* dp, uint32_t* id) {
          return wm::lookup_original((*fds)[size_t(w)], ++(*seqs)[size_t(w)], c, cp, dst, dp, id);
        },
        [this] {
          if (!pending_.exchange(true)) tsfn_.NonBlockingCall([this](Napi::Env, Napi::Function cb) {
            pending_.store(false);
            cb.Call({});
          });
        },
        &err);
    if (!ok) {
      Napi::Error e = Napi::Error::New(env, err);
      e.Set("code", Napi::String::New(env, "WM_PROXY_LISTEN"));
      e.ThrowAsJavaScriptException();
    }
  }
  ~L7ProxyWrap() { Stop(); }

 private:
  void Stop() {
    proxy_.stop();
    if (have_tsfn_) {
      tsfn_.Release();
      have_tsfn_ = false;
    }
  }
  // takeRequests() -> [{ address: Buffer(4), port, identity, generation }]
  Napi::Value TakeRequests(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<wm::L7RuleRequest> reqs;
    proxy_.take_requests(&reqs);
    Napi::Array a = Napi::Array::New(env, reqs.size());
    for (size_t i = 0; i < reqs.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("address", Napi::Buffer<uint8_t>::Copy(env, reqs[i].key.dst, 4));
      o.Set("port", double(reqs[i].key.port));
      o.Set("identity", double(reqs[i].key.identity));
      o.Set("generation", double(reqs[i].generation));
      a.Set(uint32_t(i), o);
    }
    return a;
  }
  // setRules({ address, port, identity, generation }, rules | null) -> warnings[]
  Napi::Value SetRules(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const uint8_t* addr;
    if (!info[0].IsObject()) return ThrowType(env, "setRules(request, rules | null)");
    Napi::Object r = info[0].As<Napi::Object>();
    if (!GetBytes(r.Get("address"), 4, &addr) || !r.Get("port").IsNumber() || !r.Get("identity").IsNumber() ||
        !r.Get("generation").IsNumber())
      return ThrowType(env, "setRules: request { address: 4-byte Buffer, port, identity, generation }");
    wm::L7RuleRequest req;
    std::memcpy(req.key.dst, addr, 4);
    req.key.port = uint16_t(r.Get("port").As<Napi::Number>().Uint32Value());
    req.key.identity = r.Get("identity").As<Napi::Number>().Uint32Value();
    req.generation = uint64_t(r.Get("generation").As<Napi::Number>().Int64Value());
    std::vector<std::string> warnings;
    if (info[1].IsNull() || info[1].IsUndefined()) {
      proxy_.set_rules(req, false, nullptr);
      return Warnings(env, warnings);
    }
    bool all;
    std::vector<wm::HttpRuleSpec> specs;
    std::string err;
    if (!ParseL7Spec(info[1], &all, &specs, &err)) return ThrowType(env, err);
    proxy_.set_rules(req, true, wm::L7RuleSet::compile(all, specs, &warnings));
    return Warnings(env, warnings);
  }
  Napi::Value Invalidate(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(proxy_.invalidate())); }
  // drain(max) -> { rows: Buffer (56-byte rows, docs/wire-format.md "L7 records"), text: Buffer (method, path, host bytes) }
  // Binary rows, not objects: building 14 properties per record was most of the agent's JS time under load.
  Napi::Value Drain(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t max = info[0].IsNumber() ? size_t(info[0].As<Napi::Number>().Int64Value()) : 4096;
    std::vector<wm::L7Record> recs;
    proxy_.drain(&recs, max);
    size_t text_len = 0;
    for (const auto& r : recs) text_len += r.method.size() + r.path.size() + r.host.size();
    auto rows = Napi::Buffer<uint8_t>::New(env, recs.size() * 56);
    auto text = Napi::Buffer<uint8_t>::New(env, text_len);
    uint8_t* t = text.Data();
    uint32_t off = 0;
    for (size_t i = 0; i < recs.size(); i++) {
      const wm::L7Record& r = recs[i];
      uint8_t* w = rows.Data() + i * 56;
      std::memset(w, 0, 56);
      double time = double(r.time_ms);
      std::memcpy(w, &time, 8);
      std::memcpy(w + 8, r.client, 4);
      std::memcpy(w + 12, r.dst, 4);
      std::memcpy(w + 16, &r.client_port, 2);
      std::memcpy(w + 18, &r.dst_port, 2);
      std::memcpy(w + 20, &r.identity, 4);
      std::memcpy(w + 24, &r.status, 2);
      w[26] = r.denied ? 1 : 0;
      std::memcpy(w + 28, &r.latency_us, 4);
      std::memcpy(w + 32, &r.ref, 4);
      uint32_t gen = uint32_t(r.generation);
      std::memcpy(w + 36, &gen, 4);
      std::memcpy(w + 40, &off, 4);
      uint16_t lens[3] = {uint16_t(r.method.size()), uint16_t(r.path.size()), uint16_t(r.host.size())};
      std::memcpy(w + 44, lens, 6);
      for (const std::string* str : {&r.method, &r.path, &r.host}) {
        std::memcpy(t + off, str->data(), str->size());
        off += uint32_t(str->size());
      }
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("rows", rows);
    o.Set("text", text);
    return o;
  }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    wm::L7ProxyStats s = proxy_.stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("connections", double(s.connections));
    o.Set("active", double(s.active));
    o.Set("requests", double(s.requests));
    o.Set("denied", double(s.denied));
    o.Set("upstreamErrors", double(s.upstream_errors));
    o.Set("passthrough", double(s.passthrough));
    o.Set("badRequests", double(s.bad_requests));
    o.Set("recordsLost", double(s.records_lost));
    o.Set("h2Refused", double(s.h2_refused));
    o.Set("h2cIgnored", double(s.h2c_ignored));
    o.Set("headTimeouts", double(s.head_timeouts));
    o.Set("bodyTimeouts", double(s.body_timeouts));
    o.Set("limited", double(s.limited));
    return o;
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }

  wm::L7Proxy proxy_;
  Napi::ThreadSafeFunction tsfn_;
  bool have_tsfn_ = false;
  std::atomic<bool> pending_{false};
};

// new ProxyLookup(device): the agent's answering side of the proxy process's original-destination
// lookups (proxy/lookup.h), from the device's LoadBalancer. pair() -> the fd to hand the proxy process
// (close it here once spawned); stats() -> { answered, notFound, malformed, channels }; close().
class ProxyLookupWrap : public Napi::ObjectWrap<ProxyLookupWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "ProxyLookup",
                       {InstanceMethod("pair", &ProxyLookupWrap::Pair), InstanceMethod("stats", &ProxyLookupWrap::Stats),
                        InstanceMethod("close", &ProxyLookupWrap::Close)});
  }
  explicit ProxyLookupWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProxyLookupWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      ThrowType(env, "new ProxyLookup(device)");
      return;
    }
    DeviceWrap* d = Napi::ObjectWrap<DeviceWrap>::Unwrap(info[0].As<Napi::Object>());
    wm::LoadBalancer* lb = d ? d->device().lb() : nullptr;
    if (!lb) {
      ThrowType(env, "the proxy lookup needs the device's policy engine (enablePolicy first)");
      return;
    }
    device_ = Napi::Persistent(info[0].As<Napi::Object>());  // the load balancer lives as long as the device
    server_ = std::make_unique<wm::LookupServer>([lb](const uint8_t c[4], uint16_t cp, uint8_t dst[4], uint16_t* dp, uint32_t* id) {
      return lb->proxy_original(c, cp, dst, dp, id);
    });
    std::string err;
    if (!server_->start(&err)) Napi::Error::New(env, err).ThrowAsJavaScriptException();
  }
  ~ProxyLookupWrap() {
    if (server_) server_->stop();
  }

 private:
  Napi::Value Pair(const Napi::CallbackInfo& info) {
    std::string err;
    int fd = server_ ? server_->pair(&err) : -1;
    if (fd < 0) {
      Napi::Error::New(info.Env(), err.empty() ? "proxy lookup closed" : err).ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    return Napi::Number::New(info.Env(), fd);
  }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    wm::LookupStats s = server_ ? server_->stats() : wm::LookupStats{0, 0, 0, 0};
    Napi::Object o = Napi::Object::New(env);
    o.Set("answered", double(s.answered));
    o.Set("notFound", double(s.not_found));
    o.Set("malformed", double(s.malformed));
    o.Set("channels", double(s.channels));
    return o;
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (server_) server_->stop();
    device_.Reset();
    return info.Env().Undefined();
  }
  std::unique_ptr<wm::LookupServer> server_;
  Napi::ObjectReference device_;
};

// setParentDeathSignal(signal) -> boolean: the proxy process dies with the agent (prctl PR_SET_PDEATHSIG).
Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber()) return ThrowType(info.Env(), "setParentDeathSignal(signal number)");
  return Napi::Boolean::New(info.Env(), prctl(PR_SET_PDEATHSIG, info[0].As<Napi::Number>().Int32Value()) == 0);
}

// l7Decide(rules, requestHead: string) -> { allowed, ref, target, warnings, h2cIgnored? } | { error, status }: the proxy's
// request parser and rule matcher, for tests against src/policy/l7.ts.
Napi::Value L7Decide(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool all;
  std::vector<wm::HttpRuleSpec> specs;
  std::string err;
  if (!ParseL7Spec(info[0], &all, &specs, &err) || !info[1].IsString()) return ThrowType(env, err.empty() ? "l7Decide(rules, head)" : err);
  std::vector<std::string> warnings;
  auto set = wm::L7RuleSet::compile(all, specs, &warnings);
  std::string head = info[1].As<Napi::String>().Utf8Value();
  wm::http1::Head h;
  int status = 0;
  std::string reason;
  Napi::Object o = Napi::Object::New(env);
  wm::http1::ParseResult r = wm::http1::parse_request(head.data(), head.size(), 16384, &h, &status, &reason);
  if (r != wm::http1::ParseResult::kDone) {
    o.Set("error", r == wm::http1::ParseResult::kNeedMore ? std::string("incomplete head") : reason);
    o.Set("status", double(status));
    return o;
  }
  wm::L7RuleSet::Decision d = set->decide(h);
  o.Set("allowed", d.allowed);
  o.Set("ref", double(d.ref));
  o.Set("target", h.target);  // normalised: what was matched and what the pod would be sent
  if (h.h2c_upgrade) o.Set("h2cIgnored", true);
  o.Set("warnings", Warnings(env, warnings));
  return o;
}

// validateRegex(pattern) -> string | null: why the L7 proxy's RE2 refuses a pattern, null if it
// compiles; `wiremesh apply` asks this (src/manifests/validate.ts) so apply and the data path agree.
Napi::Value ValidateRegex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) return ThrowType(env, "validateRegex(pattern: string)");
  std::string err = wm::check_pattern(info[0].As<Napi::String>().Utf8Value());
  return err.empty() ? env.Null() : Napi::String::New(env, err);
}

// DelayLine(tunName, delayMs): the testbed's latency device (src/testbed/latency.ts).
class DelayLineWrap : public Napi::ObjectWrap<DelayLineWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "DelayLine",
                       {InstanceMethod("close", &DelayLineWrap::Close), InstanceMethod("packets", &DelayLineWrap::Packets)});
  }
  explicit DelayLineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DelayLineWrap>(info) {
    if (!info[0].IsString() || !info[1].IsNumber()) {
      ThrowType(info.Env(), "new DelayLine(tunName, delayMs)");
      return;
    }
    std::string err;
    if (!line_.start(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Number>().Uint32Value(), &err))
      Napi::Error::New(info.Env(), err).ThrowAsJavaScriptException();
  }

 private:
  Napi::Value Close(const Napi::CallbackInfo& info) {
    line_.stop();
    return info.Env().Undefined();
  }
  Napi::Value Packets(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(line_.packets())); }
  wm::DelayLine line_;
};

// maglevBuild(backends: 24-byte rows, m) -> { table: Uint32Array (input index per slot), kept }
Napi::Value MaglevBuild(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<wm::BackendKey> keys;
  std::vector<uint32_t> weights;
  if (!ParseBackends(info[0], &keys, &weights) || !info[1].IsNumber())
    return ThrowType(env, "maglevBuild(backends: Buffer of 24-byte rows, m: prime)");
  uint32_t m = info[1].As<Napi::Number>().Uint32Value();
  if (m < 3 || m > 1048573 || !wm::is_prime(m)) return ThrowType(env, "m must be a prime in 3..1048573");
  std::vector<uint32_t> kept = wm::sort_backends(&keys, &weights);
  std::vector<uint32_t> table = wm::maglev_build(keys, weights, m);
  auto arr = Napi::Uint32Array::New(env, table.size());
  for (size_t i = 0; i < table.size(); i++) arr[i] = kept[table[i]];
  return arr;
}

// policyBench(kind, size, policyEntries, ops) -> { nsPerOp, setupMs, ops, hits }
Napi::Value PolicyBench(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) return ThrowType(env, "policyBench(kind, size, policyEntries, ops)");
  wm::PolicyBenchResult r;
  std::string err;
  if (!wm::run_policy_bench(info[0].As<Napi::String>().Utf8Value(), size_t(info[1].As<Napi::Number>().Int64Value()),
                            size_t(info[2].As<Napi::Number>().Int64Value()),
                            size_t(info[3].As<Napi::Number>().Int64Value()), &r, &err))
    return ThrowType(env, err);
  Napi::Object o = Napi::Object::New(env);
  o.Set("nsPerOp", r.ns_per_op);
  o.Set("setupMs", r.setup_ms);
  o.Set("ops", double(r.ops));
  o.Set("hits", double(r.hits));
  return o;
}

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  exports.Set("policyBench", Napi::Function::New(env, PolicyBench));
  exports.Set("maglevBuild", Napi::Function::New(env, MaglevBuild));
  exports.Set("blake2s", Napi::Function::New(env, Blake2s));
  exports.Set("hchacha20", Napi::Function::New(env, HChaCha20));
  exports.Set("aead", Napi::Function::New(env, Aead));
  exports.Set("nowMs", Napi::Function::New(env, NowMs));
  exports.Set("x25519", Napi::Function::New(env, X25519));
  exports.Set("x25519Public", Napi::Function::New(env, X25519Public));
  exports.Set("classifyMessage", Napi::Function::New(env, ClassifyMessage));
  exports.Set("splitPacket", Napi::Function::New(env, SplitPacket));
  exports.Set("coalesce", Napi::Function::New(env, Coalesce));
  exports.Set("ReplayFilter", ReplayFilterWrap::Init(env));
  exports.Set("RateLimiter", RateLimiterWrap::Init(env));
  exports.Set("AllowedIPs", AllowedIPsWrap::Init(env));
  exports.Set("CookieChecker", CookieCheckerWrap::Init(env));
  exports.Set("Device", DeviceWrap::Init(env));
  exports.Set("DelayLine", DelayLineWrap::Init(env));
  exports.Set("L7Proxy", L7ProxyWrap::Init(env));
  exports.Set("ProxyLookup", ProxyLookupWrap::Init(env));
  exports.Set("setParentDeathSignal", Napi::Function::New(env, SetParentDeathSignal));
  exports.Set("l7Decide", Napi::Function::New(env, L7Decide));
  exports.Set("validateRegex", Napi::Function::New(env, ValidateRegex));
  return exports;
}

}  // namespace

NODE_API_MODULE(wiremesh, InitAll)

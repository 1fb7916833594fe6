#include <cstring>
#include <memory>
#include <shared_mutex>
#include <string>

#include "../net/ip.h"
#include "../rows.h"
#include "../services/maglev.h"
#include "device_wrap.h"
#include "util.h"

namespace wm {
namespace addon {

namespace {

bool ParseService(const Napi::CallbackInfo& info, LbService* svc, std::string* err) {
  *err = "serviceUpsert(id, m: prime 3..1048573, frontends: Buffer of 20-byte rows, backends: Buffer of 24-byte rows)";
  if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsBuffer()) return false;
  svc->id = info[0].As<Napi::Number>().Uint32Value();
  svc->m = info[1].As<Napi::Number>().Uint32Value();
  if (svc->m < 3 || svc->m > 1048573 || !is_prime(svc->m)) return false;
  auto f = info[2].As<Napi::Buffer<uint8_t>>();
  if (f.Length() % sizeof(rows::FrontendRow)) return false;
  for (size_t off = 0; off < f.Length(); off += sizeof(rows::FrontendRow)) {
    Frontend fe;
    if (!rows::decode_frontend(f.Data() + off, &fe)) {
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

Napi::Object BackendObject(Napi::Env env, const BackendKey& b) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("address", Napi::Buffer<uint8_t>::Copy(env, b.addr, b.family == 4 ? 4 : 16));
  o.Set("port", double(b.port));
  return o;
}

}  // namespace

// probe(peerIds[]): one liveness probe to each
Napi::Value DeviceWrap::Probe(const Napi::CallbackInfo& info) {
  if (!info[0].IsArray()) return ThrowType(info.Env(), "probe(peerIds[])");
  Napi::Array a = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) dev_.probe(a.Get(i).As<Napi::Number>().Uint32Value());
  return info.Env().Undefined();
}

// probeWatch(add[], remove[]): peer ids the probe monitor starts / stops watching.
Napi::Value DeviceWrap::ProbeWatch(const Napi::CallbackInfo& info) {
  if (!info[0].IsArray() || !info[1].IsArray()) return ThrowType(info.Env(), "probeWatch(add[], remove[])");
  std::vector<uint32_t> lists[2];
  for (int k = 0; k < 2; k++) {
    Napi::Array a = info[k].As<Napi::Array>();
    lists[k].reserve(a.Length());
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value v = a.Get(i);
      if (!v.IsNumber()) return ThrowType(info.Env(), "probeWatch: peer ids are numbers");
      lists[k].push_back(v.As<Napi::Number>().Uint32Value());
    }
  }
  dev_.probe_watch(lists[0], lists[1]);
  return info.Env().Undefined();
}

// probeChanges() -> { rows: Uint32Array [peer, alive, rttUs]*, lost }
Napi::Value DeviceWrap::ProbeChanges(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<uint32_t> rows;
  bool lost = dev_.probe_drain(&rows);
  auto arr = Napi::Uint32Array::New(env, rows.size());
  if (!rows.empty()) std::memcpy(arr.Data(), rows.data(), rows.size() * 4);
  Napi::Object o = Napi::Object::New(env);
  o.Set("rows", arr);
  o.Set("lost", Napi::Boolean::New(env, lost));
  return o;
}

// serviceUpsert(id, m, frontends, backends): rows.h FrontendRow and BackendRow Buffers.
Napi::Value DeviceWrap::ServiceUpsert(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Engine(env)) return env.Undefined();
  auto svc = std::make_shared<LbService>();
  std::string err;
  if (!ParseService(info, svc.get(), &err)) return ThrowType(env, err);
  dev_.lb()->upsert(std::move(svc));
  return env.Undefined();
}

Napi::Value DeviceWrap::ServiceRemove(const Napi::CallbackInfo& info) {
  if (Engine(info.Env())) dev_.lb()->remove(info[0].As<Napi::Number>().Uint32Value());
  return info.Env().Undefined();
}

// setProxy(address: Buffer(4), port): where redirected flows go (the agent's L7 proxy)
Napi::Value DeviceWrap::SetProxy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* a;
  if (!Engine(env)) return env.Undefined();
  if (!GetBytes(info[0], 4, &a) || !info[1].IsNumber()) return ThrowType(env, "setProxy(address: 4-byte Buffer, port)");
  dev_.lb()->set_proxy(a, uint16_t(info[1].As<Napi::Number>().Uint32Value()));
  return env.Undefined();
}

// proxyOriginal(client: Buffer(4), clientPort) -> { address, port, identity } | null
Napi::Value DeviceWrap::ProxyOriginal(const Napi::CallbackInfo& info) {
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
Napi::Value DeviceWrap::ServicePick(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Engine(env)) return env.Undefined();
  Frontend fe;
  if (!info[0].IsBuffer() || info[0].As<Napi::Buffer<uint8_t>>().Length() != 20 || !info[1].IsBuffer() ||
      !rows::decode_frontend(info[0].As<Napi::Buffer<uint8_t>>().Data(), &fe))
    return ThrowType(env, "servicePick(frontend: 20-byte row, source: Buffer, sourcePort)");
  auto src = info[1].As<Napi::Buffer<uint8_t>>();
  if (src.Length() != (fe.family == 4 ? 4u : 16u)) return ThrowType(env, "source address family differs from the frontend's");
  BackendKey b;
  if (!dev_.lb()->pick(fe, src.Data(), uint16_t(info[2].As<Napi::Number>().Uint32Value()), &b)) return env.Null();
  return BackendObject(env, b);
}

// serviceNat(packet, 'forward' | 'reverse', nowS): one packet through the
// service NAT as the TX thread would (rewritten in place); for tests.
// Returns 'none' | 'translated' | 'reject' | 'drop'.
Napi::Value DeviceWrap::ServiceNat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Engine(env)) return env.Undefined();
  if (!info[0].IsBuffer() || !info[1].IsString() || !info[2].IsNumber())
    return ThrowType(env, "serviceNat(packet: Buffer, 'forward' | 'reverse', nowS: number)");
  auto b = info[0].As<Napi::Buffer<uint8_t>>();
  IpInfo ip;
  PacketView pv;
  if (!parse_ip(b.Data(), b.Length(), &ip) || !parse_l4(b.Data(), ip, &pv) || !pv.has_ports)
    return Napi::String::New(env, "none");
  uint32_t now_s = info[2].As<Napi::Number>().Uint32Value();
  LoadBalancer* lb = dev_.lb();
  std::shared_lock<std::shared_mutex> lock(lb->mu);
  if (info[1].As<Napi::String>().Utf8Value() == "reverse")
    return Napi::String::New(env, lb->reverse(b.Data(), ip, &pv.sport, pv.dport, pv.tcp_flags, now_s) ? "translated" : "none");
  static const char* const res[] = {"none", "translated", "reject", "drop"};
  return Napi::String::New(env, res[lb->forward(b.Data(), ip, pv.sport, &pv.dport, pv.tcp_flags, now_s)]);
}

}  // namespace addon
}  // namespace wm

// PolicyProbe (testhooks): a PolicyEngine of its own holding one endpoint's
// ingress map, so a unit test can see whether the native side compacts
// (PolicyEngine::compactions(), compactions_dropped()) and how many slots the
// map holds (PolicyMap::slots()): the product addon shows neither.
#include <memory>
#include <vector>

#include "../policy/engine.h"
#include "../rows.h"
#include "testhooks.h"

namespace wm {
namespace testhooks {
namespace {

constexpr uint32_t kEndpoint = 1, kIdentity = 300;

bool Rows(const Napi::Value& v, std::vector<PolicyEntry>* out) {
  if (!v.IsBuffer()) return false;
  auto b = v.As<Napi::Buffer<uint8_t>>();
  return rows::decode_policy_entries(b.Data(), b.Length(), out);
}

class PolicyProbeWrap : public Napi::ObjectWrap<PolicyProbeWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "PolicyProbe",
                       {InstanceMethod("set", &PolicyProbeWrap::Set), InstanceMethod("update", &PolicyProbeWrap::Update),
                        InstanceMethod("stats", &PolicyProbeWrap::Stats)});
  }
  explicit PolicyProbeWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PolicyProbeWrap>(info) {}

 private:
  Napi::Value Throw(Napi::Env env) {
    Napi::TypeError::New(env, "policy rows: Buffers of 16-byte rows with a known action and port_lo <= port_hi")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // set(rows: Buffer): the endpoint's ingress map, built from scratch.
  Napi::Value Set(const Napi::CallbackInfo& info) {
    std::vector<PolicyEntry> es;
    if (!Rows(info[0], &es)) return Throw(info.Env());
    engine_.set_endpoint(kEndpoint, kIdentity, std::make_shared<PolicyMap>(std::move(es)), nullptr);
    return info.Env().Undefined();
  }
  // update(upserts: Buffer, removes: Buffer) -> boolean (PolicyEngine::policy_map_update).
  Napi::Value Update(const Napi::CallbackInfo& info) {
    std::vector<PolicyEntry> ups, dels;
    if (!Rows(info[0], &ups) || !Rows(info[1], &dels)) return Throw(info.Env());
    return Napi::Boolean::New(info.Env(), engine_.policy_map_update(kEndpoint, true, ups, dels));
  }
  // stats() -> { compactions, dropped, slots, live } (slots and live 0 without a map).
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    std::vector<PolicyEntry> es;
    size_t slots = 0;
    engine_.policy_map_entries(kEndpoint, true, &es, &slots);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("compactions", double(engine_.compactions()));
    o.Set("dropped", double(engine_.compactions_dropped()));
    o.Set("slots", double(slots));
    o.Set("live", double(es.size()));
    return o;
  }
  PolicyEngine engine_;
};

}  // namespace

Napi::Function PolicyProbeClass(Napi::Env env) { return PolicyProbeWrap::Init(env); }

}  // namespace testhooks
}  // namespace wm

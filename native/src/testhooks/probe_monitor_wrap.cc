// ProbeMonitor (testhooks): the device's probe monitor (wireguard/probe_monitor.h)
// on a clock and answers the test gives, so a unit test checks what JavaScript
// would drain (liveness, the windowed-minimum RTT) against src/native/fakeprobe.ts.
#include <unordered_map>
#include <vector>

#include "../addon/util.h"
#include "../wireguard/probe_monitor.h"
#include "testhooks.h"

namespace wm {
namespace testhooks {
namespace {

using namespace addon;

bool Numbers(const Napi::Value& v, std::vector<double>* out) {
  if (!v.IsArray()) return false;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value x = a.Get(i);
    if (!x.IsNumber()) return false;
    out->push_back(x.As<Napi::Number>().DoubleValue());
  }
  return true;
}

std::vector<uint32_t> Ids(const std::vector<double>& v) { return std::vector<uint32_t>(v.begin(), v.end()); }

class ProbeMonitorWrap : public Napi::ObjectWrap<ProbeMonitorWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "ProbeMonitor",
                       {InstanceMethod("watch", &ProbeMonitorWrap::Watch), InstanceMethod("round", &ProbeMonitorWrap::Round),
                        InstanceMethod("drain", &ProbeMonitorWrap::Drain)});
  }
  explicit ProbeMonitorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProbeMonitorWrap>(info) {}

 private:
  // watch(add: number[], remove: number[], nowMs)
  Napi::Value Watch(const Napi::CallbackInfo& info) {
    std::vector<double> add, remove;
    if (!Numbers(info[0], &add) || !Numbers(info[1], &remove) || !info[2].IsNumber())
      return ThrowType(info.Env(), "watch(add: number[], remove: number[], nowMs)");
    mon_.watch(Ids(add), Ids(remove), uint64_t(info[2].As<Napi::Number>().Int64Value()));
    return info.Env().Undefined();
  }
  // round(nowMs, answers: flat [peer, lastMs, rttUs, replies]*) -> peers to probe; a peer not in answers does not exist
  Napi::Value Round(const Napi::CallbackInfo& info) {
    std::vector<double> flat;
    if (!info[0].IsNumber() || !Numbers(info[1], &flat) || flat.size() % 4)
      return ThrowType(info.Env(), "round(nowMs, answers: [peer, lastMs, rttUs, replies]*)");
    std::unordered_map<uint32_t, ProbeMonitor::Reply> answers;
    for (size_t i = 0; i < flat.size(); i += 4)
      answers[uint32_t(flat[i])] = ProbeMonitor::Reply{uint64_t(flat[i + 1]), uint64_t(flat[i + 2]), uint64_t(flat[i + 3])};
    std::vector<uint32_t> probe;
    mon_.round(
        uint64_t(info[0].As<Napi::Number>().Int64Value()),
        [&](uint32_t peer, ProbeMonitor::Reply* r) {
          auto it = answers.find(peer);
          if (it == answers.end()) return false;
          *r = it->second;
          return true;
        },
        &probe);
    return Numbers32(info.Env(), probe);
  }
  // drain() -> { rows: number[] (peer, alive, rttUs)*, lost }
  Napi::Value Drain(const Napi::CallbackInfo& info) {
    std::vector<uint32_t> rows;
    bool lost = mon_.drain(&rows);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("rows", Numbers32(info.Env(), rows));
    o.Set("lost", lost);
    return o;
  }
  static Napi::Array Numbers32(Napi::Env env, const std::vector<uint32_t>& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); i++) a.Set(uint32_t(i), double(v[i]));
    return a;
  }
  ProbeMonitor mon_;
};

}  // namespace

Napi::Function ProbeMonitorClass(Napi::Env env) { return ProbeMonitorWrap::Init(env); }

}  // namespace testhooks
}  // namespace wm

// The test-hooks addon (build/Release/wiremesh_testhooks.node): exports only tests and benchmarks
// use (src/native/testhooks.ts loads it); the product addon never contains them.
#pragma once
#include <napi.h>

namespace wm {
namespace testhooks {

void RegisterPrimitives(Napi::Env env, Napi::Object exports);  // primitives_wrap.cc
Napi::Function PolicyProbeClass(Napi::Env env);                // policy_probe_wrap.cc
Napi::Function ConntrackProbeClass(Napi::Env env);             // conntrack_probe_wrap.cc
Napi::Function ProbeMonitorClass(Napi::Env env);               // probe_monitor_wrap.cc
Napi::Function TxControlClass(Napi::Env env);                  // tx_control_wrap.cc
void RegisterFlatmapProbe(Napi::Env env, Napi::Object exports);  // flatmap_probe_wrap.cc

}  // namespace testhooks
}  // namespace wm

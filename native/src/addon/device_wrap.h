// The Device wrapper: one wm::Device per JavaScript object. Methods by concern: device_wrap.cc
// (lifecycle, peers, keys, stats), device_policy_wrap.cc (identities, ipcache, policy, conntrack),
// device_services_wrap.cc (probes, services, proxy redirects). Everything here runs on the
// JavaScript thread; the packet threads talk back only through the event queue drained by the
// thread-safe function Start() sets up.
#pragma once
#include <napi.h>

#include <atomic>

#include "../wireguard/device.h"

namespace wm {
namespace addon {

class DeviceWrap : public Napi::ObjectWrap<DeviceWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit DeviceWrap(const Napi::CallbackInfo& info);
  ~DeviceWrap() { dev_.stop(); }
  Device& device() { return dev_; }  // ProxyLookup reads the device's load balancer

 private:
  // lifecycle, peers, keys, stats (device_wrap.cc)
  Napi::Value Start(const Napi::CallbackInfo& info);
  void Deliver(Napi::Env env, Napi::Function cb);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value TunName(const Napi::CallbackInfo& info);
  Napi::Value Port(const Napi::CallbackInfo& info);
  Napi::Value Gso(const Napi::CallbackInfo& info);
  Napi::Value SetMtu(const Napi::CallbackInfo& info);
  Napi::Value Rebind(const Napi::CallbackInfo& info);
  Napi::Value SetFwmark(const Napi::CallbackInfo& info);
  Napi::Value SetPublicKey(const Napi::CallbackInfo& info);
  Napi::Value UpsertPeer(const Napi::CallbackInfo& info);
  Napi::Value RemovePeer(const Napi::CallbackInfo& info);
  Napi::Value SetEndpoint(const Napi::CallbackInfo& info);
  Napi::Value SetRoaming(const Napi::CallbackInfo& info);
  Napi::Value SetAllowedIPs(const Napi::CallbackInfo& info);
  Napi::Value AllowedIPs(const Napi::CallbackInfo& info);
  Napi::Value AddAllowedIPs(const Napi::CallbackInfo& info);
  Napi::Value UpdateAllowedIPs(const Napi::CallbackInfo& info, bool replace, const char* usage);
  Napi::Value InstallKeypair(const Napi::CallbackInfo& info);
  Napi::Value ClearKeypairs(const Napi::CallbackInfo& info);
  Napi::Value SendKeepalive(const Napi::CallbackInfo& info);
  Napi::Value FlushStaged(const Napi::CallbackInfo& info);
  Napi::Value RefreshMtu(const Napi::CallbackInfo& info);
  Napi::Value SendHandshake(const Napi::CallbackInfo& info);
  Napi::Value PeerStats(const Napi::CallbackInfo& info);
  Napi::Value PeersWithState(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);
  // mesh mode: identities, ipcache, policy, conntrack (device_policy_wrap.cc)
  PolicyEngine* Engine(Napi::Env env);
  Napi::Value EnablePolicy(const Napi::CallbackInfo& info);
  Napi::Value SetPeerIdentity(const Napi::CallbackInfo& info);
  Napi::Value SetMaxClusters(const Napi::CallbackInfo& info);
  Napi::Value IpcacheUpdate(const Napi::CallbackInfo& info);
  Napi::Value IpcacheLookup(const Napi::CallbackInfo& info);
  Napi::Value SetEndpointPolicy(const Napi::CallbackInfo& info);
  Napi::Value PolicyMapUpdate(const Napi::CallbackInfo& info);
  Napi::Value PolicyMapEntries(const Napi::CallbackInfo& info);
  Napi::Value RemoveEndpoint(const Napi::CallbackInfo& info);
  Napi::Value DrainFlows(const Napi::CallbackInfo& info);
  Napi::Value PolicyCheck(const Napi::CallbackInfo& info);
  Napi::Value SetConntrackLimits(const Napi::CallbackInfo& info);
  Napi::Value SetHostFirewall(const Napi::CallbackInfo& info);
  Napi::Value CtEndpointEntries(const Napi::CallbackInfo& info);
  Napi::Value CtGc(const Napi::CallbackInfo& info);
  // mesh mode: probes, services, proxy redirects (device_services_wrap.cc)
  Napi::Value Probe(const Napi::CallbackInfo& info);
  Napi::Value ProbeWatch(const Napi::CallbackInfo& info);
  Napi::Value ProbeChanges(const Napi::CallbackInfo& info);
  Napi::Value ServiceUpsert(const Napi::CallbackInfo& info);
  Napi::Value ServiceRemove(const Napi::CallbackInfo& info);
  Napi::Value SetProxy(const Napi::CallbackInfo& info);
  Napi::Value ProxyOriginal(const Napi::CallbackInfo& info);
  Napi::Value ServicePick(const Napi::CallbackInfo& info);
  Napi::Value ServiceNat(const Napi::CallbackInfo& info);

  Device dev_;
  Napi::ThreadSafeFunction tsfn_;
  bool started_ = false;
  std::atomic<bool> notify_pending_{false};
};

}  // namespace addon
}  // namespace wm

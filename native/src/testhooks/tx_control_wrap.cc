// TxControl (testhooks): the TX thread's control round (Device::pack_control, wireguard/device_txctl.cc) over real
// Peer structs and an arena of the size the test gives, so a unit test fills it past its end with distinguishable
// staged packets (the device's arena is 8 MiB and its rounds race the JavaScript calls that queue them).
#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

#include "../addon/util.h"
#include "../wireguard/device.h"
#include "testhooks.h"

namespace wm {
namespace testhooks {
namespace {

using namespace addon;

class TxControlWrap : public Napi::ObjectWrap<TxControlWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "TxControl",
                       {InstanceMethod("addPeer", &TxControlWrap::AddPeer), InstanceMethod("stage", &TxControlWrap::Stage),
                        InstanceMethod("control", &TxControlWrap::Control), InstanceMethod("round", &TxControlWrap::Round),
                        InstanceMethod("staged", &TxControlWrap::Staged), InstanceMethod("pending", &TxControlWrap::Pending),
                        InstanceMethod("unstage", &TxControlWrap::Unstage), InstanceMethod("reply", &TxControlWrap::Reply),
                        InstanceMethod("removePeer", &TxControlWrap::RemovePeer),
                        InstanceMethod("repliesQueued", &TxControlWrap::RepliesQueued)});
  }
  explicit TxControlWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TxControlWrap>(info) {}

 private:
  Peer* find(uint32_t id) {
    auto it = peers_.find(id);
    return it == peers_.end() ? nullptr : it->second.get();
  }
  Peer* Arg(const Napi::CallbackInfo& info) { return info[0].IsNumber() ? find(info[0].As<Napi::Number>().Uint32Value()) : nullptr; }
  // addPeer(id)
  Napi::Value AddPeer(const Napi::CallbackInfo& info) {
    if (!info[0].IsNumber()) return ThrowType(info.Env(), "addPeer(id)");
    uint32_t id = info[0].As<Napi::Number>().Uint32Value();
    peers_[id] = std::make_unique<Peer>();
    peers_[id]->id = id;
    return info.Env().Undefined();
  }
  // stage(id, packet) -> packets dropped (the oldest, past kStagedMax), as Device::stage
  Napi::Value Stage(const Napi::CallbackInfo& info) {
    Peer* p = Arg(info);
    const uint8_t* b;
    if (!p || !info[1].IsBuffer() || !GetBytes(info[1], 0, &b)) return ThrowType(info.Env(), "stage(known id, packet: Buffer)");
    std::vector<std::vector<uint8_t>> rest;
    rest.swap(p->live().staged);
    rest.emplace_back(b, b + info[1].As<Napi::Buffer<uint8_t>>().Length());
    return Napi::Number::New(info.Env(), double(Device::unstage(p, &rest)));
  }
  // control(kind: 'keepalive' | 'flush' | 'flush-or-keepalive' | 'probe', id, probe?: Buffer of 16): queued
  Napi::Value Control(const Napi::CallbackInfo& info) {
    std::string kind = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    Device::Ctl c{Device::CtlKind::kKeepalive, 0, {}};
    const uint8_t* probe = nullptr;
    if (kind == "flush") c.kind = Device::CtlKind::kFlush;
    else if (kind == "flush-or-keepalive") c.kind = Device::CtlKind::kFlushOrKeepalive;
    else if (kind == "probe" && GetBytes(info[2], kProbeSize, &probe)) c.kind = Device::CtlKind::kProbeRequest;
    else if (kind != "keepalive") return ThrowType(info.Env(), "control(kind, id, probe?: Buffer of 16)");
    if (!info[1].IsNumber()) return ThrowType(info.Env(), "control(kind, id, probe?)");
    c.peer = info[1].As<Napi::Number>().Uint32Value();
    if (probe) std::memcpy(c.probe, probe, kProbeSize);
    queue_.push_back(c);
    return info.Env().Undefined();
  }
  // round(cap) -> { sent: Array<{ peer, data: Buffer }> (in arena order), done, dropped }; the rest stays queued
  Napi::Value Round(const Napi::CallbackInfo& info) {
    if (!info[0].IsNumber()) return ThrowType(info.Env(), "round(cap)");
    size_t cap = size_t(info[0].As<Napi::Number>().Int64Value());
    std::vector<uint8_t> arena(cap);
    std::vector<Device::Ctl> ctl(queue_.begin(), queue_.end());
    std::vector<Device::TxSeg> segs;
    size_t used = 0;
    uint64_t dropped = 0;
    size_t done = Device::pack_control(ctl.data(), ctl.size(), [this](uint32_t id) { return find(id); }, arena.data(), cap,
                                       &used, &segs, &dropped);
    queue_.erase(queue_.begin(), queue_.begin() + std::ptrdiff_t(done));
    Napi::Env env = info.Env();
    Napi::Array sent = Napi::Array::New(env, segs.size());
    for (size_t i = 0; i < segs.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("peer", double(segs[i].peer));
      o.Set("data", Copy(env, segs[i].plain, segs[i].len));
      sent.Set(uint32_t(i), o);
    }
    Napi::Object r = Napi::Object::New(env);
    r.Set("sent", sent);
    r.Set("done", double(done));
    r.Set("dropped", double(dropped));
    return r;
  }
  // reply(id, probe: Buffer of 16) -> 'queued' or the counter it bumped: Device::queue_probe_reply, as the RX
  // thread queues its answer to that peer's probe request
  Napi::Value Reply(const Napi::CallbackInfo& info) {
    Peer* p = Arg(info);
    const uint8_t* probe;
    if (!p || !GetBytes(info[1], kProbeSize, &probe)) return ThrowType(info.Env(), "reply(known id, probe: Buffer of 16)");
    Device::Ctl c{Device::CtlKind::kProbeReply, p->id, {}};
    std::memcpy(c.probe, probe, kProbeSize);
    Counter r = Device::queue_probe_reply(&queue_, p, c);
    return Napi::String::New(info.Env(), r == kCounterCount ? "queued" : kCounterNames[r]);
  }
  // removePeer(id): gone (its queued messages stay, skipped by the round, as in the device)
  Napi::Value RemovePeer(const Napi::CallbackInfo& info) {
    if (!info[0].IsNumber()) return ThrowType(info.Env(), "removePeer(id)");
    peers_.erase(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }
  // repliesQueued(id) -> the peer's probe_replies_queued
  Napi::Value RepliesQueued(const Napi::CallbackInfo& info) {
    Peer* p = Arg(info);
    if (!p) return ThrowType(info.Env(), "repliesQueued(known id)");
    return Napi::Number::New(info.Env(), double(p->view().probe_replies_queued.load()));
  }
  // staged(id) -> Buffer[] (oldest first)
  Napi::Value Staged(const Napi::CallbackInfo& info) {
    Peer* p = Arg(info);
    if (!p) return ThrowType(info.Env(), "staged(known id)");
    const std::vector<std::vector<uint8_t>>& staged = p->view().staged;
    Napi::Array a = Napi::Array::New(info.Env(), staged.size());
    for (size_t i = 0; i < staged.size(); i++) a.Set(uint32_t(i), Copy(info.Env(), staged[i].data(), staged[i].size()));
    return a;
  }
  Napi::Value Pending(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(queue_.size())); }
  // unstage(id, packets: Buffer[]) -> dropped: Device::unstage (packets go back in front)
  Napi::Value Unstage(const Napi::CallbackInfo& info) {
    Peer* p = Arg(info);
    if (!p || !info[1].IsArray()) return ThrowType(info.Env(), "unstage(known id, packets: Buffer[])");
    Napi::Array a = info[1].As<Napi::Array>();
    std::vector<std::vector<uint8_t>> rest;
    for (uint32_t i = 0; i < a.Length(); i++) {
      const uint8_t* b;
      if (!a.Get(i).IsBuffer() || !GetBytes(a.Get(i), 0, &b)) return ThrowType(info.Env(), "unstage(id, packets: Buffer[])");
      rest.emplace_back(b, b + a.Get(i).As<Napi::Buffer<uint8_t>>().Length());
    }
    return Napi::Number::New(info.Env(), double(Device::unstage(p, &rest)));
  }

  std::unordered_map<uint32_t, std::unique_ptr<Peer>> peers_;
  std::vector<Device::Ctl> queue_;
};

}  // namespace

Napi::Function TxControlClass(Napi::Env env) { return TxControlWrap::Init(env); }

}  // namespace testhooks
}  // namespace wm

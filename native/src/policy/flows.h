// Flow records (Hubble-like) from the packet threads: one per new flow that
// policy allowed and one per dropped packet. A fixed ring: when JavaScript
// falls behind, the oldest records are overwritten and counted as lost, so the
// data path never waits for an observer.
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

namespace wm {

enum FlowVerdict : uint8_t { kFlowForwarded = 1, kFlowDropped = 2 };
enum FlowDirection : uint8_t { kFlowIngress = 1, kFlowEgress = 2 };
// Stable numbers: they appear in JSON output and metrics (docs/wire-format.md).
enum FlowReason : uint8_t {
  kReasonNone = 0,
  kReasonPolicyDeny = 1,         // an explicit deny rule matched
  kReasonPolicyDefaultDeny = 2,  // selected by a policy, no rule allows it
  kReasonIdentityCluster = 3,    // tag's cluster is not one the sending node may speak for
  kReasonSourceNotAllowed = 4,   // inner source outside the peer's allowed IPs
  kReasonMalformedTag = 5,       // unknown tag version or short frame
  kReasonCtFull = 6,             // allowed, but no conntrack entry (full); dropped if its source was over its bound
  kReasonFragment = 7,           // a later fragment (no ports) no rule allows by protocol alone
  kReasonIpv6ExtChain = 8,       // IPv6: unknown next header no rule allows, or an over-long extension chain
  kReasonTransit = 9,            // from a peer, for neither a pod nor this node: we are no router for peers
};

constexpr uint8_t kFlowFlagProxy = 4;

#pragma pack(push, 1)
struct FlowRecord {  // 72 bytes, little-endian, read by src/policy/flows.ts
  uint64_t time_ms;  // wall clock
  uint8_t verdict, reason, direction, proto;
  uint8_t family;    // 4 or 6
  uint8_t flags;     // bit 0: reply, bit 1: same-node (hairpin), bit 2: redirected to the L7 proxy
  uint16_t reserved;
  uint16_t sport, dport;
  uint32_t src_identity, dst_identity;
  uint32_t rule;
  uint32_t peer;     // WireGuard peer id (0 = none / hairpin)
  uint32_t reserved2;
  uint8_t src[16], dst[16];
};
#pragma pack(pop)
static_assert(sizeof(FlowRecord) == 72, "flow record layout is shared with TypeScript");

class FlowRing {
 public:
  explicit FlowRing(size_t capacity = 16384) : buf_(capacity) {}
  void push(const FlowRecord& r) {
    std::lock_guard<std::mutex> lock(mu_);
    if (count_ == buf_.size()) {
      lost_++;
      head_ = (head_ + 1) % buf_.size();
      count_--;
    }
    buf_[(head_ + count_) % buf_.size()] = r;
    count_++;
  }
  // Moves everything out; returns how many were lost since the last drain.
  uint64_t drain(std::vector<FlowRecord>* out) {
    std::lock_guard<std::mutex> lock(mu_);
    out->reserve(out->size() + count_);
    for (size_t i = 0; i < count_; i++) out->push_back(buf_[(head_ + i) % buf_.size()]);
    head_ = count_ = 0;
    uint64_t l = lost_;
    lost_ = 0;
    return l;
  }

 private:
  std::mutex mu_;
  std::vector<FlowRecord> buf_;
  size_t head_ = 0, count_ = 0;
  uint64_t lost_ = 0;
};

}  // namespace wm

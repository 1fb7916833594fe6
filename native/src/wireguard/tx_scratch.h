// The TX thread's per-batch vectors (device_tx.cc) and the room they keep between batches. One set per TX thread,
// owned by tx_loop and handed to tx_process and tx_send; used by that thread alone, so unlocked.
//
// Why kept: vectors made afresh per batch are several mallocs a batch, and the agent runs with MALLOC_ARENA_MAX=2
// (README, "Running the agent"), so this thread may share a malloc arena with V8's, libuv's and the JavaScript
// thread, and its lock: malloctrim.ts's trim holds each arena's lock while it walks it (tens of ms).
// Why given back: a big round (a probe round queues a message per watched peer, up to kTxCtlQueueMax; a pod's
// super-packets with a tiny MSS cut into up to ~1,000 segments a read) kept its room for the thread's life before:
// 8.7 MiB after one probe round over 120,000 peers (issue 16; test/unit/tx-scratch-device.test.ts).
// The rule (reset, after every turn of the TX loop; a turn's batch is the larger of the control messages it took and
// the segments it read): a vector keeps room for twice the largest batch of the current and the previous window of
// kWindowMs, and at least kKeep entries; past that its room is freed (the peer index's
// buckets past twice that: libstdc++ grows them to a prime above twice the old count). tx_loop frees ctl_'s room by
// the same rule (ctl and ctl_ swap rooms each round). Rounds that recur (the probe monitor's, every 200 ms) keep
// theirs; a size not seen for 2–4 s is freed at the next turn (the loop turns at least once a second when idle).
// Room kept at worst, while such batches recur: ~290 B per entry (segment, control message, context, send headers,
// index) for up to twice the largest batch's entries: ≤ ~38 MiB under a pod's flood of tiny-MSS super-packets
// (≤ 65,536 segments a batch), and for probe rounds over P watched peers ~580 B × min(P, 114,688 a round) plus
// 2 × 24 B × P of control messages (our own are never refused, so P is the bound). A batch uses about half of it.
// What still mallocs per batch on this thread: the peer index's nodes in a batch to more than kCtxScan peers,
// rejects, staged packets, handshake requests' events, new conntrack and NAT entries, and a probe round's lists
// (probe_round_due). Outside the rule: write_back's Coalescer keeps its own room (device_mesh.cc).
#pragma once
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "device.h"

namespace wm {

struct Device::TxScratch {
  static constexpr size_t kKeep = 4096;
  static constexpr uint64_t kWindowMs = 2000;
  // A peer's state for one batch: its keypair and endpoint taken once (under its mu), its counters summed.
  struct PeerCtx {
    Peer* peer;
    std::shared_ptr<Keypair> kp;
    Endpoint ep;
    bool usable;
    uint64_t bytes;
    uint64_t packets;
    uint64_t data_packets;
  };
  std::vector<TxSeg> segs;
  std::vector<Ctl> ctl;  // swapped with ctl_ each round: ctl_ then holds this one's (reset) room
  std::vector<TxOut> out;
  std::vector<PeerCtx> ctxs;  // holds keypair references: emptied after every batch
  std::unordered_map<Peer*, size_t> ctx_index;
  // hairpinned and to-kernel packets, written back after the batch (they live in the TX arena until then)
  std::vector<std::pair<const uint8_t*, size_t>> hairpins, back;
  std::vector<iovec> iovs;
  std::vector<mmsghdr> msgs;
  std::vector<std::array<char, CMSG_SPACE(sizeof(uint16_t))>> cmsgs;

  // After a turn of the TX loop at now_ms that handled `batch` segments or control messages (0: none): every
  // vector emptied, and the room of any past the rule's bound (top of file) freed.
  void reset(uint64_t now_ms, size_t batch) {
    if (now_ms - window_ms_ >= kWindowMs) {
      // (a turn that took over two windows, e.g. sends retried on a full socket: the older window is gone too)
      prev_ = now_ms - window_ms_ >= 2 * kWindowMs ? 0 : cur_;
      cur_ = 0;
      window_ms_ = now_ms;
    }
    cur_ = std::max(cur_, batch);
    keep_ = std::max(kKeep, 2 * std::max(cur_, prev_));
    for_each_vector([this](auto& v) {
      v.clear();
      if (v.capacity() > keep_) std::remove_reference_t<decltype(v)>().swap(v);
    });
    if (ctx_index.bucket_count() > 2 * keep_) std::unordered_map<Peer*, size_t>().swap(ctx_index);
    else if (!ctx_index.empty()) ctx_index.clear();  // (clear() wipes every bucket, even when empty)
  }

  // The room a vector may keep, as of the last reset (entries).
  size_t keep() const { return keep_; }

 private:
  template <typename F>
  void for_each_vector(F f) {
    f(segs), f(ctl), f(out), f(ctxs), f(hairpins), f(back), f(iovs), f(msgs), f(cmsgs);
  }
  uint64_t window_ms_ = 0;
  size_t cur_ = 0, prev_ = 0, keep_ = kKeep;
};

}  // namespace wm

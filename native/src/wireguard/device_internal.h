// Internals shared by the device's files (device.cc, device_tx.cc, device_rx.cc, device_mesh.cc).
#pragma once
#include <time.h>

#include <cstddef>
#include <cstdint>
#include <unordered_map>

namespace wm {
namespace device_detail {
constexpr size_t kTxArenaSize = 8 << 20;
// Free arena space needed before another TUN read: a 64 KiB super-packet cut
// at the smallest MSS, each segment in its own padded slot, fits in it.
constexpr size_t kTxReadHeadroom = 256 << 10;
constexpr int kTxMaxReads = 64;
// Arena bytes a round's control messages may fill (Device::pack_control): the rest of the arena is left to TUN
// reads, so a backlog of flushes carried over several rounds never stops the TUN path (≥ 3 reads a round).
constexpr size_t kTxCtlBudget = kTxArenaSize - 4 * kTxReadHeadroom;
// Control messages queued for the TX thread past which a peer's probe replies are dropped
// (drop_control_overflow): one budget's worth of 64-byte slots.
constexpr size_t kTxCtlQueueMax = kTxCtlBudget / 64;
// Entries a per-batch vector of the TX thread keeps room for between batches: more than a TUN batch's segments
// (≤ kTxMaxReads reads of ≤ 44 each), so a warm TX thread mallocs nothing per batch. That matters as the agent
// runs with MALLOC_ARENA_MAX=2 (README): the thread shares a malloc arena and its lock with others, and
// malloctrim.ts's trim holds each arena's lock while it walks it (tens of ms). A control round's vectors (up to
// kTxCtlQueueMax messages, one per peer) give their room back after it: such a round over every peer left
// megabytes behind for the thread's life (issue 16).
constexpr size_t kTxScratchKeep = 4096;

// Empties per-batch vectors (and the TX thread's peer index), freeing the room of any past kTxScratchKeep entries.
template <typename V>
inline void reset_one(V& v) {
  v.clear();
  if (v.capacity() > kTxScratchKeep) V().swap(v);
}
template <typename K, typename T>
inline void reset_one(std::unordered_map<K, T>& m) {
  if (m.bucket_count() > kTxScratchKeep) std::unordered_map<K, T>().swap(m);
  else if (!m.empty()) m.clear();  // (clear() wipes every bucket, even when empty)
}
template <typename... V>
inline void reset_scratch(V&... v) {
  (reset_one(v), ...);
}

constexpr int kRxBatch = 64;
constexpr size_t kRxBufSize = 65536;
constexpr int kMaxGsoSegments = 64;
constexpr size_t kMaxGsoBytes = 65000;
constexpr int kSendBatch = 64;

inline size_t align16(size_t n) { return (n + 15) & ~size_t(15); }

inline uint64_t wall_ms() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}
}  // namespace device_detail
}  // namespace wm

// Internals shared by the device's files (device.cc, device_tx.cc, device_rx.cc, device_mesh.cc).
#pragma once
#include <time.h>

#include <cstddef>
#include <cstdint>

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

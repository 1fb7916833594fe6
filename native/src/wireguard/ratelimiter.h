// Per-source handshake rate limiter, consulted only while the device is under
// load: a token bucket (20 initiations per second, burst 5) per IPv4 address and
// per IPv6 /64, as Linux's WireGuard keys them (drivers/net/wireguard/ratelimiter.c):
// whoever holds a /64 holds all of its 2^64 addresses, so one /64 is one source.
// (wireguard-go keys IPv6 by the full address, with no bound on its table.)
//
// Bounds: each family has its own table of at most kMaxEntries sources (so IPv6
// sources never crowd IPv4 ones out, nor the reverse): 2 x 65,536 entries of about
// 80 bytes, ~10 MiB at worst. A source idle for a second is forgotten, oldest first.
// A new source that finds its family's table full of sources seen within the last
// second is not refused outright: it draws on that family's overflow bucket
// (kOverflowPerSecond, burst kBurst), shared by every source left out of the table.
// So the rate admitted stays bounded while the table is full, and new sources are
// slowed then, never all refused (Linux refuses every new source once it holds
// 8 x its hash size, 65,536 entries on hosts of 1 GiB or more).
#pragma once
#include <cstdint>
#include <list>
#include <mutex>
#include <unordered_map>

namespace wm {

class RateLimiter {
 public:
  static constexpr uint64_t kPacketsPerSecond = 20;
  static constexpr uint64_t kBurst = 5;
  static constexpr uint64_t kCostNs = 1000000000ull / kPacketsPerSecond;
  static constexpr uint64_t kMaxTokensNs = kCostNs * kBurst;
  static constexpr uint64_t kIdleNs = 1000000000ull;
  static constexpr size_t kMaxEntries = 1 << 16;  // per family
  static constexpr uint64_t kOverflowPerSecond = 100;  // all the sources left out of a full table, together
  static constexpr uint64_t kOverflowCostNs = 1000000000ull / kOverflowPerSecond;

  RateLimiter();
  // ip is 4 or 16 bytes (anything else is refused); now_ns from a monotonic clock.
  bool allow(const uint8_t* ip, int bytes, uint64_t now_ns);
  // Sources tracked, both families.
  size_t size();

  // A token bucket: tokens in ns of credit, refilled at one ns per ns, at most max_ns.
  struct Bucket {
    uint64_t last_ns;
    uint64_t tokens_ns;
    bool take(uint64_t now_ns, uint64_t cost_ns, uint64_t max_ns);
  };

 private:
  // One family's sources: least recently seen at the back, so forgetting idle ones costs O(forgotten).
  class Table {
   public:
    explicit Table(uint64_t seed) : index_(16, Hash{seed}) {}
    bool allow(uint64_t key, uint64_t now_ns);
    size_t size() const { return index_.size(); }

   private:
    struct Entry {
      uint64_t key;
      Bucket bucket;
    };
    // Keyed (seeded at start) so that chosen sources cannot pile into one hash chain.
    struct Hash {
      uint64_t seed;
      size_t operator()(uint64_t k) const;
    };
    void forget_idle(uint64_t now_ns);
    std::list<Entry> lru_;
    std::unordered_map<uint64_t, std::list<Entry>::iterator, Hash> index_;
    Bucket overflow_{0, kOverflowCostNs * kBurst};
  };

  std::mutex mu_;
  Table v4_;
  Table v6_;
};

}  // namespace wm

#include "ratelimiter.h"

#include <cstring>
#include <random>

namespace wm {

bool RateLimiter::Bucket::take(uint64_t now_ns, uint64_t cost_ns, uint64_t max_ns) {
  // a clock read before last_ns (another thread's) adds nothing rather than wrapping
  uint64_t tokens = tokens_ns + (now_ns > last_ns ? now_ns - last_ns : 0);
  if (tokens > max_ns) tokens = max_ns;
  if (now_ns > last_ns) last_ns = now_ns;
  if (tokens < cost_ns) {
    tokens_ns = tokens;
    return false;
  }
  tokens_ns = tokens - cost_ns;
  return true;
}

static uint64_t random_seed() {
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd();
}

RateLimiter::RateLimiter() : v4_(random_seed()), v6_(random_seed()) {}

size_t RateLimiter::Table::Hash::operator()(uint64_t k) const {
  // splitmix64's finalizer over the seeded key
  uint64_t z = k ^ seed;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return size_t(z ^ (z >> 31));
}

void RateLimiter::Table::forget_idle(uint64_t now_ns) {
  while (!lru_.empty() && now_ns > lru_.back().bucket.last_ns && now_ns - lru_.back().bucket.last_ns > kIdleNs) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

bool RateLimiter::Table::allow(uint64_t key, uint64_t now_ns) {
  forget_idle(now_ns);
  auto it = index_.find(key);
  if (it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);  // now the most recently seen
    return it->second->bucket.take(now_ns, kCostNs, kMaxTokensNs);
  }
  // Full of sources seen within the last second: this one shares the overflow bucket.
  if (index_.size() >= kMaxEntries) return overflow_.take(now_ns, kOverflowCostNs, kOverflowCostNs * kBurst);
  lru_.push_front(Entry{key, Bucket{now_ns, kMaxTokensNs - kCostNs}});
  index_.emplace(key, lru_.begin());
  return true;
}

bool RateLimiter::allow(const uint8_t* ip, int bytes, uint64_t now_ns) {
  if (bytes != 4 && bytes != 16) return false;
  uint64_t key = 0;
  if (bytes == 4) {
    uint32_t v4;
    std::memcpy(&v4, ip, 4);
    key = v4;
  } else {
    std::memcpy(&key, ip, 8);  // the /64: its holder owns every address in it
  }
  std::lock_guard<std::mutex> lock(mu_);
  return (bytes == 4 ? v4_ : v6_).allow(key, now_ns);
}

size_t RateLimiter::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return v4_.size() + v6_.size();
}

}  // namespace wm

#include "ratelimiter.h"

namespace wm {

bool RateLimiter::allow(const uint8_t* ip, int bytes, uint64_t now_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  if (now_ns - last_sweep_ns_ > 1000000000ull) sweep(now_ns);
  std::string key(reinterpret_cast<const char*>(ip), size_t(bytes));
  auto it = table_.find(key);
  if (it == table_.end()) {
    if (table_.size() >= kMaxEntries) return false;
    table_.emplace(std::move(key), Bucket{now_ns, kMaxTokensNs - kCostNs});
    return true;
  }
  Bucket& b = it->second;
  uint64_t tokens = b.tokens_ns + (now_ns - b.last_ns);
  if (tokens > kMaxTokensNs) tokens = kMaxTokensNs;
  b.last_ns = now_ns;
  if (tokens < kCostNs) {
    b.tokens_ns = tokens;
    return false;
  }
  b.tokens_ns = tokens - kCostNs;
  return true;
}

void RateLimiter::sweep(uint64_t now_ns) {
  last_sweep_ns_ = now_ns;
  for (auto it = table_.begin(); it != table_.end();) {
    if (now_ns - it->second.last_ns > 1000000000ull)
      it = table_.erase(it);
    else
      ++it;
  }
}

size_t RateLimiter::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return table_.size();
}

}  // namespace wm

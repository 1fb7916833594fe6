#include "ipcache.h"

#include <cstring>

namespace wm {

IPCache::HostKey IPCache::host_key(const uint8_t* addr, int family_bytes) {
  HostKey k;
  std::memset(&k, 0, sizeof k);
  std::memcpy(k.addr, addr, size_t(family_bytes));
  k.family = uint32_t(family_bytes);
  return k;
}

static std::vector<uint8_t> prefix_key(const uint8_t* addr, int bytes, int cidr) {
  std::vector<uint8_t> k(2 + size_t(bytes));
  k[0] = uint8_t(bytes);
  k[1] = uint8_t(cidr);
  for (int i = 0; i < bytes; i++) {
    int keep = cidr - 8 * i;
    k[2 + size_t(i)] = keep >= 8 ? addr[i] : keep <= 0 ? 0 : uint8_t(addr[i] & (0xFF << (8 - keep)));
  }
  return k;
}

void IPCache::upsert(const uint8_t* addr, int bytes, int cidr, IpcacheValue v) {
  if (cidr >= bytes * 8) {
    hosts_.put(host_key(addr, bytes), v);
    return;
  }
  auto key = prefix_key(addr, bytes, cidr);
  auto it = prefix_ids_.find(key);
  if (it != prefix_ids_.end()) {
    prefix_values_[it->second] = v;
    return;
  }
  uint32_t id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
    prefix_values_[id] = v;
  } else {
    id = uint32_t(prefix_values_.size());
    prefix_values_.push_back(v);
  }
  prefix_ids_[key] = id;
  prefixes_.insert(addr, bytes, cidr, id);
}

bool IPCache::remove(const uint8_t* addr, int bytes, int cidr) {
  if (cidr >= bytes * 8) return hosts_.erase(host_key(addr, bytes));
  auto it = prefix_ids_.find(prefix_key(addr, bytes, cidr));
  if (it == prefix_ids_.end()) return false;
  prefixes_.remove_peer(it->second);  // each prefix has its own id
  free_ids_.push_back(it->second);
  prefix_ids_.erase(it);
  return true;
}

bool IPCache::lookup(const uint8_t* addr, int bytes, IpcacheValue* out) const {
  if (const IpcacheValue* v = hosts_.find(host_key(addr, bytes))) {
    *out = *v;
    return true;
  }
  if (prefix_ids_.empty()) return false;
  uint32_t id = prefixes_.lookup(addr, bytes);
  if (id == AllowedIPs::kNoPeer) return false;
  *out = prefix_values_[id];
  return true;
}

}  // namespace wm

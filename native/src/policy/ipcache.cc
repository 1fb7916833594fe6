#include "ipcache.h"

namespace wm {

template <typename Key, int kBits>
uint32_t LpmTables<Key, kBits>::encode(IpcacheValue v) {
  if (v.endpoint == 0 && v.identity < kLocal) return v.identity;
  uint32_t i;
  if (!free_locals_.empty()) {
    i = free_locals_.back();
    free_locals_.pop_back();
    locals_[i] = v;
  } else {
    // index 2^31 - 1 would be kFree: past 2^31 - 2 local values held at once (tens of GiB: not reached) the
    // entry is not held at all (upsert): its address takes the identity of the next shorter prefix held, if any
    if (locals_.size() >= kLocal - 1) return kFree;
    i = uint32_t(locals_.size());
    locals_.push_back(v);
  }
  return kLocal | i;
}

template <typename Key, int kBits>
void LpmTables<Key, kBits>::release(uint32_t code) {
  if (!(code & kLocal)) return;
  free_locals_.push_back(code & ~kLocal);
  if (free_locals_.size() == locals_.size()) {  // none held: their memory too
    std::vector<IpcacheValue>().swap(locals_);
    std::vector<uint32_t>().swap(free_locals_);
  }
}

template <typename Key, int kBits>
void LpmTables<Key, kBits>::upsert(Key key, int len, IpcacheValue v) {
  if (uint32_t* held = index_.find(key, len)) {
    release(*held);  // (its index may be the one encode takes back at once)
    uint32_t code = encode(v);
    if (code != kFree)
      *held = code;
    else
      index_.erase(key, len);  // no code: see encode (the old one's index is given back already)
    return;
  }
  uint32_t code = encode(v);
  if (code != kFree) index_.put(key, len, code);
}

template <typename Key, int kBits>
bool LpmTables<Key, kBits>::remove(Key key, int len) {
  const uint32_t* held = index_.find(key, len);
  if (!held) return false;
  release(*held);
  index_.erase(key, len);
  return true;
}

template class LpmTables<uint32_t, 32>;
template class LpmTables<Ip6Key, 128>;

void IPCache::upsert(const uint8_t* addr, int bytes, int cidr, IpcacheValue v) {
  if (bytes == 4)
    v4_.upsert(v4_key(addr), cidr, v);
  else
    v6_.upsert(v6_key(addr), cidr, v);
}

bool IPCache::remove(const uint8_t* addr, int bytes, int cidr) {
  return bytes == 4 ? v4_.remove(v4_key(addr), cidr) : v6_.remove(v6_key(addr), cidr);
}

}  // namespace wm

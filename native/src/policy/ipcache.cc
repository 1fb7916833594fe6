#include "ipcache.h"

namespace wm {

template <typename Key, int kBits>
LpmTables<Key, kBits>::LpmTables() {
  for (int i = 0; i <= kBits; i++) lens_[i] = 0;
}

template <typename Key, int kBits>
void LpmTables<Key, kBits>::relist() {
  nlens_ = 0;
  for (int len = kBits; len >= 0; len--)
    if (tables_[len] && tables_[len]->size()) lens_[nlens_++] = len;
}

template <typename Key, int kBits>
typename LpmTables<Key, kBits>::Table& LpmTables<Key, kBits>::table(int len) {
  auto& t = tables_[len];
  if (!t) t.reset(new Table());
  return *t;
}

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
  Table* t = &table(len);
  Key k = lpm_mask(key, len);
  if (uint32_t* held = t->find(k)) {
    release(*held);  // (its index may be the one encode takes back at once)
    uint32_t code = encode(v);
    *held = code != kFree ? code : 0;  // (0 holds no index: the remove below gives back nothing twice)
    if (code == kFree) remove(key, len);  // no code: see encode
    return;
  }
  uint32_t code = encode(v);
  if (code == kFree) {
    if (t->size() == 0) tables_[len].reset();  // made for this entry
    return;
  }
  t->put(k, code);
  size_++;
  if (t->size() == 1) relist();
}

template <typename Key, int kBits>
bool LpmTables<Key, kBits>::remove(Key key, int len) {
  auto& t = tables_[len];
  if (!t) return false;
  Key k = lpm_mask(key, len);
  const uint32_t* held = t->find(k);
  if (!held) return false;
  release(*held);
  t->erase(k);
  size_--;
  if (t->size() == 0) {
    t.reset();  // an emptied length costs neither memory nor a probe
    relist();
  }
  return true;
}

template <typename Key, int kBits>
void LpmTables<Key, kBits>::reserve(int len, size_t n) {
  table(len).reserve(n);  // (an empty table is not probed: relist skips it)
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

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
void LpmTables<Key, kBits>::upsert(Key key, int len, IpcacheValue v) {
  Table* t = &table(len);
  size_t before = t->size();
  t->put(lpm_mask(key, len), v);
  if (t->size() != before) {
    size_++;
    if (before == 0) relist();
  }
}

template <typename Key, int kBits>
bool LpmTables<Key, kBits>::remove(Key key, int len) {
  auto& t = tables_[len];
  if (!t || !t->erase(lpm_mask(key, len))) return false;
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

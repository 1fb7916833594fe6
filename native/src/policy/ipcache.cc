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
  if (!t) {
    // each length its own seeds: a collision aimed at one table says nothing about another
    uint64_t s = flatmap_seed() + uint64_t(len) * 0x9E3779B97F4A7C15ull;
    t.reset(new Table(hash_bytes(&s, sizeof s, 1), hash_bytes(&s, sizeof s, 2)));
  }
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

template <typename Key, int kBits>
void LpmTables<Key, kBits>::Table::put(Key k, IpcacheValue v) {
  if ((size_ + 1) * 2 > slots_.size()) rehash(slots_.size() * 2);
  for (size_t i = index(k);; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (!s.used) {
      s = Slot{k, v, 1};
      size_++;
      return;
    }
    if (s.key == k) {
      s.value = v;
      return;
    }
  }
}

template <typename Key, int kBits>
bool LpmTables<Key, kBits>::Table::erase(Key k) {
  size_t hole = index(k);
  for (;; hole = (hole + 1) & mask_) {
    if (!slots_[hole].used) return false;
    if (slots_[hole].key == k) break;
  }
  // Backward shift (as FlatMap): pull later entries of the probe run into the hole.
  for (size_t j = hole;;) {
    j = (j + 1) & mask_;
    Slot& s = slots_[j];
    if (!s.used) break;
    size_t home = index(s.key);
    bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
    if (movable) {
      slots_[hole] = s;
      hole = j;
    }
  }
  slots_[hole].used = 0;
  size_--;
  return true;
}

template <typename Key, int kBits>
void LpmTables<Key, kBits>::Table::reserve(size_t n) {
  size_t want = 16;
  while (want < n * 2) want *= 2;
  if (want > slots_.size()) rehash(want);
}

template <typename Key, int kBits>
void LpmTables<Key, kBits>::Table::rehash(size_t n) {
  std::vector<Slot, HugePageAllocator<Slot>> old;
  old.swap(slots_);
  slots_.assign(n, Slot());
  mask_ = n - 1;
  shift_ = 64;
  for (size_t m = n; m > 1; m >>= 1) shift_--;
  size_ = 0;
  for (const Slot& s : old)
    if (s.used) put(s.key, s.value);
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

// flatmapProbeCost (testhooks): the probe cost of FlatMap's multiply-shift tables
// (flatmap.h MulShiftHash) over a key set the test chooses, in many tables, each
// with its own secret seeds as the product draws them. Timing-free: what a lookup
// reads is computed from the keys' home slots alone (linear probing's cost does
// not depend on insertion order), so a test can hold structured key sets (pods'
// consecutive addresses, identities with a cluster id in the high bits) to the
// random-hashing bound.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../addon/util.h"
#include "../policy/flatmap.h"
#include "../policy/ipcache.h"
#include "testhooks.h"

namespace wm {
namespace testhooks {
namespace {

struct Cost {
  double mean_hit;  // slots read per successful lookup, averaged over the keys
  size_t longest;   // the longest run of occupied slots (a miss landing at its start reads it all)
};

// T: a FlatMap<uint32_t, V, MulShiftHash, ...> type; one table built from keys (distinct).
template <typename T>
Cost TableCost(const std::vector<uint32_t>& keys, size_t* slots) {
  T t;
  for (uint32_t k : keys) t.put(k, {});
  size_t cap = t.capacity(), mask = cap - 1;
  int shift = 64;
  for (size_t c = cap; c > 1; c >>= 1) shift--;
  std::vector<uint32_t> homes(cap, 0);
  for (uint32_t k : keys) homes[size_t(t.hash(k) >> shift)]++;
  // start after a slot no run crosses: where the keys carried over run out
  size_t start = 0;
  for (size_t pass = 0, carry = 0; pass < 2 * cap; pass++) {
    size_t i = pass & mask;
    carry += homes[i];
    if (carry == 0) {
      start = i;
      break;
    }
    carry--;
  }
  double total = 0;
  size_t carry = 0, run = 0, longest = 0;  // carry: keys homed at or before slot i not yet placed
  for (size_t n = 1; n <= cap; n++) {
    carry += homes[(start + n) & mask];
    total += double(carry);  // every waiting key reads this slot
    run = carry ? run + 1 : 0;
    if (run > longest) longest = run;
    if (carry) carry--;  // one of them takes it
  }
  *slots = cap;
  return Cost{keys.empty() ? 0 : total / double(keys.size()), longest};
}

// flatmapProbeCost(table: 'ipcache4' | 'identity', keys: Uint32Array, tables: number)
//   -> { slots, meanHit: number[], longest: number[] }: `tables` tables of the ipcache's IPv4 type (its fill limit)
//   or of a policy map's by-identity type, each holding the keys (duplicates dropped); one figure per table.
//   TypeError past the bounds below (checked before allocating).
Napi::Value FlatmapProbeCost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
      !info[2].IsNumber())
    return addon::ThrowType(env, "flatmapProbeCost('ipcache4' | 'identity', keys: Uint32Array, tables: number)");
  std::string table = info[0].As<Napi::String>().Utf8Value();
  if (table != "ipcache4" && table != "identity") return addon::ThrowType(env, "flatmapProbeCost: table 'ipcache4' or 'identity'");
  auto arr = info[1].As<Napi::Uint32Array>();
  // bounded before anything is allocated (the addon has no C++ exceptions: a failed allocation ends the process)
  // and in time: at most 2^22 keys, 10,000 tables, 2^28 insertions in all (~30 s here)
  double t = info[2].As<Napi::Number>().DoubleValue();
  if (!(t >= 1 && t <= 10000) || t != std::floor(t)) return addon::ThrowType(env, "flatmapProbeCost: tables an integer in 1..10000");
  int tables = int(t);
  if (arr.ElementLength() > (size_t(1) << 22) || arr.ElementLength() * size_t(tables) > (size_t(1) << 28))
    return addon::ThrowType(env, "flatmapProbeCost: at most 2^22 keys and 2^28 keys x tables");
  std::vector<uint32_t> keys(arr.Data(), arr.Data() + arr.ElementLength());
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  Napi::Array mean = Napi::Array::New(env, tables), longest = Napi::Array::New(env, tables);
  size_t slots = 0;
  for (int i = 0; i < tables; i++) {
    Cost c = table == "ipcache4" ? TableCost<LpmTables<uint32_t, 32>::Table>(keys, &slots)
                                 : TableCost<FlatMap<uint32_t, uint32_t, MulShiftHash>>(keys, &slots);
    mean.Set(uint32_t(i), c.mean_hit);
    longest.Set(uint32_t(i), double(c.longest));
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("slots", double(slots));
  o.Set("meanHit", mean);
  o.Set("longest", longest);
  return o;
}

}  // namespace

void RegisterFlatmapProbe(Napi::Env env, Napi::Object exports) {
  exports.Set("flatmapProbeCost", Napi::Function::New(env, FlatmapProbeCost));
}

}  // namespace testhooks
}  // namespace wm

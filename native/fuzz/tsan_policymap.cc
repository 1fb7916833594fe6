// PolicyMap compaction (policy/policymap.h's locking rules) under
// ThreadSanitizer: two packet-thread readers look up an endpoint's map under
// PolicyEngine::mu shared, in batches as the TX/RX threads do, while two
// control-thread writers rewrite groups of disjoint identities by delta
// (policy_map_update), which compacts the map over and over: the copy under mu
// shared, the swap under mu exclusive. Two writers make a writer land between
// another's copy and swap, so stale copies are dropped too. On a second
// endpoint a replacer swaps whole maps in (set_endpoint, or remove_endpoint and
// set_endpoint again) while a delta writer compacts that endpoint's map: a
// compaction whose copy was taken before a replace must be dropped (the swap's
// `slot != old` check), or the replaced map's copy comes back.
// Checked: TSan finds no race; a reader never misses an identity that is never
// changed, and every verdict it gets names its identity's rule (no torn or
// lost entry); after each of its updates a writer finds its identities' groups
// exactly as its reference has them (no update lost to a stale compaction),
// the map equals the references at the end, and compactions were swapped in;
// the second endpoint's marker entry always names the newest map's version.
// Built and run by run.sh (clang-14 -fsanitize=thread); exit status 1 on a
// failed check, 66 (TSan's) on a race.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "policy/engine.h"

namespace {

using wm::PolicyEntry;
constexpr uint32_t kStable = 256, kStableCount = 64;        // identities never changed
constexpr uint32_t kChurn = 4096, kChurnPerWriter = 64;     // writer w: kChurn + w * kChurnPerWriter + [0, 64)
constexpr int kWriters = 2, kRounds = 4000;
// The replaced endpoint: its maps hold a marker (rule = the map's version) and kReplaceIds one-entry groups.
constexpr uint32_t kReplaced = 2, kMarker = 9000, kReplaceIds = 256, kReplaces = 300;

// Entry k of identity id's group, version v: its rule names the identity.
PolicyEntry churn_entry(uint32_t id, uint32_t k, uint32_t v) {
  uint8_t action = k % 3 == 0 ? wm::kActionDeny : k % 3 == 1 ? wm::kActionRedirect : wm::kActionAllow;
  uint16_t port = uint16_t(1000 + k * 10 + v % 10);
  return PolicyEntry{id, 6, action, port, uint16_t(port + 5), id * 64 + k};
}

bool same(const PolicyEntry& a, const PolicyEntry& b) {
  return a.identity == b.identity && a.proto == b.proto && a.action == b.action && a.port_lo == b.port_lo &&
         a.port_hi == b.port_hi && a.rule == b.rule;
}

using Groups = std::map<uint32_t, std::vector<PolicyEntry>>;

// The map's entries() for these groups: identities ascending, in a group denies, redirects, then allows
// (each class in write order).
std::vector<PolicyEntry> in_lookup_order(Groups groups) {
  auto rank = [](uint8_t x) { return x == wm::kActionDeny ? 0 : x == wm::kActionRedirect ? 1 : 2; };
  std::vector<PolicyEntry> out;
  for (auto& [id, g] : groups) {
    std::stable_sort(g.begin(), g.end(), [&](const PolicyEntry& x, const PolicyEntry& y) { return rank(x.action) < rank(y.action); });
    out.insert(out.end(), g.begin(), g.end());
  }
  return out;
}

bool equal(const std::vector<PolicyEntry>& a, const std::vector<PolicyEntry>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), same);
}

std::shared_ptr<wm::PolicyMap> replacement(uint32_t version) {
  std::vector<PolicyEntry> v{PolicyEntry{kMarker, 6, wm::kActionAllow, 80, 80, version}};
  for (uint32_t i = 0; i < kReplaceIds; i++) v.push_back(PolicyEntry{kStable + i, 6, wm::kActionAllow, 80, 80, kStable + i});
  return std::make_shared<wm::PolicyMap>(v);
}

// Endpoint kReplaced: a delta writer grows and shrinks groups (9 slots of garbage a round: a compaction every
// ~30 rounds) until `stop`, while this thread replaces the map kReplaces times, at random points of the writer's
// cycle, and looks up the marker between replaces. Returns the lookups that saw an older map than the newest.
uint64_t replace_during_compactions(wm::PolicyEngine& eng, uint64_t* checks) {
  eng.set_endpoint(kReplaced, 301, replacement(0), nullptr);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (uint32_t round = 0; !stop.load(std::memory_order_relaxed); round++) {
      uint32_t id = kStable + round % kReplaceIds;
      std::vector<PolicyEntry> grow;
      for (uint16_t k = 0; k < 8; k++) grow.push_back(PolicyEntry{id, 6, wm::kActionAllow, uint16_t(2000 + k), uint16_t(2000 + k), id});
      eng.policy_map_update(kReplaced, true, grow, {});
      eng.policy_map_update(kReplaced, true, {}, grow);
    }
  });
  std::mt19937 rng(7);
  uint64_t stale = 0;
  for (uint32_t version = 1; version <= kReplaces; version++) {
    if (version % 2) {
      eng.set_endpoint(kReplaced, 301, replacement(version), nullptr);
    } else {
      eng.remove_endpoint(kReplaced);
      eng.set_endpoint(kReplaced, 301, replacement(version), nullptr);
    }
    for (uint32_t i = 0, n = 1 + rng() % 64; i < n; i++) {
      {
        std::shared_lock<std::shared_mutex> lock(eng.mu);
        wm::PolicyResult res{};
        (*checks)++;
        if (!eng.policy_lookup(kReplaced, true, kMarker, 6, 80, &res) || res.rule != version) stale++;
      }
      std::this_thread::yield();
    }
  }
  stop.store(true);
  writer.join();
  return stale;
}

}  // namespace

int main() {
  wm::PolicyEngine eng;
  std::vector<PolicyEntry> initial;
  for (uint32_t i = 0; i < kStableCount; i++) initial.push_back(PolicyEntry{kStable + i, 6, wm::kActionAllow, 80, 80, kStable + i});
  eng.set_endpoint(1, 300, std::make_shared<wm::PolicyMap>(initial), nullptr);

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> lookups{0}, missed{0}, torn{0}, lost{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; r++)
    readers.emplace_back([&, r] {
      std::mt19937 rng(uint32_t(r + 1));
      while (!stop.load(std::memory_order_relaxed)) {
        std::shared_lock<std::shared_mutex> lock(eng.mu);  // one batch
        for (int i = 0; i < 32; i++) {
          wm::PolicyResult res{};
          uint32_t stable = kStable + rng() % kStableCount;
          if (!eng.policy_lookup(1, true, stable, 6, 80, &res) || res.verdict != wm::kPolicyAllow || res.rule != stable)
            missed.fetch_add(1, std::memory_order_relaxed);
          uint32_t id = kChurn + rng() % (kWriters * kChurnPerWriter);
          uint16_t port = uint16_t(1000 + rng() % 60);
          if (eng.policy_lookup(1, true, id, 6, port, &res) && res.verdict != wm::kPolicyDefaultDeny && res.rule / 64 != id)
            torn.fetch_add(1, std::memory_order_relaxed);
          lookups.fetch_add(2, std::memory_order_relaxed);
        }
      }
    });
  std::vector<Groups> refs(kWriters);
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; w++)
    writers.emplace_back([&, w] {
      std::mt19937 rng(uint32_t(100 + w));
      Groups& ref = refs[size_t(w)];
      uint32_t first = kChurn + uint32_t(w) * kChurnPerWriter;
      std::vector<PolicyEntry> got, mine;
      for (uint32_t round = 0; round < uint32_t(kRounds); round++) {
        uint32_t id = first + rng() % kChurnPerWriter;
        std::vector<PolicyEntry> removes = ref[id], upserts;
        for (uint32_t k = 0, n = rng() % 6; k < n; k++) upserts.push_back(churn_entry(id, k, round));
        eng.policy_map_update(1, true, upserts, removes);
        if (upserts.empty())
          ref.erase(id);
        else
          ref[id] = upserts;
        // Only this writer changes these identities: the map holds exactly its reference for them now. A stale
        // compaction swapped in over one of its updates shows here (a later rewrite of the group would hide it).
        eng.policy_map_entries(1, true, &got);
        mine.clear();
        for (const PolicyEntry& e : got)
          if (e.identity >= first && e.identity < first + kChurnPerWriter) mine.push_back(e);
        if (!equal(mine, in_lookup_order(ref))) lost.fetch_add(1, std::memory_order_relaxed);
      }
    });
  for (std::thread& t : writers) t.join();
  stop.store(true);
  for (std::thread& t : readers) t.join();
  // After the readers: their batches under mu shared would starve the replacer's exclusive holds.
  uint64_t replace_checks = 0, replace_stale = replace_during_compactions(eng, &replace_checks);

  // The map now: the stable identities and every writer's groups.
  Groups all;
  for (const PolicyEntry& e : initial) all[e.identity].push_back(e);
  for (Groups& ref : refs) all.insert(ref.begin(), ref.end());
  std::vector<PolicyEntry> got;
  eng.policy_map_entries(1, true, &got);
  bool final_equal = equal(got, in_lookup_order(all));
  std::printf("tsan_policymap: %llu lookups, %llu missed, %llu torn; %llu writer checks lost an update; %llu compactions "
              "swapped in, %llu dropped (stale); final map %s the references (%zu entries); %llu of %llu marker lookups "
              "saw a replaced map\n",
              (unsigned long long)lookups.load(), (unsigned long long)missed.load(), (unsigned long long)torn.load(),
              (unsigned long long)lost.load(),
              (unsigned long long)eng.compactions(), (unsigned long long)eng.compactions_dropped(),
              final_equal ? "equals" : "DIFFERS FROM", got.size(), (unsigned long long)replace_stale,
              (unsigned long long)replace_checks);
  return missed.load() || torn.load() || lost.load() || !final_equal || eng.compactions() == 0 || replace_stale ? 1 : 0;
}

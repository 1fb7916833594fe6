// ipcache: IP address or CIDR -> (security identity, local endpoint), the
// native counterpart of Cilium's ipcache map.
//
// Lookup is longest-prefix match. Nearly every entry is a host address (an
// endpoint's /32 or /128, a node's address), so those live in an exact-match
// hash table, which is always the longest match when it hits; the few real
// prefixes (CIDR identities from policies, pod CIDRs as "init") live in the
// path-compressed trie that cryptokey routing uses (allowedips.h), whose value
// is an index into this table's prefix values.
//
// Not thread-safe: PolicyEngine guards it with its shared mutex.
#pragma once
#include <cstdint>
#include <map>
#include <vector>

#include "../wireguard/allowedips.h"
#include "flatmap.h"

namespace wm {

struct IpcacheValue {
  uint32_t identity = 0;
  uint32_t endpoint = 0;  // local endpoint id, 0 = not on this node
};

class IPCache {
 public:
  IPCache() : hosts_(1024) {}
  // family_bytes 4 or 16; cidr is the prefix length.
  void upsert(const uint8_t* addr, int family_bytes, int cidr, IpcacheValue v);
  bool remove(const uint8_t* addr, int family_bytes, int cidr);
  bool lookup(const uint8_t* addr, int family_bytes, IpcacheValue* out) const;
  size_t size() const { return hosts_.size() + prefix_ids_.size(); }
  void reserve(size_t hosts) { hosts_.reserve(hosts); }

 private:
  struct HostKey {
    uint8_t addr[16];
    uint32_t family;
  };
  static HostKey host_key(const uint8_t* addr, int family_bytes);

  FlatMap<HostKey, IpcacheValue> hosts_;
  AllowedIPs prefixes_;
  // (family, cidr, masked address) -> index into prefix_values_
  std::map<std::vector<uint8_t>, uint32_t> prefix_ids_;
  std::vector<IpcacheValue> prefix_values_;
  std::vector<uint32_t> free_ids_;
};

}  // namespace wm

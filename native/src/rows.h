// The binary rows TypeScript and the addon exchange (docs/wire-format.md): every layout in one place,
// each pinned by static_asserts, with its TypeScript twin in src/native/rows.ts. Rows are
// little-endian and read with memcpy (a row in a Buffer has no alignment), so the host must be too.
//
// One address-family encoding in every row: 4 = IPv4 (the first 4 address bytes), 6 = IPv6.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "policy/flows.h"
#include "policy/policymap.h"
#include "services/lb.h"

namespace wm {
namespace rows {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "rows are little-endian and read by memcpy");

enum Family : uint8_t { kFamilyV4 = 4, kFamilyV6 = 6 };

// Address bytes of a family (4 or 16), 0 for anything else.
inline int family_bytes(uint8_t family) { return family == kFamilyV4 ? 4 : family == kFamilyV6 ? 16 : 0; }

#pragma pack(push, 1)
// Device.ipcacheUpdate: one prefix and what it maps to.
struct IpcacheRow {
  uint8_t family;
  uint8_t prefix_len;
  uint8_t reserved[2];
  uint32_t identity;
  uint32_t endpoint;  // local endpoint id, 0 = not on this node
  uint8_t addr[16];
};
// Device.setEndpointPolicy: one policy map entry (policy/policymap.h).
struct PolicyRow {
  uint32_t identity;  // 0 = any
  uint8_t proto;      // 0 = any
  uint8_t action;     // PolicyAction: allow, deny, redirect to the L7 proxy
  uint16_t port_lo;
  uint16_t port_hi;
  uint8_t reserved[2];
  uint32_t rule;
};
// Device.serviceUpsert / servicePick: a service frontend (VIP, protocol, port).
struct FrontendRow {
  uint8_t family;
  uint8_t proto;  // kProtoTCP or kProtoUDP
  uint16_t port;
  uint8_t addr[16];
};
// Device.serviceUpsert and maglevBuild: a backend and its weight (0 = keeps its flows, takes no new ones).
struct BackendRow {
  uint8_t family;
  uint8_t reserved;
  uint16_t port;
  uint32_t weight;
  uint8_t addr[16];
};
// L7Proxy.drain: one L7 record; method, path and host are text[text_offset ..] in that order.
struct L7RecordRow {
  double time_ms;  // wall clock
  uint8_t client[4];
  uint8_t dst[4];
  uint16_t client_port;
  uint16_t dst_port;
  uint32_t identity;
  uint16_t status;
  uint8_t denied;
  uint8_t reserved;
  uint32_t latency_us;
  int32_t ref;  // the agent's rule handle, -1 = none
  uint32_t generation;
  uint32_t text_offset;
  uint16_t method_len, path_len, host_len;
  uint8_t reserved2[6];
};
// Device.allowedIPs (addon -> agent): one prefix a peer holds, the address masked to its length.
struct AllowedIpRow {
  uint8_t family;
  uint8_t prefix_len;
  uint8_t addr[16];
};
#pragma pack(pop)

static_assert(sizeof(AllowedIpRow) == 18 && offsetof(AllowedIpRow, prefix_len) == 1 && offsetof(AllowedIpRow, addr) == 2,
              "allowed-IP row layout");
static_assert(sizeof(IpcacheRow) == 28 && offsetof(IpcacheRow, prefix_len) == 1 && offsetof(IpcacheRow, identity) == 4 &&
              offsetof(IpcacheRow, endpoint) == 8 && offsetof(IpcacheRow, addr) == 12, "ipcache row layout");
static_assert(sizeof(PolicyRow) == 16 && offsetof(PolicyRow, proto) == 4 && offsetof(PolicyRow, action) == 5 &&
              offsetof(PolicyRow, port_lo) == 6 && offsetof(PolicyRow, port_hi) == 8 && offsetof(PolicyRow, rule) == 12,
              "policy row layout");
static_assert(sizeof(FrontendRow) == 20 && offsetof(FrontendRow, proto) == 1 && offsetof(FrontendRow, port) == 2 &&
              offsetof(FrontendRow, addr) == 4, "frontend row layout");
static_assert(sizeof(BackendRow) == 24 && offsetof(BackendRow, port) == 2 && offsetof(BackendRow, weight) == 4 &&
              offsetof(BackendRow, addr) == 8, "backend row layout");
static_assert(sizeof(L7RecordRow) == 56 && offsetof(L7RecordRow, client) == 8 && offsetof(L7RecordRow, dst) == 12 &&
              offsetof(L7RecordRow, client_port) == 16 && offsetof(L7RecordRow, dst_port) == 18 &&
              offsetof(L7RecordRow, identity) == 20 && offsetof(L7RecordRow, status) == 24 &&
              offsetof(L7RecordRow, denied) == 26 && offsetof(L7RecordRow, latency_us) == 28 &&
              offsetof(L7RecordRow, ref) == 32 && offsetof(L7RecordRow, generation) == 36 &&
              offsetof(L7RecordRow, text_offset) == 40 && offsetof(L7RecordRow, method_len) == 44 &&
              offsetof(L7RecordRow, path_len) == 46 && offsetof(L7RecordRow, host_len) == 48, "L7 record layout");
// Device.drainFlows hands out the engine's FlowRecord (policy/flows.h) as it is.
static_assert(sizeof(FlowRecord) == 72 && offsetof(FlowRecord, verdict) == 8 && offsetof(FlowRecord, family) == 12 &&
              offsetof(FlowRecord, flags) == 13 && offsetof(FlowRecord, sport) == 16 && offsetof(FlowRecord, dport) == 18 &&
              offsetof(FlowRecord, src_identity) == 20 && offsetof(FlowRecord, dst_identity) == 24 &&
              offsetof(FlowRecord, rule) == 28 && offsetof(FlowRecord, peer) == 32 && offsetof(FlowRecord, src) == 40 &&
              offsetof(FlowRecord, dst) == 56, "flow record layout");

// Row i of a buffer of rows (the caller checked len % sizeof(Row) == 0).
template <typename Row>
Row row_at(const uint8_t* data, size_t i) {
  Row r;
  std::memcpy(&r, data + i * sizeof(Row), sizeof(Row));
  return r;
}

// A frontend row: false unless family 4|6, protocol TCP|UDP, port 1..65535.
inline bool decode_frontend(const uint8_t* p, Frontend* fe) {
  FrontendRow r = row_at<FrontendRow>(p, 0);
  std::memset(fe, 0, sizeof *fe);
  fe->family = r.family;
  fe->proto = r.proto;
  fe->port = r.port;
  if (!family_bytes(r.family) || (r.proto != kProtoTCP && r.proto != kProtoUDP) || r.port == 0) return false;
  std::memcpy(fe->addr, r.addr, size_t(family_bytes(r.family)));
  return true;
}

// Backend rows, appended to keys and weights: false unless len is whole rows, each family 4|6 and port 1..65535.
inline bool decode_backends(const uint8_t* p, size_t len, std::vector<BackendKey>* keys, std::vector<uint32_t>* weights) {
  if (len % sizeof(BackendRow)) return false;
  for (size_t i = 0; i < len / sizeof(BackendRow); i++) {
    BackendRow r = row_at<BackendRow>(p, i);
    BackendKey k;
    std::memset(&k, 0, sizeof k);
    k.family = r.family;
    k.port = r.port;
    if (!family_bytes(r.family) || r.port == 0) return false;
    std::memcpy(k.addr, r.addr, size_t(family_bytes(r.family)));
    keys->push_back(k);
    weights->push_back(r.weight);
  }
  return true;
}

// Policy rows as entries: false unless len is whole rows, each action known and port_lo <= port_hi.
inline bool decode_policy_entries(const uint8_t* p, size_t len, std::vector<PolicyEntry>* out) {
  if (len % sizeof(PolicyRow)) return false;
  out->resize(len / sizeof(PolicyRow));
  for (size_t i = 0; i < out->size(); i++) {
    PolicyRow r = row_at<PolicyRow>(p, i);
    if (r.action > kActionRedirect || r.port_hi < r.port_lo) return false;
    (*out)[i] = PolicyEntry{r.identity, r.proto, r.action, r.port_lo, r.port_hi, r.rule};
  }
  return true;
}

// Policy rows as a map (decode_policy_entries' checks).
inline bool decode_policy(const uint8_t* p, size_t len, std::shared_ptr<PolicyMap>* out) {
  std::vector<PolicyEntry> entries;
  if (!decode_policy_entries(p, len, &entries)) return false;
  *out = std::make_shared<PolicyMap>(std::move(entries));
  return true;
}

}  // namespace rows
}  // namespace wm

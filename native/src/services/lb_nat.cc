// Service NAT (forward and reverse translation, per-client quotas, expiry) and the
// redirects of flows to the L7 proxy. Service table and selection: lb.cc.
#include "lb.h"

#include <algorithm>
#include <cstring>

#include "../net/reject.h"

namespace wm {

namespace {
constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;
// Same idle timeouts as policy conntrack (conntrack.h): a TCP flow no reply
// has passed yet (SYN only) is half-open, 60 s.
constexpr uint32_t kTcpTimeout = 3600, kHalfOpenTimeout = 60, kClosingTimeout = 10, kOtherTimeout = 60;

// Translatable: TCP or UDP with the whole header (the checksum is rewritten),
// and not a later fragment.
bool translatable(const uint8_t* pkt, const IpInfo& ip) {
  if (ip.proto != kProtoTCP && ip.proto != kProtoUDP) return false;
  if (ip.version == 4 && (load_be16(pkt + 6) & 0x1FFF) != 0) return false;
  return ip.total_len - ip.header_len >= (ip.proto == kProtoTCP ? 20u : 8u);
}
}  // namespace

LoadBalancer::NatKey LoadBalancer::packet_key(const IpInfo& ip, uint16_t sport, uint16_t dport, uint8_t kind) {
  NatKey k;
  std::memset(&k, 0, sizeof k);
  std::memcpy(k.src, ip.src, size_t(ip.addr_len));
  std::memcpy(k.dst, ip.dst, size_t(ip.addr_len));
  k.sport = sport;
  k.dport = dport;
  k.proto = ip.proto;
  k.family = uint8_t(ip.version);
  k.kind = kind;
  return k;
}

LoadBalancer::NatKey LoadBalancer::reverse_of(const NatKey& first, const uint8_t* to, uint16_t to_port) {
  NatKey rk;
  std::memset(&rk, 0, sizeof rk);
  std::memcpy(rk.src, to, 16);
  std::memcpy(rk.dst, first.src, 16);
  rk.sport = to_port;
  rk.dport = first.sport;
  rk.proto = first.proto;
  rk.family = first.family;
  rk.kind = kNatReverse;
  return rk;
}

bool LoadBalancer::add_pair(const NatKey& first, const uint8_t* to, uint16_t to_port, const uint8_t* orig_dst,
                            uint16_t orig_port, uint32_t service, uint32_t identity, bool closing, uint32_t now_s) {
  NatEntry fwd;
  std::memset(&fwd, 0, sizeof fwd);
  std::memcpy(fwd.addr, to, 16);
  fwd.port = to_port;
  fwd.closing = closing;
  fwd.tcp = first.proto == kProtoTCP;
  fwd.service = service;
  fwd.last_s = now_s;
  fwd.identity = identity;
  fwd.pair_kind = first.kind;
  NatEntry rev = fwd;
  std::memcpy(rev.addr, orig_dst, 16);
  rev.port = orig_port;
  // the reply comes from where the flow was sent, to the client
  NatKey rk = reverse_of(first, to, to_port);
  Client client = client_of(first);
  if (!charge(client, now_s)) {
    count(kLbNatQuotaFull);
    return false;
  }
  for (int attempt = 0; attempt < 2; attempt++) {
    if (nat_.put(first, fwd) && nat_.put(rk, rev)) {
      if (first.kind == kNatRedirect) redirects_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    nat_.erase(first);
    if (attempt == 0 && sweep_evictable(now_s) == 0) break;
  }
  release(client);
  count(kLbNatFull);
  return false;
}

bool LoadBalancer::charge(const Client& c, uint32_t now_s) {
  size_t quota = per_client_.load(std::memory_order_relaxed);
  for (int attempt = 0; attempt < 2; attempt++) {
    {
      std::lock_guard<std::mutex> lock(quota_mu_);
      Usage& u = clients_[c];
      if (size_t(u.pairs + 1) * 2 <= quota) {
        u.pairs++;
        size_t held = size_t(u.pairs) * 2, peak = client_peak_.load(std::memory_order_relaxed);
        while (held > peak && !client_peak_.compare_exchange_weak(peak, held)) {
        }
        return true;
      }
      // full: its own evictable pairs make room, at most once a second (a
      // quota full of answered flows must not cost a table scan per packet)
      if (attempt > 0 || u.last_sweep_s == now_s) return false;
      u.last_sweep_s = now_s;
    }
    count(kLbNatQuotaSweeps);
    count(kLbNatEvicted, sweep_pairs(now_s, &c));
  }
  return false;
}

void LoadBalancer::release(const Client& c, int64_t pairs) {
  std::lock_guard<std::mutex> lock(quota_mu_);
  auto it = clients_.find(c);
  if (it == clients_.end()) return;
  it->second.pairs -= pairs;
  // an idle client's record goes (its sweep time with it: a new flood starts a new second anyway)
  if (it->second.pairs <= 0) clients_.erase(it);
}

size_t LoadBalancer::nat_client_max() {
  std::lock_guard<std::mutex> lock(quota_mu_);
  int64_t most = 0;
  for (const auto& [c, u] : clients_) most = std::max(most, u.pairs);
  return size_t(most) * 2;
}

LbResult LoadBalancer::forward(uint8_t* pkt, const IpInfo& ip, uint16_t sport, uint16_t* dport, uint8_t tcp_flags,
                               uint32_t now_s, bool* created) {
  if (created) *created = false;
  if (!translatable(pkt, ip)) return kLbNone;
  Frontend fe;
  std::memset(&fe, 0, sizeof fe);
  std::memcpy(fe.addr, ip.dst, size_t(ip.addr_len));
  fe.port = *dport;
  fe.proto = ip.proto;
  fe.family = uint8_t(ip.version);
  const LbService* const* found = frontends_.find(fe);
  if (!found) return kLbNone;
  const LbService* svc = *found;
  NatKey k = packet_key(ip, sport, *dport, kNatForward);
  bool closing = ip.proto == kProtoTCP && (tcp_flags & (kTcpFin | kTcpRst));
  BackendKey be;
  std::memset(&be, 0, sizeof be);
  int state = nat_.with(k, [&](NatEntry* e) {
    if (!e) return 0;
    std::memcpy(be.addr, e->addr, 16);
    be.port = e->port;
    be.family = uint8_t(ip.version);
    if (!svc->alive(be)) return 2;
    e->last_s = now_s;
    if (closing) e->closing = 1;
    return 1;
  });
  if (state == 2) {
    // The backend is gone: forget the flow and tell the client now.
    NatKey rk = reverse_of(k, be.addr, be.port);
    if (nat_.erase(k)) release(client_of(k));
    nat_.erase(rk);
    count(kLbRejectDeadBackend);
    return kLbReject;
  }
  if (state == 0) {
    const BackendKey* pick = nullptr;
    select(fe, ip.src, sport, &pick);
    if (!pick) {
      // A TCP segment of a flow we have no entry for (this agent restarted and
      // lost its table, or the flow outlived it) while no backend is usable
      // yet: drop it and let TCP retransmit, rather than reset a connection
      // whose backend may be fine. Only a new connection (SYN) is refused now.
      if (ip.proto == kProtoTCP && !(tcp_flags & kTcpSyn)) {
        count(kLbDropMidflowNoBackend);
        return kLbDrop;
      }
      count(kLbRejectNoBackend);
      return kLbReject;
    }
    be = *pick;
    // Full table: the flow still goes to its backend (the hash picks the same
    // one while the table does not change), but its replies are not translated.
    bool added = add_pair(k, be.addr, be.port, fe.addr, fe.port, svc->id, 0, closing, now_s);
    if (created) *created = added;
    count(kLbNewFlows);
  }
  nat_rewrite(pkt, ip, true, be.addr, be.port);
  *dport = be.port;
  return kLbTranslated;
}

bool LoadBalancer::reverse(uint8_t* pkt, const IpInfo& ip, uint16_t* sport, uint16_t dport, uint8_t tcp_flags,
                           uint32_t now_s) {
  if (nat_.size() == 0 || !translatable(pkt, ip)) return false;
  if (!translate(pkt, ip, packet_key(ip, *sport, dport, kNatReverse), false, sport, tcp_flags, now_s)) return false;
  count(kLbReverseTranslated);
  return true;
}

bool LoadBalancer::translate(uint8_t* pkt, const IpInfo& ip, const NatKey& k, bool dst, uint16_t* port,
                             uint8_t tcp_flags, uint32_t now_s) {
  bool closing = ip.proto == kProtoTCP && (tcp_flags & (kTcpFin | kTcpRst));
  uint8_t to[16];
  uint16_t to_port = 0;
  bool hit = nat_.with(k, [&](NatEntry* e) {
    if (!e) return false;
    std::memcpy(to, e->addr, 16);
    to_port = e->port;
    e->last_s = now_s;
    if (closing) e->closing = 1;
    if (k.kind == kNatReverse) e->replied = 1;
    return true;
  });
  if (!hit) return false;
  nat_rewrite(pkt, ip, dst, to, to_port);
  *port = to_port;
  return true;
}

void LoadBalancer::set_proxy(const uint8_t addr[4], uint16_t port) {
  std::unique_lock<std::shared_mutex> lock(mu);
  std::memcpy(proxy_addr_, addr, 4);
  proxy_port_.store(port, std::memory_order_relaxed);
}

bool LoadBalancer::redirected(uint8_t* pkt, const IpInfo& ip, uint16_t sport, uint16_t* dport, uint8_t tcp_flags,
                              uint32_t now_s) {
  if (!proxy_active() || ip.proto != kProtoTCP || ip.version != 4 || !translatable(pkt, ip)) return false;
  NatKey k = packet_key(ip, sport, *dport, kNatRedirect);
  if ((tcp_flags & kTcpSyn) && !(tcp_flags & kTcpAck)) {
    // A new connection on a key an old one left behind (the address reused by
    // another pod, a client relabelled): decided anew by policy with the
    // identity of now, never by the old pair and the identity it recorded.
    NatEntry old;
    bool had = nat_.with(k, [&](NatEntry* e) {
      if (!e) return false;
      old = *e;
      return true;
    });
    if (had && nat_.erase(k)) {
      redirects_.fetch_sub(1, std::memory_order_relaxed);
      release(client_of(k));
      nat_.erase(twin_of(k, old));
    }
    return false;
  }
  return translate(pkt, ip, k, true, dport, tcp_flags, now_s);
}

bool LoadBalancer::redirect(uint8_t* pkt, const IpInfo& ip, uint16_t sport, uint16_t* dport, uint32_t identity,
                            uint8_t tcp_flags, uint32_t now_s) {
  uint16_t pport = proxy_port_.load(std::memory_order_relaxed);
  if (pport == 0 || ip.proto != kProtoTCP || ip.version != 4 || !translatable(pkt, ip)) return false;
  NatKey k = packet_key(ip, sport, *dport, kNatRedirect);
  uint8_t to[16] = {0};
  std::memcpy(to, proxy_addr_, 4);
  if (!add_pair(k, to, pport, k.dst, k.dport, 0, identity, (tcp_flags & (kTcpFin | kTcpRst)) != 0, now_s)) return false;
  nat_rewrite(pkt, ip, true, to, pport);
  *dport = pport;
  return true;
}

bool LoadBalancer::proxy_original(const uint8_t client[4], uint16_t client_port, uint8_t dst[4], uint16_t* dst_port,
                                  uint32_t* identity) {
  NatKey k;
  std::memset(&k, 0, sizeof k);
  {
    std::shared_lock<std::shared_mutex> lock(mu);
    std::memcpy(k.src, proxy_addr_, 4);
    k.sport = proxy_port_.load(std::memory_order_relaxed);
  }
  std::memcpy(k.dst, client, 4);
  k.dport = client_port;
  k.proto = kProtoTCP;
  k.family = 4;
  k.kind = kNatReverse;
  return nat_.with(k, [&](NatEntry* e) {
    if (!e || e->pair_kind != kNatRedirect) return false;
    std::memcpy(dst, e->addr, 4);
    *dst_port = e->port;
    *identity = e->identity;
    return true;
  });
}

LoadBalancer::NatKey LoadBalancer::twin_of(const NatKey& k, const NatEntry& e) {
  // first (client -> VIP / pod) holds where it went; reverse (there -> client) the original destination
  bool rev = k.kind == kNatReverse;
  NatKey t;
  std::memset(&t, 0, sizeof t);
  std::memcpy(t.src, rev ? k.dst : e.addr, 16);
  std::memcpy(t.dst, rev ? e.addr : k.src, 16);
  t.sport = rev ? k.dport : e.port;
  t.dport = rev ? e.port : k.sport;
  t.proto = k.proto;
  t.family = k.family;
  t.kind = rev ? e.pair_kind : uint8_t(kNatReverse);
  return t;
}

void LoadBalancer::forget(const IpInfo& ip, uint16_t sport, uint16_t backend_port, const uint8_t* vip, uint16_t vport) {
  NatKey k = packet_key(ip, sport, vport, kNatForward);
  std::memset(k.dst, 0, 16);
  std::memcpy(k.dst, vip, size_t(ip.addr_len));
  uint8_t backend[16] = {};
  std::memcpy(backend, ip.dst, size_t(ip.addr_len));  // the backend, after translation
  NatKey rk = reverse_of(k, backend, backend_port);
  if (nat_.erase(k)) release(client_of(k));
  nat_.erase(rk);
}

size_t LoadBalancer::sweep_evictable(uint32_t now_s) {
  uint32_t last = last_eviction_s_.load(std::memory_order_relaxed);
  if (last == now_s || !last_eviction_s_.compare_exchange_strong(last, now_s)) return 0;
  // the flooder first: the client holding most pairs
  Client top{};
  bool any = false;
  {
    std::lock_guard<std::mutex> lock(quota_mu_);
    int64_t most = 0;
    for (const auto& [c, u] : clients_)
      if (u.pairs > most) {
        most = u.pairs;
        top = c;
        any = true;
      }
  }
  size_t removed = any ? sweep_pairs(now_s, &top) : 0;
  if (removed == 0) removed = sweep_pairs(now_s, nullptr);
  count(kLbNatEvicted, removed);
  return removed;
}

size_t LoadBalancer::sweep_pairs(uint32_t now_s, const Client* only) {
  // a pair goes when no reply has passed (its reverse entry unreplied) or either side closed it
  std::vector<NatKey> twins;
  std::vector<Client> gone;  // the clients of the pairs whose first entry went
  size_t removed = nat_.erase_if([&](const NatKey& k, const NatEntry& e) {
    if (now_s - e.last_s < 1) return false;
    if (!(e.closing || (k.kind == kNatReverse && !e.replied))) return false;
    NatKey twin = twin_of(k, e);
    const NatKey& first = k.kind == kNatReverse ? twin : k;
    if (only && !(client_of(first) == *only)) return false;
    twins.push_back(twin);
    if (k.kind != kNatReverse) gone.push_back(client_of(k));
    if (k.kind == kNatRedirect) redirects_.fetch_sub(1, std::memory_order_relaxed);
    return true;
  });
  for (const NatKey& t : twins) {
    if (!nat_.erase(t)) continue;
    removed++;
    if (t.kind != kNatReverse) gone.push_back(client_of(t));
    if (t.kind == kNatRedirect) redirects_.fetch_sub(1, std::memory_order_relaxed);
  }
  for (const Client& c : gone) release(c);
  return removed;
}

size_t LoadBalancer::gc(uint32_t now_s) {
  auto expired = [now_s](const NatEntry& e) {
    // a first entry never sees replies itself: its reverse twin (checked too) carries the flow's answer
    uint32_t timeout = e.closing ? kClosingTimeout : !e.tcp ? kOtherTimeout : e.replied ? kTcpTimeout : kHalfOpenTimeout;
    return now_s - e.last_s > timeout;
  };
  // A flow's two entries go together, once both are idle: a one-way UDP
  // stream keeps its reverse entry as long as it keeps sending.
  std::vector<std::pair<NatKey, NatEntry>> candidates;
  nat_.erase_if([&](const NatKey& k, const NatEntry& e) {
    if (expired(e)) candidates.emplace_back(k, e);
    return false;
  });
  size_t removed = 0;
  for (const auto& [k, e] : candidates) {
    NatKey twin = twin_of(k, e);
    bool twin_idle = nat_.with(twin, [&](NatEntry* t) { return !t || expired(*t); });
    if (!twin_idle) continue;
    const NatKey& first = k.kind == kNatReverse ? twin : k;
    bool first_gone = nat_.erase(first);  // the pair's first entry
    if (first_gone) release(client_of(first));
    removed += first_gone ? 1 : 0;
    removed += nat_.erase(k.kind == kNatReverse ? k : twin) ? 1 : 0;
    NatKind first_kind = k.kind == kNatReverse ? NatKind(e.pair_kind) : NatKind(k.kind);
    if (first_gone && first_kind == kNatRedirect) redirects_.fetch_sub(1, std::memory_order_relaxed);
  }
  return removed;
}

}  // namespace wm

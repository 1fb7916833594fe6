// The TX thread: TUN reads -> policy and routing -> encryption -> UDP sends
// (pipeline and locking rules: device.h).
#include "device.h"

#include "../net/reject.h"

#include <errno.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <unordered_map>

#include "../net/ip.h"
#include "../net/offload.h"
#include "messages.h"
#include "device_internal.h"
#include "tx_scratch.h"

namespace wm {

using namespace device_detail;

void Device::tx_loop() {
  std::vector<uint8_t> arena(kTxArenaSize);
  std::vector<uint8_t> readbuf(kVnetHdrSize + 65536);
  std::vector<size_t> seg_lens(1024);
  TxScratch s;
  std::vector<TxSeg>& segs = s.segs;
  std::vector<Ctl>& ctl = s.ctl;
  while (running_.load(std::memory_order_relaxed)) {
    pollfd fds[2] = {{tx_wake_, POLLIN, 0}, {tun_.fd, POLLIN, 0}};
    int nfds = tun_.fd >= 0 ? 2 : 1;
    if (poll(fds, nfds, probe_round_due(1000)) < 0 && errno != EINTR) break;
    if (!running_.load()) break;
    size_t used = 0;
    size_t batch = 0;  // control messages taken or segments read, whichever more (TxScratch::reset)
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      if (read(tx_wake_, &v, 8) < 0) {}
      {
        std::lock_guard<std::mutex> lock(ctl_mu_);
        ctl.swap(ctl_);
        ctl_.clear();
      }
      size_t done;
      {
        std::shared_lock<std::shared_mutex> lock(table_mu_);
        uint64_t dropped = 0;
        done = pack_control(ctl.data(), ctl.size(), [this](uint32_t id) { return find_peer(id); }, arena.data(),
                            kTxCtlBudget, &used, &segs, &dropped);
        if (dropped) count(kDropStageOverflow, dropped);
      }
      if (done < ctl.size()) {
        // The arena is full: the rest waits for the next round, ahead of what came meanwhile, and the
        // wake-up makes that round come at once (ctl_mu_ taken alone, after table_mu_ is released).
        {
          std::lock_guard<std::mutex> lock(ctl_mu_);
          ctl_.insert(ctl_.begin(), ctl.begin() + std::ptrdiff_t(done), ctl.end());
        }
        uint64_t one = 1;
        if (write(tx_wake_, &one, 8) < 0) {}
      }
      batch = ctl.size();
    }
    if (nfds == 2 && (fds[1].revents & (POLLERR | POLLHUP | POLLNVAL))) {
      Event e;
      e.kind = kEventTunClosed;
      push_event(std::move(e));
      break;
    }
    bool tun_closed = false;
    if (nfds == 2 && (fds[1].revents & POLLIN)) {
      for (int r = 0; r < kTxMaxReads && arena.size() - used > kTxReadHeadroom; r++) {
        ssize_t n = read(tun_.fd, readbuf.data(), readbuf.size());
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) break;
          tun_closed = true;  // EBADFD/EIO: the interface was deleted
          break;
        }
        VnetHdr h;
        const uint8_t* pkt = readbuf.data();
        size_t len = size_t(n);
        if (tun_.vnet_hdr) {
          if (len < kVnetHdrSize) {
            count(kDropMalformedTun);
            continue;
          }
          vnet_decode(readbuf.data(), &h);
          pkt += kVnetHdrSize;
          len -= kVnetHdrSize;
        }
        size_t max_seg = max_segment_size(h, pkt, len);
        if (max_seg == 0) {
          count(kDropMalformedTun);
          continue;
        }
        constexpr size_t kHead = 16 + kTagSize;
        size_t stride = align16(kHead + max_seg + 32);
        int max_segs = int(std::min<size_t>((arena.size() - used) / stride, seg_lens.size()));
        int nseg = split_packet(h, pkt, len, arena.data() + used + kHead, stride, seg_lens.data(), max_segs);
        if (nseg < 0) {
          count(kDropMalformedTun);
          continue;
        }
        for (int i = 0; i < nseg; i++)
          segs.push_back(TxSeg{arena.data() + used + size_t(i) * stride + kHead, seg_lens[i], false, 0});
        used += size_t(nseg) * stride;
      }
    }
    if (!segs.empty()) tx_process(s);
    s.reset(monotonic_ms(), std::max(batch, segs.size()));
    std::vector<Ctl> spare;  // ctl_'s room past the rule (tx_scratch.h), freed here, outside ctl_mu_
    {
      std::lock_guard<std::mutex> lock(ctl_mu_);
      if (ctl_.empty() && ctl_.capacity() > s.keep()) spare.swap(ctl_);
    }
    if (tun_closed) {
      Event e;
      e.kind = kEventTunClosed;
      push_event(std::move(e));
      break;
    }
  }
}

void Device::tx_process(TxScratch& scratch) {
  using PeerCtx = TxScratch::PeerCtx;
  std::vector<TxSeg>& segs = scratch.segs;
  std::vector<TxOut>& out = scratch.out;
  out.reserve(segs.size());
  // Written after the locks are released: packets back into the TUN (in the arena, which lives until the next
  // batch) and rejects built for them (a malloc each).
  std::vector<std::pair<const uint8_t*, size_t>>& hairpins = scratch.hairpins;
  std::vector<std::vector<uint8_t>> rejects;
  std::vector<PeerCtx>& ctxs = scratch.ctxs;  // (empty, as every vector of scratch and its index: reset ends each turn)
  ctxs.reserve(segs.size());  // never reallocates: TxOut keeps pointers to ctxs' endpoints
  uint64_t now = monotonic_ms();
  PolicyEngine* pe = policy();
  LoadBalancer* lb = pe ? lb_.get() : nullptr;
  uint64_t wall = pe ? wall_ms() : 0;
  uint32_t now_s = uint32_t(now / 1000);
  size_t mtu = size_t(mtu_.load());
  std::shared_lock<std::shared_mutex> lock(table_mu_);
  std::shared_lock<std::shared_mutex> plock, llock;
  if (pe) plock = std::shared_lock<std::shared_mutex>(pe->mu);
  if (lb) llock = std::shared_lock<std::shared_mutex>(lb->mu);
  // A TSO super-packet's segments share one flow: reuse the last verdict.
  struct {
    bool valid = false;
    uint8_t key[40];
    PolicyEngine::TxAction action;
    uint32_t identity;
    bool src_local;
  } last_verdict;
  PeerCtx* last = nullptr;
  std::vector<std::pair<const uint8_t*, size_t>>& back = scratch.back;
  // Past a few peers in one batch (a probe round, many peers' flushes: up to ~115,000), a scan of ctxs per
  // segment is quadratic (seconds of TX thread for a 150,000-peer probe round): an index takes over.
  constexpr size_t kCtxScan = 16;
  std::unordered_map<Peer*, size_t>& ctx_index = scratch.ctx_index;
  auto ctx_for = [&](Peer* p) -> PeerCtx& {
    // a TSO super-packet's segments all go to one peer: test the last hit first
    if (last && last->peer == p) return *last;
    if (ctxs.size() <= kCtxScan) {
      for (auto& c : ctxs)
        if (c.peer == p) return *(last = &c);
    } else {
      auto it = ctx_index.find(p);
      if (it != ctx_index.end()) return *(last = &ctxs[it->second]);
    }
    PeerCtx c{p, nullptr, Endpoint(), false, 0, 0, 0};
    {
      std::lock_guard<PeerMutex> pl(p->mu);
      c.kp = p->view().current;  // none (an idle peer: the idle block): a handshake is requested below
      c.ep = p->endpoint;
    }
    c.usable = c.kp && now - c.kp->created_ms < kRejectAfterTimeMs;
    if (c.kp && c.usable && c.kp->initiator && now - c.kp->created_ms >= kRekeyAfterTimeMs) request_handshake(p, now);
    ctxs.push_back(std::move(c));
    if (ctxs.size() > kCtxScan) {
      if (ctx_index.empty())  // the scan's peers join the index once
        for (size_t i = 0; i + 1 < ctxs.size(); i++) ctx_index.emplace(ctxs[i].peer, i);
      ctx_index.emplace(p, ctxs.size() - 1);
    }
    return *(last = &ctxs.back());
  };
  for (TxSeg& s : segs) {
    uint8_t* plain = s.plain;
    Peer* p = nullptr;
    if (s.fixed && !(p = find_peer(s.peer))) continue;  // removed since the control round: its messages go with it
    uint32_t identity = kIdentityWorld;
    bool src_local = false;  // a local endpoint sent it (and its egress policy passed)
    if (!p) {
      IpInfo ip;
      if (!parse_ip(plain, s.len, &ip)) {
        count(kDropMalformedTun);
        continue;
      }
      if (pe) {
        PacketView pv;
        if (!parse_l4(plain, ip, &pv)) {
          count(kDropMalformedTun);
          continue;
        }
        // The L7 proxy's answers leave as the pod they stand for (policy then sees the pod).
        if (pv.has_ports && lb->from_proxy(ip, pv.sport))
          lb->reverse(plain, ip, &pv.sport, pv.dport, pv.tcp_flags, now_s);
        // A local flow already handed to the proxy goes there again.
        if (pv.has_ports && lb->redirected(plain, ip, pv.sport, &pv.dport, pv.tcp_flags, now_s)) {
          hairpins.emplace_back(plain, s.len);
          continue;
        }
        // Service translation comes first: policy sees the backend.
        bool nat_created = false;
        uint8_t vip[16];
        uint16_t vport = pv.dport;
        if (pv.has_ports && lb->active()) {
          std::memcpy(vip, ip.dst, size_t(ip.addr_len));
          LbResult r = lb->forward(plain, ip, pv.sport, &pv.dport, pv.tcp_flags, now_s, &nat_created);
          if (r == kLbReject) {
            uint8_t buf[kRejectMax];
            size_t n = build_reject(plain, ip, buf);
            if (n) rejects.emplace_back(buf, buf + n);
            continue;
          }
          if (r == kLbDrop) continue;  // counted by the load balancer
        }
        // Flow key: addresses, protocol, ports; TCP flags other than ACK/PSH
        // (SYN, FIN, RST) always take the full path so conntrack sees them, and
        // so does a packet without ports: an ICMP error passed as related to
        // its quoted flow would lend its verdict to any ICMP between the two.
        // The IP version too: an IPv4 address zero-padded to 16 bytes is also
        // an IPv6 address (<v4 bytes>::).
        uint8_t key[40] = {0};
        std::memcpy(key, ip.src, size_t(ip.addr_len));
        std::memcpy(key + 16, ip.dst, size_t(ip.addr_len));
        key[32] = pv.proto;
        std::memcpy(key + 33, &pv.sport, 2);
        std::memcpy(key + 35, &pv.dport, 2);
        key[37] = uint8_t(ip.version);
        bool plain_flags = pv.has_ports && (pv.proto != kProtoTCP || (pv.tcp_flags & 0x07) == 0);
        PolicyEngine::TxAction action;
        if (plain_flags && last_verdict.valid && std::memcmp(last_verdict.key, key, sizeof key) == 0) {
          action = last_verdict.action;
          identity = last_verdict.identity;
          src_local = last_verdict.src_local;
        } else {
          action = pe->tx(pv, wall, &identity, &src_local);
          last_verdict.valid = pv.has_ports && action != PolicyEngine::kTxDrop && action != PolicyEngine::kTxRedirect;
          std::memcpy(last_verdict.key, key, sizeof key);
          last_verdict.action = action;
          last_verdict.identity = identity;
          last_verdict.src_local = src_local;
        }
        if (action == PolicyEngine::kTxDrop) {
          if (nat_created) lb->forget(ip, pv.sport, pv.dport, vip, vport);  // a denied flow keeps no NAT entries
          continue;
        }
        if (action == PolicyEngine::kTxRedirect) {
          if (lb->redirect(plain, ip, pv.sport, &pv.dport, identity, pv.tcp_flags, now_s)) hairpins.emplace_back(plain, s.len);
          continue;
        }
        if (action == PolicyEngine::kTxHairpin) {
          // a local backend's reply to a local client leaves as the VIP
          if (pv.has_ports) lb->reverse(plain, ip, &pv.sport, pv.dport, pv.tcp_flags, now_s);
          // coalesced and written after the locks, with the packets handed back to the kernel
          back.emplace_back(plain, s.len);
          continue;
        }
      }
      uint32_t id = allowed_.lookup(ip.dst, ip.addr_len);
      p = id == AllowedIPs::kNoPeer ? nullptr : find_peer(id);
      if (!p) {
        // No tunnel takes it: a pod's packet to the world (or to a node address
        // without a tunnel) after its egress check goes back to the kernel, which
        // routes it out of the node (rule 2003: what the TUN writes is routed by
        // the main table). Anything else (the host's own packets) has no route.
        if (src_local) {
          pe->count_to_kernel();
          back.emplace_back(plain, s.len);
          continue;
        }
        count(kDropNoRoute);
        continue;
      }
      if (p->tagged) {
        plain -= kTagSize;
        plain[0] = kTagV0;
        plain[1] = plain[2] = plain[3] = 0;
        store_be32(plain + 4, identity);
        s.len += kTagSize;
      }
    }
    uint8_t* msg = plain - 16;
    PeerCtx& c = ctx_for(p);
    if (!c.ep.valid()) {
      count(kDropNoEndpoint);
      continue;
    }
    uint64_t nonce = 0;
    if (c.usable) {
      nonce = c.kp->send_counter.fetch_add(1, std::memory_order_relaxed);
      if (nonce >= kRejectAfterMessages) c.usable = false;
    }
    if (!c.usable) {
      stage(p, plain, s.len);
      request_handshake(p, now);
      continue;
    }
    if (nonce >= kRekeyAfterMessages) request_handshake(p, now);
    size_t padded = s.len == 0 ? 0 : padded_length(s.len, mtu + (p->tagged ? kTagSize : 0));
    if (padded > s.len) std::memset(plain + s.len, 0, padded - s.len);
    msg[0] = kMsgTransport;
    msg[1] = msg[2] = msg[3] = 0;
    put_le32(msg + kTransportReceiverOff, c.kp->remote_index);
    put_le64(msg + kTransportCounterOff, nonce);
    uint8_t n12[12];
    wg_nonce(n12, nonce);
    if (!c.kp->send->seal(n12, plain, padded, nullptr, 0, plain)) {
      count(kTxSendErrors);
      continue;
    }
    size_t mlen = 16 + padded + 16;
    c.bytes += mlen;
    c.packets++;
    if (s.len) c.data_packets++;
    out.push_back(TxOut{&c.ep, msg, mlen});
  }
  for (auto& c : ctxs) {
    if (c.bytes == 0) continue;
    Peer* p = c.peer;
    PeerLive& l = p->live();  // (made with its keypair: a load)
    l.tx_bytes.fetch_add(c.bytes, std::memory_order_relaxed);
    l.tx_packets.fetch_add(c.packets, std::memory_order_relaxed);
    l.last_auth_sent_ms.store(now, std::memory_order_relaxed);
    mark_active(p);  // (listed since its keypair came: a relaxed load)
    l.recv_unanswered_ms.store(0, std::memory_order_relaxed);
    if (c.data_packets) {
      l.last_data_sent_ms.store(now, std::memory_order_relaxed);
      uint64_t zero = 0;
      l.sent_unanswered_ms.compare_exchange_strong(zero, now);
    }
  }
  count(kTxPackets, out.size());
  // The locking rule (top of this file): no I/O under the table locks.
  if (llock.owns_lock()) llock.unlock();
  if (plock.owns_lock()) plock.unlock();
  lock.unlock();
  for (const auto& [pkt, len] : hairpins) hairpin(pkt, len);
  for (const auto& r : rejects) hairpin(r.data(), r.size());
  tx_send(scratch);
  if (!back.empty()) write_back(back);
  ctxs.clear();  // its keypair references go with the batch (reset empties the rest)
}

void Device::tx_send(TxScratch& s) {
  // One mmsghdr per run of messages to the same endpoint; with UDP GSO a run
  // of equal-sized messages (the last may be shorter) is one sendmsg.
  const std::vector<TxOut>& out = s.out;
  std::vector<iovec>& iovs = s.iovs;
  std::vector<mmsghdr>& msgs = s.msgs;
  std::vector<std::array<char, CMSG_SPACE(sizeof(uint16_t))>>& cmsgs = s.cmsgs;
  iovs.resize(out.size());
  msgs.resize(out.size());
  cmsgs.resize(out.size());
  size_t i = 0;
  const int max_segs = udp_.gso ? kMaxGsoSegments : 1;
  while (i < out.size()) {
    int fd = udp_.fd_for(*out[i].ep);
    int nm = 0;
    size_t iv = 0;
    while (i < out.size() && nm < kSendBatch && udp_.fd_for(*out[i].ep) == fd) {
      const Endpoint* ep = out[i].ep;
      size_t seg = out[i].len;
      size_t total = 0;
      int n = 0;
      while (i < out.size() && n < max_segs && (out[i].ep == ep || *out[i].ep == *ep) &&
             total + out[i].len <= kMaxGsoBytes && out[i].len <= seg) {
        iovs[iv + size_t(n)] = iovec{out[i].msg, out[i].len};
        total += out[i].len;
        bool shorter = out[i].len < seg;
        n++;
        i++;
        if (shorter) break;  // only the last segment of a GSO send may be shorter
      }
      mmsghdr& m = msgs[size_t(nm)];
      std::memset(&m, 0, sizeof m);
      m.msg_hdr.msg_name = const_cast<sockaddr*>(&ep->addr.sa);
      m.msg_hdr.msg_namelen = ep->len;
      m.msg_hdr.msg_iov = &iovs[iv];
      m.msg_hdr.msg_iovlen = size_t(n);
      if (n > 1) {
        char* cbuf = cmsgs[size_t(nm)].data();
        std::memset(cbuf, 0, CMSG_SPACE(sizeof(uint16_t)));
        m.msg_hdr.msg_control = cbuf;
        m.msg_hdr.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
        cmsghdr* cm = CMSG_FIRSTHDR(&m.msg_hdr);
        cm->cmsg_level = SOL_UDP;
        cm->cmsg_type = UDP_SEGMENT;
        cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t gs = uint16_t(seg);
        std::memcpy(CMSG_DATA(cm), &gs, sizeof gs);
      }
      iv += size_t(n);
      nm++;
    }
    int sent = 0;
    int spins = 0;
    while (sent < nm) {
      int r = sendmmsg(fd, msgs.data() + sent, unsigned(nm - sent), 0);
      if (r > 0) {
        sent += r;
        continue;
      }
      if (errno == EAGAIN || errno == ENOBUFS) {
        pollfd pf{fd, POLLOUT, 0};
        poll(&pf, 1, 100);
        if (++spins < 50) continue;
        count(kTxSendErrors, size_t(nm - sent));
        break;
      }
      if (errno == EIO && udp_.gso) {
        // A route whose device cannot checksum-offload rejects GSO: fall back.
        udp_.gso = false;
      }
      // The message at `sent` failed (a firewall drop: EPERM, an unreachable
      // peer: EHOSTUNREACH / ECONNREFUSED, ...). Skip only it: the rest of
      // the batch goes to other peers, which must not suffer for one
      // unreachable node (found by npm run chaos, partition).
      count(kTxSendErrors);
      sent++;
    }
  }
}

}  // namespace wm

// The RX thread: UDP receives -> handshake messages up to JavaScript, transport
// messages decrypted, checked and written to the TUN (pipeline and locking rules: device.h).
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

#include "../net/ip.h"
#include "../net/offload.h"
#include "messages.h"
#include "device_internal.h"

namespace wm {

using namespace device_detail;

void Device::rx_loop() {
  std::vector<uint8_t> bufs(size_t(kRxBatch) * kRxBufSize);
  std::vector<iovec> iovs(kRxBatch);
  std::vector<mmsghdr> msgs(kRxBatch);
  std::vector<Endpoint> froms(kRxBatch);
  std::vector<std::array<char, CMSG_SPACE(sizeof(int)) * 2>> cbufs(kRxBatch);
  Coalescer coalescer(1024);
  std::vector<iovec> wiov(2);
  while (running_.load(std::memory_order_relaxed)) {
    pollfd fds[3] = {{rx_wake_, POLLIN, 0}, {udp_.fd4, POLLIN, 0}, {udp_.fd6, POLLIN, 0}};
    if (poll(fds, 3, 1000) < 0 && errno != EINTR) break;
    if (!running_.load()) break;
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      if (read(rx_wake_, &v, 8) < 0) {}
    }
    for (int f = 1; f < 3; f++) {
      if (!(fds[f].revents & POLLIN)) continue;
      for (int i = 0; i < kRxBatch; i++) {
        iovs[i] = iovec{bufs.data() + size_t(i) * kRxBufSize, kRxBufSize};
        std::memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &froms[i].addr;
        msgs[i].msg_hdr.msg_namelen = sizeof froms[i].addr;
        msgs[i].msg_hdr.msg_control = cbufs[i].data();
        msgs[i].msg_hdr.msg_controllen = cbufs[i].size();
      }
      int n = recvmmsg(fds[f].fd, msgs.data(), kRxBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) continue;
      uint64_t now = monotonic_ms();
      rx_policy_ = policy();
      rx_wall_ms_ = rx_policy_ ? wall_ms() : 0;
      rx_pending_.clear();
      rx_flushes_.clear();
      bool wake;
      {
        std::shared_lock<std::shared_mutex> lock(table_mu_);
        std::shared_lock<std::shared_mutex> plock;
        std::shared_lock<std::shared_mutex> llock;
        if (rx_policy_) {
          plock = std::shared_lock<std::shared_mutex>(rx_policy_->mu);
          llock = std::shared_lock<std::shared_mutex>(lb_->mu);
        }
        for (int i = 0; i < n; i++) {
          froms[i].len = msgs[i].msg_hdr.msg_namelen;
          size_t len = msgs[i].msg_len;
          size_t seg = len;
          for (cmsghdr* cm = CMSG_FIRSTHDR(&msgs[i].msg_hdr); cm; cm = CMSG_NXTHDR(&msgs[i].msg_hdr, cm)) {
            if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
              int gs;
              std::memcpy(&gs, CMSG_DATA(cm), sizeof gs);
              if (gs > 0) seg = size_t(gs);
            }
          }
          uint8_t* base = bufs.data() + size_t(i) * kRxBufSize;
          for (size_t off = 0; off < len; off += seg) {
            size_t l = std::min(seg, len - off);
            rx_message(base + off, l, froms[i], now);
          }
        }
        wake = queue_rx_ctl();  // under table_mu_: probe replies are counted on their peer
      }
      if (wake) wake_tx();
      if (rx_pending_.empty() || tun_.fd < 0) continue;
      coalescer.reset();
      if (tun_.vnet_hdr) {
        for (const RxPacket& p : rx_pending_) coalescer.add(p.data, p.len);
        for (const auto& it : coalescer.finish()) {
          wiov[0] = iovec{const_cast<uint8_t*>(it.vnet), kVnetHdrSize};
          wiov[1] = iovec{const_cast<uint8_t*>(it.data), it.len};
          if (writev(tun_.fd, wiov.data(), 2) < 0) count(kTunWriteErrors);
        }
      } else {
        for (const RxPacket& p : rx_pending_)
          if (write(tun_.fd, p.data, p.len) < 0) count(kTunWriteErrors);
      }
    }
  }
}

void Device::rx_message(uint8_t* msg, size_t len, const Endpoint& from, uint64_t now) {
  int type = classify_message(msg, len);
  if (type == 0) {
    count(kDropNotWireGuard);
    return;
  }
  if (type != kMsgTransport) {
    if (type != kMsgCookieReply && !cookies_.check_mac1(msg, len)) {
      count(kDropBadMac1);
      return;
    }
    size_t pending;
    {
      std::lock_guard<std::mutex> lock(events_mu_);
      pending = pending_handshakes_;
    }
    if (pending >= kHandshakeQueueSize) {
      count(kDropHandshakeQueueFull);
      return;
    }
    if (pending >= kHandshakeQueueSize / 8) under_load_until_ms_.store(now + 1000);
    if (type != kMsgCookieReply && now < under_load_until_ms_.load()) {
      uint8_t src[18];
      size_t srclen = from.cookie_bytes(src);
      if (!cookies_.check_mac2(msg, len, src, srclen, now)) {
        uint8_t reply[kCookieReplySize];
        uint32_t sender = le32(msg + kInitiationSenderOff);  // same offset in responses
        if (cookies_.make_reply(msg, len, sender, src, srclen, now, reply) && udp_.send_one(from, reply, sizeof reply))
          count(kCookieRepliesSent);
        return;
      }
      int iplen;
      const uint8_t* ip = from.ip_bytes(&iplen);
      timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      if (!ratelimiter_.allow(ip, iplen, uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec))) {
        count(kDropRateLimited);
        return;
      }
    }
    count(kRxHandshakeMessages);
    Event e;
    e.kind = kEventHandshakeMessage;
    e.data.assign(msg, msg + len);
    e.from = from;
    push_event(std::move(e));
    return;
  }

  uint32_t receiver = le32(msg + kTransportReceiverOff);
  auto it = indices_.find(receiver);
  if (it == indices_.end()) {
    count(kDropUnknownReceiver);
    return;
  }
  Keypair* kp = it->second.keypair.get();
  Peer* p = it->second.peer;
  uint64_t counter = le64(msg + kTransportCounterOff);
  if (now - kp->created_ms >= kRejectAfterTimeMs || counter >= kRejectAfterMessages) {
    count(kDropKeypairExpired);
    return;
  }
  size_t clen = len - kTransportHeaderSize - kAeadTagSize;
  uint8_t n12[12];
  wg_nonce(n12, counter);
  uint8_t* plain = msg + kTransportHeaderSize;
  if (!kp->recv->open(n12, plain, clen, nullptr, 0, plain)) {
    count(kDropDecryptFailed);
    return;
  }
  if (!kp->replay.validate(counter)) {
    count(kDropReplayed);
    return;
  }
  // Authenticated: promote a confirmed next keypair, follow a roaming peer. (Its live block was made when the
  // keypair was installed: live() is a load here.)
  PeerLive& l = p->live();
  {
    std::lock_guard<PeerMutex> pl(p->mu);
    if (l.next.get() == kp) {
      // The index map is read-only here (shared lock); the control thread
      // erases the retired keypair's index on its next table edit.
      if (l.previous) {
        std::lock_guard<std::mutex> rl(retired_mu_);
        retired_.push_back(RetiredIndex{l.previous->local_index, l.previous.get()});
      }
      l.previous = l.current;
      l.current = l.next;
      l.next.reset();
      rx_flushes_.push_back(Ctl{CtlKind::kFlush, p->id});
      Event e;
      e.kind = kEventKeypairConfirmed;
      e.peer = p->id;
      push_event(std::move(e));
    }
    if (p->endpoint != from) {
      // WireGuard roams to any source; a mesh peer only to its node's addresses (roam.h).
      if (p->roam.allows(from))
        p->endpoint = from;
      else
        count(kEndpointRoamRefused);
    }
  }
  l.rx_bytes.fetch_add(len, std::memory_order_relaxed);
  l.rx_packets.fetch_add(1, std::memory_order_relaxed);
  l.last_auth_recv_ms.store(now, std::memory_order_relaxed);
  mark_active(p);  // (listed since its keypair came: a relaxed load)
  l.sent_unanswered_ms.store(0, std::memory_order_relaxed);
  if (kp->initiator && now - kp->created_ms >= kRejectAfterTimeMs - kKeepaliveTimeoutMs - kRekeyTimeoutMs)
    request_handshake(p, now);
  if (clen == 0) {
    count(kRxKeepalives);
    return;
  }
  if ((plain[0] >> 4) == (kProbeRequest >> 4)) {
    if (!rx_policy_ || clen < kProbeSize) {
      count(kDropMalformedInner);
      return;
    }
    rx_probe(p, plain, now);
    return;
  }
  uint8_t* pkt = plain;
  size_t rem = clen;
  bool tagged = (plain[0] >> 4) == (kTagV0 >> 4);
  uint32_t tag_identity = 0;
  if (tagged) {
    // Only the mesh agent speaks tags; an unknown version is not guessed at.
    if (!rx_policy_ || clen < kTagSize || plain[0] != kTagV0) {
      count(kDropMalformedInner);
      if (rx_policy_) rx_policy_->record_drop(nullptr, kReasonMalformedTag, 0, p->id, rx_wall_ms_);
      return;
    }
    tag_identity = load_be32(plain + 4);
    pkt += kTagSize;
    rem -= kTagSize;
  }
  IpInfo ip;
  if (!parse_ip(pkt, rem, &ip)) {
    count(kDropMalformedInner);
    return;
  }
  PacketView pv;
  if (rx_policy_ && !parse_l4(pkt, ip, &pv)) {
    count(kDropMalformedInner);
    return;
  }
  if (allowed_.lookup(ip.src, ip.addr_len) != p->id) {
    count(kDropCryptokeyRouting);
    if (rx_policy_) rx_policy_->record_drop(&pv, kReasonSourceNotAllowed, tag_identity, p->id, rx_wall_ms_);
    return;
  }
  if (rx_policy_) {
    uint32_t src_identity;
    if (tagged) {
      src_identity = accept_tag(p, tag_identity);
      if (src_identity == 0) {
        rx_policy_->record_drop(&pv, kReasonIdentityCluster, tag_identity, p->id, rx_wall_ms_);
        return;
      }
    } else {
      src_identity = rx_policy_->untagged_identity(pv, p->default_identity);
    }
    uint32_t now_s = uint32_t(now / 1000);
    // a flow already handed to the L7 proxy: its policy was decided at its first packet
    if (!(pv.has_ports && lb_->redirected(pkt, ip, pv.sport, &pv.dport, pv.tcp_flags, now_s))) {
      PolicyEngine::RxAction a = rx_policy_->rx(pv, src_identity, p->id, rx_wall_ms_);
      if (a == PolicyEngine::kRxDrop) return;
      if (a == PolicyEngine::kRxRedirect) {
        if (!lb_->redirect(pkt, ip, pv.sport, &pv.dport, src_identity, pv.tcp_flags, now_s)) return;
      } else if (pv.has_ports) {
        lb_->reverse(pkt, ip, &pv.sport, pv.dport, pv.tcp_flags, now_s);
      }
    }
  }
  l.last_data_recv_ms.store(now, std::memory_order_relaxed);
  uint64_t zero = 0;
  l.recv_unanswered_ms.compare_exchange_strong(zero, now);
  count(kRxPackets);
  rx_pending_.push_back(RxPacket{pkt, ip.total_len});
}

}  // namespace wm

#include "offload.h"

#include <cstring>

#include "checksum.h"
#include "ip.h"

namespace wm {

namespace {
constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpPsh = 0x08, kTcpAck = 0x10, kTcpCwr = 0x80;
constexpr size_t kMaxSuperPacket = 65535;
}  // namespace

void vnet_decode(const uint8_t* p, VnetHdr* h) {
  // virtio_net_hdr is in host byte order for TUN on little-endian hosts.
  h->flags = p[0];
  h->gso_type = p[1];
  std::memcpy(&h->hdr_len, p + 2, 2);
  std::memcpy(&h->gso_size, p + 4, 2);
  std::memcpy(&h->csum_start, p + 6, 2);
  std::memcpy(&h->csum_offset, p + 8, 2);
}

void vnet_encode(const VnetHdr& h, uint8_t* p) {
  p[0] = h.flags;
  p[1] = h.gso_type;
  std::memcpy(p + 2, &h.hdr_len, 2);
  std::memcpy(p + 4, &h.gso_size, 2);
  std::memcpy(p + 6, &h.csum_start, 2);
  std::memcpy(p + 8, &h.csum_offset, 2);
}

int split_packet(const VnetHdr& h, const uint8_t* pkt, size_t len, uint8_t* out, size_t stride, size_t* seg_lens,
                 int max_segs) {
  if (max_segs < 1 || len == 0) return -1;
  uint8_t gso = h.gso_type & ~kVnetGsoEcn;
  if (gso == kVnetGsoNone) {
    if (len > stride) return -1;
    std::memcpy(out, pkt, len);
    if (h.flags & kVnetFlagNeedsCsum) {
      // The field holds the pseudo-header sum; the final checksum covers it too.
      size_t at = size_t(h.csum_start) + h.csum_offset;
      if (h.csum_start >= len || at + 2 > len) return -1;
      uint16_t c = uint16_t(~csum_fold(csum_partial(out + h.csum_start, len - h.csum_start, 0)));
      store_be16(out + at, c);
    }
    seg_lens[0] = len;
    return 1;
  }
  if (gso != kVnetGsoTcpV4 && gso != kVnetGsoTcpV6) return -1;
  IpInfo ip;
  if (!parse_ip(pkt, len, &ip) || ip.proto != kProtoTCP) return -1;
  if ((gso == kVnetGsoTcpV4) != (ip.version == 4)) return -1;
  // The super-packet's own length field may be stale for GSO; trust the read length.
  size_t l4 = ip.header_len;
  if (ip.version == 6 && (h.flags & kVnetFlagNeedsCsum) && h.csum_start > 40) l4 = h.csum_start;
  if (l4 + 20 > len) return -1;
  const uint8_t* tcp = pkt + l4;
  size_t doff = size_t(tcp[12] >> 4) * 4;
  if (doff < 20 || l4 + doff > len) return -1;
  size_t hdr = l4 + doff;
  size_t payload = len - hdr;
  size_t seg = h.gso_size;
  if (seg == 0) return -1;
  size_t nseg = payload == 0 ? 1 : (payload + seg - 1) / seg;
  if (nseg > size_t(max_segs) || hdr + (payload < seg ? payload : seg) > stride) return -1;
  uint32_t seq0 = load_be32(tcp + 4);
  uint16_t id0 = ip.version == 4 ? load_be16(pkt + 4) : 0;
  for (size_t i = 0; i < nseg; i++) {
    size_t off = i * seg;
    size_t chunk = payload - off < seg ? payload - off : seg;
    uint8_t* o = out + i * stride;
    std::memcpy(o, pkt, hdr);
    std::memcpy(o + hdr, pkt + hdr + off, chunk);
    size_t seglen = hdr + chunk;
    if (ip.version == 4) {
      store_be16(o + 2, uint16_t(seglen));
      store_be16(o + 4, uint16_t(id0 + i));
      ipv4_set_checksum(o, ip.header_len);
    } else {
      store_be16(o + 4, uint16_t(seglen - 40));
    }
    uint8_t* t = o + l4;
    store_be32(t + 4, seq0 + uint32_t(off));
    uint8_t flags = tcp[13];
    if (i + 1 != nseg) flags &= uint8_t(~(kTcpFin | kTcpPsh));
    if (i != 0) flags &= uint8_t(~kTcpCwr);
    t[13] = flags;
    t[16] = t[17] = 0;
    uint64_t sum = pseudo_header_sum(o + (ip.src - pkt), o + (ip.dst - pkt), ip.addr_len, kProtoTCP,
                                     uint32_t(seglen - l4));
    store_be16(t + 16, uint16_t(~csum_fold(csum_partial(t, seglen - l4, sum))));
    seg_lens[i] = seglen;
  }
  return int(nseg);
}

size_t max_segment_size(const VnetHdr& h, const uint8_t* pkt, size_t len) {
  uint8_t gso = h.gso_type & ~kVnetGsoEcn;
  if (gso == kVnetGsoNone) return len;
  IpInfo ip;
  if (!parse_ip(pkt, len, &ip) || ip.proto != kProtoTCP) return 0;
  size_t l4 = ip.header_len;
  if (ip.version == 6 && (h.flags & kVnetFlagNeedsCsum) && h.csum_start > 40) l4 = h.csum_start;
  if (l4 + 20 > len) return 0;
  size_t hdr = l4 + size_t(pkt[l4 + 12] >> 4) * 4;
  if (hdr > len) return 0;
  size_t seg = hdr + h.gso_size;
  return seg < len ? seg : len;
}

Coalescer::Coalescer(size_t max_items) : max_items_(max_items) {
  items_.reserve(max_items);
  flows_.reserve(64);
}

void Coalescer::reset() {
  items_.clear();
  meta_.clear();
  flows_.clear();
  bufs_used_ = 0;
}

void Coalescer::add(const uint8_t* pkt, size_t len) {
  if (try_merge(pkt, len)) return;
  push_item(pkt, len, 0);
}

void Coalescer::push_item(const uint8_t* pkt, size_t len, uint16_t seg) {
  Item it;
  std::memset(it.vnet, 0, sizeof it.vnet);
  it.data = pkt;
  it.len = len;
  items_.push_back(it);
  meta_.push_back(Meta{seg, 1});
}

bool Coalescer::try_merge(const uint8_t* pkt, size_t len) {
  IpInfo ip;
  if (!parse_ip(pkt, len, &ip) || ip.proto != kProtoTCP || ip.fragment || ip.total_len != len) return false;
  if (ip.version == 4 && ip.header_len != 20) return false;
  size_t l4 = ip.header_len;
  if (len < l4 + 20) return false;
  const uint8_t* t = pkt + l4;
  size_t doff = size_t(t[12] >> 4) * 4;
  size_t hdr = l4 + doff;
  if (doff < 20 || hdr > len) return false;
  size_t payload = len - hdr;
  uint8_t flags = t[13];
  if (payload == 0 || (flags & ~(kTcpAck | kTcpPsh)) != 0 || !(flags & kTcpAck)) return false;
  // A segment whose checksum is wrong must reach the kernel as is, so it gets
  // dropped there; merging would make the kernel compute a fresh, valid one.
  uint64_t sum = pseudo_header_sum(ip.src, ip.dst, ip.addr_len, kProtoTCP, uint32_t(len - l4));
  if (csum_fold(csum_partial(t, len - l4, sum)) != 0xFFFF) return false;
  if (items_.size() >= max_items_) return false;

  uint8_t key[37];
  size_t key_len = 0;
  key[key_len++] = uint8_t(ip.version);
  std::memcpy(key + key_len, ip.src, ip.addr_len);
  key_len += ip.addr_len;
  std::memcpy(key + key_len, ip.dst, ip.addr_len);
  key_len += ip.addr_len;
  std::memcpy(key + key_len, t, 4);
  key_len += 4;
  uint32_t seq = load_be32(t + 4);

  Flow* f = nullptr;
  for (auto& cand : flows_) {
    if (cand.key_len == key_len && std::memcmp(cand.key, key, key_len) == 0) {
      f = &cand;
      break;
    }
  }
  if (f && !f->closed && seq == f->next_seq && payload <= f->seg_size && hdr == f->hdr_len) {
    Item& it = items_[f->item];
    const uint8_t* head = it.data;
    bool same = it.len + payload <= kMaxSuperPacket;
    if (ip.version == 4) {
      same = same && head[1] == pkt[1] && head[8] == pkt[8] && (head[6] & 0x40) == (pkt[6] & 0x40);
    } else {
      same = same && std::memcmp(head, pkt, 4) == 0 && head[7] == pkt[7];
    }
    const uint8_t* ht = head + l4;
    // ack, data offset, window and options must match; only seq and flags may differ
    same = same && std::memcmp(ht + 8, t + 8, 5) == 0 && std::memcmp(ht + 14, t + 14, 2) == 0 &&
           std::memcmp(ht + 20, t + 20, doff - 20) == 0;
    if (same) {
      if (f->buf < 0) {
        if (bufs_used_ == bufs_.size()) bufs_.emplace_back(kMaxSuperPacket);
        f->buf = int(bufs_used_++);
        std::memcpy(bufs_[f->buf].data(), it.data, it.len);
        it.data = bufs_[f->buf].data();
      }
      uint8_t* b = bufs_[f->buf].data();
      std::memcpy(b + it.len, pkt + hdr, payload);
      it.len += payload;
      f->next_seq += uint32_t(payload);
      meta_[f->item].segs++;
      if (flags & kTcpPsh) {
        b[l4 + 13] |= kTcpPsh;
        f->closed = true;
      }
      if (payload < f->seg_size) f->closed = true;
      return true;
    }
  }
  if (!f) {
    flows_.emplace_back();
    f = &flows_.back();
  }
  f->item = int(items_.size());
  std::memcpy(f->key, key, key_len);
  f->key_len = key_len;
  f->next_seq = seq + uint32_t(payload);
  f->seg_size = uint16_t(payload);
  f->hdr_len = hdr;
  f->closed = (flags & kTcpPsh) != 0;
  f->buf = -1;
  push_item(pkt, len, uint16_t(payload));
  return true;
}

const std::vector<Coalescer::Item>& Coalescer::finish() {
  for (size_t idx = 0; idx < items_.size(); idx++) {
    const Meta& m = meta_[idx];
    if (m.segs < 2) continue;
    Item& it = items_[idx];
    uint8_t* p = const_cast<uint8_t*>(it.data);  // points into bufs_, which we own
    bool v4 = (p[0] >> 4) == 4;
    size_t l4 = v4 ? 20 : 40;
    if (v4) {
      store_be16(p + 2, uint16_t(it.len));
      ipv4_set_checksum(p, 20);
    } else {
      store_be16(p + 4, uint16_t(it.len - 40));
    }
    const uint8_t* src = v4 ? p + 12 : p + 8;
    const uint8_t* dst = v4 ? p + 16 : p + 24;
    uint8_t* t = p + l4;
    size_t doff = size_t(t[12] >> 4) * 4;
    uint64_t psum = pseudo_header_sum(src, dst, v4 ? 4 : 16, kProtoTCP, uint32_t(it.len - l4));
    store_be16(t + 16, csum_fold(psum));  // partial (pseudo-header only): the kernel finishes it
    VnetHdr h;
    h.flags = kVnetFlagNeedsCsum;
    h.gso_type = v4 ? kVnetGsoTcpV4 : kVnetGsoTcpV6;
    h.hdr_len = uint16_t(l4 + doff);
    h.gso_size = m.seg_size;
    h.csum_start = uint16_t(l4);
    h.csum_offset = 16;
    vnet_encode(h, it.vnet);
  }
  return items_;
}

}  // namespace wm

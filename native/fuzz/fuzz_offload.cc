// TSO split (TUN reads) and GRO coalescing (TUN writes) on arbitrary packets.
// Input: 10-byte virtio_net_hdr, then the packet; for coalescing the rest of the
// input is cut into packets by 2-byte length prefixes.
#include <algorithm>
#include <cassert>
#include <cstring>
#include <vector>

#include "../src/net/ip.h"
#include "../src/net/offload.h"

using namespace wm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kVnetHdrSize) return 0;
  VnetHdr h;
  vnet_decode(data, &h);
  const uint8_t* pkt = data + kVnetHdrSize;
  size_t len = size - kVnetHdrSize;
  IpInfo ip;
  parse_ip(pkt, len, &ip);
  size_t seg = max_segment_size(h, pkt, len);
  if (seg > 0) {
    static std::vector<uint8_t> out(1 << 20);
    static std::vector<size_t> lens(1024);
    size_t stride = seg + 64;
    int max = int(std::min<size_t>(out.size() / stride, lens.size()));
    int n = split_packet(h, pkt, len, out.data(), stride, lens.data(), max);
    for (int i = 0; i < n; i++) assert(lens[size_t(i)] <= stride);
  }
  // Coalescing over length-prefixed packets.
  std::vector<std::vector<uint8_t>> pkts;
  size_t off = 0;
  while (off + 2 <= len) {
    size_t n = size_t(pkt[off]) << 8 | pkt[off + 1];
    off += 2;
    if (n > len - off) n = len - off;
    pkts.emplace_back(pkt + off, pkt + off + n);
    off += n;
  }
  Coalescer c(64);
  for (auto& p : pkts) c.add(p.data(), p.size());
  for (const auto& it : c.finish()) assert(it.len <= 65535);
  return 0;
}

// Offloads between the TUN device and the data path.
//
// With IFF_VNET_HDR and TUNSETOFFLOAD(TSO4|TSO6|CSUM) the kernel hands us TCP
// "super-packets" of up to 64 KiB with a virtio_net_hdr in front and checksums
// left partial; split_packet() cuts them into MTU-sized packets with complete
// checksums, the unit WireGuard encrypts. In the other direction, Coalescer
// merges consecutive in-order TCP segments of a flow back into one super-packet
// with a GSO header, so the kernel's TCP stack sees one big receive per write.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace wm {

constexpr size_t kVnetHdrSize = 10;
constexpr uint8_t kVnetFlagNeedsCsum = 1;
constexpr uint8_t kVnetGsoNone = 0;
constexpr uint8_t kVnetGsoTcpV4 = 1;
constexpr uint8_t kVnetGsoUdp = 3;
constexpr uint8_t kVnetGsoTcpV6 = 4;
constexpr uint8_t kVnetGsoEcn = 0x80;

struct VnetHdr {
  uint8_t flags = 0;
  uint8_t gso_type = 0;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
};
void vnet_decode(const uint8_t* p, VnetHdr* h);
void vnet_encode(const VnetHdr& h, uint8_t* p);

// Splits one packet read from the TUN (without its vnet header) into complete IP
// packets. Segment i is written at out + i * stride (stride >= the segment size);
// its length goes to seg_lens[i]. Returns the segment count, or -1 if the packet
// is malformed or would need more than max_segs segments of at most stride bytes.
int split_packet(const VnetHdr& h, const uint8_t* pkt, size_t len, uint8_t* out, size_t stride, size_t* seg_lens,
                 int max_segs);

// Largest segment split_packet() will produce for this packet (headers + one
// gso_size of payload, or the whole packet), or 0 if the headers are malformed.
size_t max_segment_size(const VnetHdr& h, const uint8_t* pkt, size_t len);

// Coalesces decrypted packets before they are written to the TUN. add() takes
// packets in arrival order; the caller's buffers must stay valid until flush.
// items() lists what to write: each is a vnet header plus either the caller's
// packet (unchanged) or a merged super-packet built in the coalescer's own buffers.
class Coalescer {
 public:
  struct Item {
    uint8_t vnet[kVnetHdrSize];
    const uint8_t* data;
    size_t len;
  };
  explicit Coalescer(size_t max_items = 256);
  void reset();
  void add(const uint8_t* pkt, size_t len);
  // Finalises merged headers and returns the list to write.
  const std::vector<Item>& finish();

 private:
  struct Flow {
    int item = -1;          // index into items_ of the open super-packet
    uint8_t key[37] = {0};  // version, src, dst, ports
    size_t key_len = 0;
    uint32_t next_seq = 0;
    uint16_t seg_size = 0;
    size_t hdr_len = 0;
    bool closed = false;
    int buf = -1;           // index into bufs_ once merging has started
  };
  struct Meta {
    uint16_t seg_size;  // payload of the run's first segment: the GSO size
    int segs;
  };
  bool try_merge(const uint8_t* pkt, size_t len);
  // Appends a packet as a new item (no vnet header yet); seg: its GSO segment size so far, 0 for none.
  void push_item(const uint8_t* pkt, size_t len, uint16_t seg);
  std::vector<Item> items_;
  std::vector<Meta> meta_;
  std::vector<Flow> flows_;
  std::vector<std::vector<uint8_t>> bufs_;
  size_t bufs_used_ = 0;
  size_t max_items_;
};

}  // namespace wm

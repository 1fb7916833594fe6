// WireGuard message layouts (whitepaper §5.4) and the constants of the protocol.
// Every parser here takes (pointer, length) from the network and checks lengths
// before it reads; the fuzz targets in native/fuzz exercise them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace wm {

enum MessageType : uint8_t {
  kMsgInitiation = 1,
  kMsgResponse = 2,
  kMsgCookieReply = 3,
  kMsgTransport = 4,
};

constexpr size_t kInitiationSize = 148;
constexpr size_t kResponseSize = 92;
constexpr size_t kCookieReplySize = 64;
constexpr size_t kTransportHeaderSize = 16;
constexpr size_t kTransportMinSize = kTransportHeaderSize + 16;  // keepalive: header + tag
constexpr size_t kMaxMessageSize = 65535;

// Offsets inside handshake messages.
constexpr size_t kInitiationSenderOff = 4;
constexpr size_t kResponseSenderOff = 4;
constexpr size_t kResponseReceiverOff = 8;
constexpr size_t kCookieReceiverOff = 4;
constexpr size_t kTransportReceiverOff = 4;
constexpr size_t kTransportCounterOff = 8;

// Timers and limits (whitepaper §6).
constexpr uint64_t kRekeyAfterMessages = 1ull << 60;
constexpr uint64_t kRejectAfterMessages = ~0ull - (1ull << 13);  // 2^64 - 2^13 - 1
constexpr uint64_t kRekeyAfterTimeMs = 120000;
constexpr uint64_t kRejectAfterTimeMs = 180000;
constexpr uint64_t kKeepaliveTimeoutMs = 10000;
constexpr uint64_t kRekeyTimeoutMs = 5000;
constexpr uint64_t kCookieRefreshMs = 120000;

inline uint32_t le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
inline uint64_t le64(const uint8_t* p) { return uint64_t(le32(p)) | uint64_t(le32(p + 4)) << 32; }
inline void put_le32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v); p[1] = uint8_t(v >> 8); p[2] = uint8_t(v >> 16); p[3] = uint8_t(v >> 24);
}
inline void put_le64(uint8_t* p, uint64_t v) { put_le32(p, uint32_t(v)); put_le32(p + 4, uint32_t(v >> 32)); }

// Returns the message type when the first four bytes and the length are those of a
// valid message (the type is a little-endian uint32, so the three reserved bytes
// must be zero), or 0 when the datagram is not a WireGuard message.
inline int classify_message(const uint8_t* p, size_t len) {
  if (len < 4 || p[1] != 0 || p[2] != 0 || p[3] != 0) return 0;
  switch (p[0]) {
    case kMsgInitiation: return len == kInitiationSize ? kMsgInitiation : 0;
    case kMsgResponse: return len == kResponseSize ? kMsgResponse : 0;
    case kMsgCookieReply: return len == kCookieReplySize ? kMsgCookieReply : 0;
    case kMsgTransport: return len >= kTransportMinSize && len <= kMaxMessageSize ? kMsgTransport : 0;
    default: return 0;
  }
}

// Padded plaintext length for a packet of len bytes: a multiple of 16, but never
// past the MTU (whitepaper §5.4.6).
inline size_t padded_length(size_t len, size_t mtu) {
  size_t padded = (len + 15) & ~size_t(15);
  if (padded > mtu) padded = mtu > len ? mtu : len;
  return padded;
}

}  // namespace wm

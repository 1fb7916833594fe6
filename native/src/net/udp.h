// The device's UDP sockets: one IPv4 and one IPv6 socket on the same port,
// batched with recvmmsg/sendmmsg and segmented with UDP GSO/GRO where the
// kernel supports them (probed at bind time; we fall back to plain batches).
#pragma once
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "endpoint.h"

// Older libc headers lack the UDP offload socket options.
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace wm {

struct UdpSockets {
  int fd4 = -1;
  int fd6 = -1;
  int port = 0;
  bool gso = false;  // UDP_SEGMENT works for sends
  bool gro = false;  // UDP_GRO enabled for receives

  // Binds both families to port (0 picks one). fwmark 0 leaves SO_MARK unset.
  bool bind(int port, uint32_t fwmark, std::string* err);
  bool set_fwmark(uint32_t fwmark);
  void close_all();
  int fd_for(const Endpoint& ep) const { return ep.is_v6() ? fd6 : fd4; }
  // Sends one datagram (handshake messages from the control thread).
  bool send_one(const Endpoint& ep, const uint8_t* buf, size_t len);
};

}  // namespace wm

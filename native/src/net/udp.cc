#include "udp.h"

#include <fcntl.h>
#include <netinet/udp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>


namespace wm {

namespace {
constexpr int kSocketBuffer = 7 << 20;  // as wireguard-go: room for bursts of GSO batches

void tune(int fd) {
  int v = kSocketBuffer;
  // FORCE variants pass rmem_max/wmem_max when we are privileged.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) < 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
}

int open_bound(int family, int port, std::string* err) {
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  int one = 1;
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  Endpoint ep;
  if (family == AF_INET) {
    ep.addr.v4.sin_family = AF_INET;
    ep.addr.v4.sin_port = htons(uint16_t(port));
    ep.len = sizeof(sockaddr_in);
  } else {
    ep.addr.v6.sin6_family = AF_INET6;
    ep.addr.v6.sin6_port = htons(uint16_t(port));
    ep.len = sizeof(sockaddr_in6);
  }
  if (::bind(fd, &ep.addr.sa, ep.len) < 0) {
    *err = std::string("bind udp port ") + std::to_string(port) + ": " + std::strerror(errno);
    close(fd);
    return -1;
  }
  tune(fd);
  return fd;
}

int bound_port(int fd) {
  Endpoint ep;
  ep.len = sizeof ep.addr;
  if (getsockname(fd, &ep.addr.sa, &ep.len) < 0) return -1;
  return ep.port();
}
}  // namespace

bool UdpSockets::bind(int want_port, uint32_t fwmark, std::string* err) {
  close_all();
  // With port 0, the IPv6 socket must get the port the IPv4 one got; retry a
  // few times if another process holds that port for IPv6.
  for (int attempt = 0; attempt < 8; attempt++) {
    fd4 = open_bound(AF_INET, want_port, err);
    if (fd4 < 0) return false;
    port = bound_port(fd4);
    std::string err6;
    fd6 = open_bound(AF_INET6, port, &err6);
    if (fd6 >= 0) break;
    close(fd4);
    fd4 = -1;
    if (want_port != 0 || errno == EAFNOSUPPORT) {
      // An IPv6-less host still gets an IPv4 device.
      if (errno == EAFNOSUPPORT) {
        fd4 = open_bound(AF_INET, want_port, err);
        if (fd4 < 0) return false;
        port = bound_port(fd4);
        break;
      }
      *err = err6;
      return false;
    }
  }
  if (fd4 < 0) return false;
  int one = 1;
  gro = setsockopt(fd4, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  if (fd6 >= 0) setsockopt(fd6, SOL_UDP, UDP_GRO, &one, sizeof one);
  // GSO support is probed with a zero segment size option, which the kernel
  // accepts only where UDP_SEGMENT exists.
  int zero = 0;
  gso = setsockopt(fd4, SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0;
  if (fwmark) set_fwmark(fwmark);
  return true;
}

bool UdpSockets::set_fwmark(uint32_t fwmark) {
  bool ok = true;
  if (fd4 >= 0) ok &= setsockopt(fd4, SOL_SOCKET, SO_MARK, &fwmark, sizeof fwmark) == 0;
  if (fd6 >= 0) ok &= setsockopt(fd6, SOL_SOCKET, SO_MARK, &fwmark, sizeof fwmark) == 0;
  return ok;
}

void UdpSockets::close_all() {
  if (fd4 >= 0) close(fd4);
  if (fd6 >= 0) close(fd6);
  fd4 = fd6 = -1;
}

bool UdpSockets::send_one(const Endpoint& ep, const uint8_t* buf, size_t len) {
  int fd = fd_for(ep);
  if (fd < 0) return false;
  return sendto(fd, buf, len, MSG_DONTWAIT, &ep.addr.sa, ep.len) == ssize_t(len);
}

}  // namespace wm

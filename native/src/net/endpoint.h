// An underlay UDP address (IPv4 or IPv6) as the socket calls want it.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

namespace wm {

struct Endpoint {
  union {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
  } addr;
  socklen_t len = 0;

  Endpoint() { std::memset(&addr, 0, sizeof addr); }
  bool valid() const { return len != 0; }
  bool is_v6() const { return addr.sa.sa_family == AF_INET6; }
  bool operator==(const Endpoint& o) const { return len == o.len && std::memcmp(&addr, &o.addr, len) == 0; }
  bool operator!=(const Endpoint& o) const { return !(*this == o); }
  // The bytes a cookie is bound to: IP address then port.
  size_t cookie_bytes(uint8_t out[18]) const {
    if (is_v6()) {
      std::memcpy(out, &addr.v6.sin6_addr, 16);
      std::memcpy(out + 16, &addr.v6.sin6_port, 2);
      return 18;
    }
    std::memcpy(out, &addr.v4.sin_addr, 4);
    std::memcpy(out + 4, &addr.v4.sin_port, 2);
    return 6;
  }
  const uint8_t* ip_bytes(int* n) const {
    if (is_v6()) {
      *n = 16;
      return reinterpret_cast<const uint8_t*>(&addr.v6.sin6_addr);
    }
    *n = 4;
    return reinterpret_cast<const uint8_t*>(&addr.v4.sin_addr);
  }
  // Parses an IPv4 or IPv6 literal (v4-mapped IPv6 becomes IPv4).
  static bool parse(const std::string& ip, int port, Endpoint* out);
  std::string ip_string() const;
  int port() const;
};

}  // namespace wm

#include "endpoint.h"

#include <arpa/inet.h>

namespace wm {

bool Endpoint::parse(const std::string& ip, int port, Endpoint* out) {
  if (port < 0 || port > 65535) return false;
  *out = Endpoint();
  in_addr a4;
  in6_addr a6;
  if (inet_pton(AF_INET, ip.c_str(), &a4) == 1) {
    out->addr.v4.sin_family = AF_INET;
    out->addr.v4.sin_addr = a4;
    out->addr.v4.sin_port = htons(uint16_t(port));
    out->len = sizeof(sockaddr_in);
    return true;
  }
  if (inet_pton(AF_INET6, ip.c_str(), &a6) == 1) {
    if (IN6_IS_ADDR_V4MAPPED(&a6)) {
      out->addr.v4.sin_family = AF_INET;
      std::memcpy(&out->addr.v4.sin_addr, a6.s6_addr + 12, 4);
      out->addr.v4.sin_port = htons(uint16_t(port));
      out->len = sizeof(sockaddr_in);
      return true;
    }
    out->addr.v6.sin6_family = AF_INET6;
    out->addr.v6.sin6_addr = a6;
    out->addr.v6.sin6_port = htons(uint16_t(port));
    out->len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

std::string Endpoint::ip_string() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (is_v6())
    inet_ntop(AF_INET6, &addr.v6.sin6_addr, buf, sizeof buf);
  else if (len)
    inet_ntop(AF_INET, &addr.v4.sin_addr, buf, sizeof buf);
  return buf;
}

int Endpoint::port() const { return is_v6() ? ntohs(addr.v6.sin6_port) : ntohs(addr.v4.sin_port); }

}  // namespace wm

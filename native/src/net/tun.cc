#include "tun.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace wm {

static std::string errstr(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

bool tun_open(const std::string& name, bool vnet_hdr, TunDevice* out, std::string* err) {
  if (name.size() >= IFNAMSIZ) {
    *err = "interface name too long (at most 15 characters)";
    return false;
  }
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    *err = errstr("open /dev/net/tun");
    return false;
  }
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    *err = errstr("TUNSETIFF");
    close(fd);
    return false;
  }
  if (vnet_hdr) {
    int sz = 10;
    if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) {
      *err = errstr("TUNSETVNETHDRSZ");
      close(fd);
      return false;
    }
    unsigned offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    if (ioctl(fd, TUNSETOFFLOAD, offloads) < 0) {
      *err = errstr("TUNSETOFFLOAD");
      close(fd);
      return false;
    }
  }
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  out->fd = fd;
  out->name = ifr.ifr_name;
  out->vnet_hdr = vnet_hdr;
  return true;
}

bool tun_set_mtu(const std::string& name, int mtu, std::string* err) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    *err = errstr("socket");
    return false;
  }
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_mtu = mtu;
  bool ok = ioctl(s, SIOCSIFMTU, &ifr) == 0;
  if (!ok) *err = errstr("SIOCSIFMTU");
  close(s);
  return ok;
}

int tun_get_mtu(const std::string& name) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  int mtu = ioctl(s, SIOCGIFMTU, &ifr) == 0 ? ifr.ifr_mtu : -1;
  close(s);
  return mtu;
}

}  // namespace wm

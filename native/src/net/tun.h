// TUN device: IFF_TUN | IFF_NO_PI | IFF_VNET_HDR with TSO4/TSO6/CSUM offloads,
// so the kernel hands us TCP super-packets and accepts coalesced ones.
#pragma once
#include <string>

namespace wm {

struct TunDevice {
  int fd = -1;
  std::string name;
  bool vnet_hdr = false;
};

// Creates (or attaches to) the TUN named `name` ("" lets the kernel choose).
// On failure returns false and sets *err to a message naming the step that failed.
bool tun_open(const std::string& name, bool vnet_hdr, TunDevice* out, std::string* err);
bool tun_set_mtu(const std::string& name, int mtu, std::string* err);
int tun_get_mtu(const std::string& name);

}  // namespace wm

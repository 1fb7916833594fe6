// Allowed-IPs table: longest-prefix match from an IPv4/IPv6 address to a peer id.
// It serves cryptokey routing both ways: TX picks the peer for a destination, RX
// checks that a decrypted packet's source belongs to the peer that sent it.
//
// The control thread changes the table in place under Device::table_mu_
// (exclusive); packet threads look up under it shared (see device.h).
// The trie is path-compressed (each node stores its full prefix), so a lookup
// visits at most one node per distinct prefix length on the path.
// Each peer keeps the list of the nodes holding its prefixes (as wireguard-go
// keeps a per-peer node list), and nodes know their parent: removing a peer
// costs O(its prefixes x depth), not a walk of the whole trie.
#pragma once
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

namespace wm {

class AllowedIPs {
 public:
  static constexpr uint32_t kNoPeer = 0xFFFFFFFFu;

  AllowedIPs();
  ~AllowedIPs();
  AllowedIPs(const AllowedIPs&) = delete;
  AllowedIPs& operator=(const AllowedIPs&) = delete;

  // addr is 4 or 16 bytes; cidr is masked on insert. A later insert of the same
  // prefix replaces the peer (as `wg set ... allowed-ips` does).
  void insert(const uint8_t* addr, int family_bytes, int cidr, uint32_t peer);
  // Removes every prefix of a peer: O(its prefixes x depth).
  void remove_peer(uint32_t peer);
  uint32_t lookup(const uint8_t* addr, int family_bytes) const;
  size_t size() const { return count_; }

  struct Entry {
    uint8_t addr[16];
    int family_bytes;
    int cidr;
    uint32_t peer;
  };
  void entries(std::vector<Entry>* out) const;

  struct Node;  // public so the file-local helpers in allowedips.cc can walk it

 private:
  std::unique_ptr<Node>& slot_of(Node* n);
  void own(Node* n, uint32_t peer);
  void disown(Node* n);
  void release(Node* n);

  std::unique_ptr<Node> root4_, root6_;
  size_t count_ = 0;
  // peer -> the nodes holding its prefixes; Node::owner_pos is the index of a node in its peer's list
  std::unordered_map<uint32_t, std::vector<Node*>> owned_;
};

}  // namespace wm

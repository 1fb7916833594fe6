// The responder's side of the cookie mechanism (whitepaper §5.4.7): checks mac1 on
// every handshake message natively, checks mac2 while under load and builds
// cookie replies. The initiator's side (consuming replies, adding mac2) is in
// src/wireguard/cookie.ts, because it lives with the handshake state.
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace wm {

class CookieChecker {
 public:
  // Derives the mac1 and cookie-encryption keys from our static public key.
  void set_public_key(const uint8_t pub[32]);
  bool has_key() const { return has_key_; }
  // msg is a whole handshake message (mac1 at len-32, mac2 at len-16).
  bool check_mac1(const uint8_t* msg, size_t len) const;
  // src is the source address bytes (IP then port, as the cookie binds both).
  bool check_mac2(const uint8_t* msg, size_t len, const uint8_t* src, size_t srclen, uint64_t now_ms);
  // Builds a 64-byte cookie reply to msg into out.
  bool make_reply(const uint8_t* msg, size_t len, uint32_t receiver, const uint8_t* src, size_t srclen,
                  uint64_t now_ms, uint8_t out[64]);

 private:
  void cookie_for(const uint8_t* src, size_t srclen, uint64_t now_ms, uint8_t out[16]);
  uint8_t mac1_key_[32] = {0};
  uint8_t cookie_key_[32] = {0};
  bool has_key_ = false;
  std::mutex secret_mu_;
  uint8_t secret_[32] = {0};
  uint64_t secret_set_ms_ = 0;
  bool secret_valid_ = false;
};

}  // namespace wm

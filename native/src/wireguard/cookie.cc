#include "cookie.h"

#include <cstring>

#include "../crypto/aead.h"
#include "../crypto/blake2s.h"
#include "messages.h"

namespace wm {

namespace {
const char kLabelMac1[] = "mac1----";
const char kLabelCookie[] = "cookie--";

void derive(uint8_t out[32], const char* label, const uint8_t pub[32]) {
  Blake2sState s;
  blake2s_init(&s, 32, nullptr, 0);
  blake2s_update(&s, reinterpret_cast<const uint8_t*>(label), 8);
  blake2s_update(&s, pub, 32);
  blake2s_final(&s, out);
}

// Constant-time comparison: mac checks must not leak how many bytes matched.
bool equal16(const uint8_t* a, const uint8_t* b) {
  uint8_t d = 0;
  for (int i = 0; i < 16; i++) d |= a[i] ^ b[i];
  return d == 0;
}
}  // namespace

void CookieChecker::set_public_key(const uint8_t pub[32]) {
  derive(mac1_key_, kLabelMac1, pub);
  derive(cookie_key_, kLabelCookie, pub);
  has_key_ = true;
}

bool CookieChecker::check_mac1(const uint8_t* msg, size_t len) const {
  if (!has_key_ || len < 32) return false;
  uint8_t mac[16];
  blake2s(mac, 16, msg, len - 32, mac1_key_, 32);
  return equal16(mac, msg + len - 32);
}

void CookieChecker::cookie_for(const uint8_t* src, size_t srclen, uint64_t now_ms, uint8_t out[16]) {
  std::lock_guard<std::mutex> lock(secret_mu_);
  if (!secret_valid_ || now_ms - secret_set_ms_ >= kCookieRefreshMs) {
    random_bytes(secret_, sizeof secret_);
    secret_set_ms_ = now_ms;
    secret_valid_ = true;
  }
  blake2s(out, 16, src, srclen, secret_, 32);
}

bool CookieChecker::check_mac2(const uint8_t* msg, size_t len, const uint8_t* src, size_t srclen, uint64_t now_ms) {
  if (len < 16) return false;
  uint8_t cookie[16], mac[16];
  {
    std::lock_guard<std::mutex> lock(secret_mu_);
    // An expired secret means no cookie we handed out is still good.
    if (!secret_valid_ || now_ms - secret_set_ms_ >= kCookieRefreshMs) return false;
    blake2s(cookie, 16, src, srclen, secret_, 32);
  }
  blake2s(mac, 16, msg, len - 16, cookie, 16);
  return equal16(mac, msg + len - 16);
}

bool CookieChecker::make_reply(const uint8_t* msg, size_t len, uint32_t receiver, const uint8_t* src, size_t srclen,
                               uint64_t now_ms, uint8_t out[64]) {
  if (!has_key_ || len < 32) return false;
  uint8_t cookie[16];
  cookie_for(src, srclen, now_ms, cookie);
  std::memset(out, 0, 64);
  out[0] = kMsgCookieReply;
  put_le32(out + 4, receiver);
  uint8_t* nonce = out + 8;
  if (!random_bytes(nonce, 24)) return false;
  // AAD is the mac1 of the message being answered.
  return xchacha_seal(cookie_key_, nonce, cookie, 16, msg + len - 32, 16, out + 32);
}

}  // namespace wm

// The RX parser chain on arbitrary datagrams: classify, mac1/mac2/cookie reply
// for handshake messages; header parse, decrypt, replay, inner IP parse for
// transport messages.
#include <cstring>
#include <vector>

#include "../src/crypto/aead.h"
#include "../src/net/ip.h"
#include "../src/wireguard/cookie.h"
#include "../src/wireguard/messages.h"
#include "../src/wireguard/replay.h"

using namespace wm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static CookieChecker* cookies = [] {
    auto* c = new CookieChecker();
    uint8_t pub[32];
    std::memset(pub, 7, 32);
    c->set_public_key(pub);
    return c;
  }();
  static const uint8_t key[32] = {1};
  static ChaChaPoly* recv = new ChaChaPoly(key, false);
  static ReplayFilter* replay = new ReplayFilter();

  std::vector<uint8_t> msg(data, data + size);
  int type = classify_message(msg.data(), msg.size());
  uint8_t src[6] = {198, 18, 0, 1, 0, 1};
  if (type == kMsgInitiation || type == kMsgResponse) {
    cookies->check_mac1(msg.data(), msg.size());
    cookies->check_mac2(msg.data(), msg.size(), src, sizeof src, 1000);
    uint8_t reply[64];
    cookies->make_reply(msg.data(), msg.size(), le32(msg.data() + 4), src, sizeof src, 1000, reply);
  } else if (type == kMsgTransport) {
    uint64_t counter = le64(msg.data() + kTransportCounterOff);
    size_t clen = msg.size() - kTransportHeaderSize - kAeadTagSize;
    uint8_t n12[12];
    wg_nonce(n12, counter);
    uint8_t* plain = msg.data() + kTransportHeaderSize;
    bool ok = recv->open(n12, plain, clen, nullptr, 0, plain);
    replay->validate(counter);
    // Past a failed decrypt the plaintext is garbage, which is exactly what the
    // inner parser must survive too.
    (void)ok;
    IpInfo ip;
    parse_ip(plain, clen, &ip);
  }
  return 0;
}

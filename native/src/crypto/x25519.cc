#include "x25519.h"

#include <openssl/evp.h>

namespace wm {

bool x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]) {
  EVP_PKEY* sk = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, priv, 32);
  EVP_PKEY* pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, pub, 32);
  EVP_PKEY_CTX* ctx = sk ? EVP_PKEY_CTX_new(sk, nullptr) : nullptr;
  size_t len = 32;
  // OpenSSL's derive fails on an all-zero shared secret (low-order point).
  bool ok = sk && pk && ctx && EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_derive_set_peer(ctx, pk) == 1 &&
            EVP_PKEY_derive(ctx, out, &len) == 1 && len == 32;
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(pk);
  EVP_PKEY_free(sk);
  return ok;
}

bool x25519_public(uint8_t out[32], const uint8_t priv[32]) {
  EVP_PKEY* sk = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, priv, 32);
  size_t len = 32;
  bool ok = sk && EVP_PKEY_get_raw_public_key(sk, out, &len) == 1 && len == 32;
  EVP_PKEY_free(sk);
  return ok;
}

}  // namespace wm

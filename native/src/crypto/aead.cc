#include "aead.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>

#include "chacha.h"

namespace wm {

ChaChaPoly::ChaChaPoly(const uint8_t key[32], bool encrypt) : ctx_(EVP_CIPHER_CTX_new()), encrypt_(encrypt) {
  if (!ctx_) return;
  if (EVP_CipherInit_ex(ctx_, EVP_chacha20_poly1305(), nullptr, key, nullptr, encrypt ? 1 : 0) != 1) {
    EVP_CIPHER_CTX_free(ctx_);
    ctx_ = nullptr;
  }
}

ChaChaPoly::~ChaChaPoly() {
  if (ctx_) EVP_CIPHER_CTX_free(ctx_);  // frees and cleanses the key schedule
}

bool ChaChaPoly::seal(const uint8_t nonce[12], const uint8_t* in, size_t len, const uint8_t* aad, size_t aadlen,
                      uint8_t* out) {
  int outl = 0;
  if (!ctx_ || !encrypt_) return false;
  if (EVP_CipherInit_ex(ctx_, nullptr, nullptr, nullptr, nonce, 1) != 1) return false;
  if (aadlen && EVP_CipherUpdate(ctx_, nullptr, &outl, aad, int(aadlen)) != 1) return false;
  if (len && EVP_CipherUpdate(ctx_, out, &outl, in, int(len)) != 1) return false;
  if (EVP_CipherFinal_ex(ctx_, out + len, &outl) != 1) return false;
  return EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, int(kAeadTagSize), out + len) == 1;
}

bool ChaChaPoly::open(const uint8_t nonce[12], const uint8_t* in, size_t len, const uint8_t* aad, size_t aadlen,
                      uint8_t* out) {
  int outl = 0;
  if (!ctx_ || encrypt_) return false;
  if (EVP_CipherInit_ex(ctx_, nullptr, nullptr, nullptr, nonce, 0) != 1) return false;
  if (aadlen && EVP_CipherUpdate(ctx_, nullptr, &outl, aad, int(aadlen)) != 1) return false;
  if (len && EVP_CipherUpdate(ctx_, out, &outl, in, int(len)) != 1) return false;
  if (EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, int(kAeadTagSize), const_cast<uint8_t*>(in + len)) != 1)
    return false;
  return EVP_CipherFinal_ex(ctx_, out + len, &outl) == 1;
}

static bool xchacha(bool encrypt, const uint8_t key[32], const uint8_t nonce[24], const uint8_t* in, size_t len,
                    const uint8_t* aad, size_t aadlen, uint8_t* out) {
  uint8_t subkey[32];
  uint8_t n12[12] = {0};
  hchacha20(subkey, key, nonce);
  std::memcpy(n12 + 4, nonce + 16, 8);
  ChaChaPoly c(subkey, encrypt);
  secure_zero(subkey, sizeof subkey);
  return encrypt ? c.seal(n12, in, len, aad, aadlen, out) : c.open(n12, in, len, aad, aadlen, out);
}

bool xchacha_seal(const uint8_t key[32], const uint8_t nonce[24], const uint8_t* in, size_t len, const uint8_t* aad,
                  size_t aadlen, uint8_t* out) {
  return xchacha(true, key, nonce, in, len, aad, aadlen, out);
}
bool xchacha_open(const uint8_t key[32], const uint8_t nonce[24], const uint8_t* in, size_t len, const uint8_t* aad,
                  size_t aadlen, uint8_t* out) {
  return xchacha(false, key, nonce, in, len, aad, aadlen, out);
}

bool random_bytes(uint8_t* out, size_t len) { return RAND_bytes(out, int(len)) == 1; }
void secure_zero(void* p, size_t len) { OPENSSL_cleanse(p, len); }

}  // namespace wm

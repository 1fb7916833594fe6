// ChaCha20-Poly1305 (RFC 8439) through the OpenSSL that Node already links: its
// AVX2/AVX-512 code is far faster than anything we would write, and reusing Node's
// copy adds no dependency. One context per key and direction; a context is used by
// one thread at a time (send contexts by the TX thread, receive contexts by RX).
#pragma once
#include <cstddef>
#include <cstdint>

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace wm {

constexpr size_t kAeadTagSize = 16;

class ChaChaPoly {
 public:
  ChaChaPoly(const uint8_t key[32], bool encrypt);
  ~ChaChaPoly();
  ChaChaPoly(const ChaChaPoly&) = delete;
  ChaChaPoly& operator=(const ChaChaPoly&) = delete;
  bool ok() const { return ctx_ != nullptr; }
  // Writes len bytes of ciphertext then the 16-byte tag to out (out may equal in).
  bool seal(const uint8_t nonce[12], const uint8_t* in, size_t len, const uint8_t* aad, size_t aadlen, uint8_t* out);
  // in holds len bytes of ciphertext followed by the tag; writes len bytes of plaintext.
  bool open(const uint8_t nonce[12], const uint8_t* in, size_t len, const uint8_t* aad, size_t aadlen, uint8_t* out);

 private:
  EVP_CIPHER_CTX* ctx_;
  bool encrypt_;
};

// WireGuard transport nonce: 4 zero bytes then the 64-bit little-endian counter.
inline void wg_nonce(uint8_t nonce[12], uint64_t counter) {
  for (int i = 0; i < 4; i++) nonce[i] = 0;
  for (int i = 0; i < 8; i++) nonce[4 + i] = uint8_t(counter >> (8 * i));
}

bool xchacha_seal(const uint8_t key[32], const uint8_t nonce[24], const uint8_t* in, size_t len, const uint8_t* aad,
                  size_t aadlen, uint8_t* out);
bool xchacha_open(const uint8_t key[32], const uint8_t nonce[24], const uint8_t* in, size_t len, const uint8_t* aad,
                  size_t aadlen, uint8_t* out);
// Cryptographic randomness (OpenSSL's RAND_bytes).
bool random_bytes(uint8_t* out, size_t len);
// Wipes key material so the compiler cannot drop the store.
void secure_zero(void* p, size_t len);

}  // namespace wm

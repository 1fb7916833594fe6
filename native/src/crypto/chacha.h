// HChaCha20: derives the subkey for XChaCha20-Poly1305 (cookie replies). OpenSSL does
// not expose it, and it is one ChaCha block without the final addition.
#pragma once
#include <cstdint>

namespace wm {
void hchacha20(uint8_t out[32], const uint8_t key[32], const uint8_t nonce[16]);
}

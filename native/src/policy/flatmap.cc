#include "flatmap.h"

#include <sys/random.h>

namespace wm {

uint64_t flatmap_seed() {
  static const uint64_t seed = [] {
    uint64_t s = 0x5EED5EED5EED5EEDull;
    if (getrandom(&s, sizeof s, 0) != sizeof s) s ^= uint64_t(reinterpret_cast<uintptr_t>(&s));
    return s;
  }();
  return seed;
}

}  // namespace wm

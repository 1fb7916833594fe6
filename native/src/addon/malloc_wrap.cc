// glibc's malloc, read and trimmed from the agent (src/agent/malloctrim.ts): after a sync the main arena
// holds free chunks between live ones (gRPC frames, decoded records, native tables grown and rehashed), and
// glibc gives back to the kernel only the free space at the arena's top on its own. malloc_trim(0) also
// releases every whole free page inside the arenas (MADV_DONTNEED), which is what a sync leaves behind:
// bench:controlplane 4 x 1000 x 10 measured the main arena's growth 598 -> 213 B per remote endpoint.
// On another C library both calls report "not available" and do nothing.
#include <napi.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "wraps.h"

namespace wm {
namespace addon {

namespace {

// mallocInfo() -> { arenaBytes, inUseBytes, freeBytes, mmapBytes } | null: mallinfo2 summed over every arena
// (arena: bytes obtained with brk/mmap for the arenas; uordblks: in use; fordblks: free; hblkhd: large
// allocations served by their own mmap).
Napi::Value MallocInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  struct mallinfo2 m = mallinfo2();
  Napi::Object o = Napi::Object::New(env);
  o.Set("arenaBytes", Napi::Number::New(env, double(m.arena)));
  o.Set("inUseBytes", Napi::Number::New(env, double(m.uordblks)));
  o.Set("freeBytes", Napi::Number::New(env, double(m.fordblks)));
  o.Set("mmapBytes", Napi::Number::New(env, double(m.hblkhd)));
  return o;
#else
  return env.Null();
#endif
}

// mallocTrim() -> boolean: malloc_trim(0)'s answer (true: some memory went back to the kernel).
Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

}  // namespace

void RegisterMalloc(Napi::Env env, Napi::Object exports) {
  exports.Set("mallocInfo", Napi::Function::New(env, MallocInfo, "mallocInfo"));
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim, "mallocTrim"));
}

}  // namespace addon
}  // namespace wm

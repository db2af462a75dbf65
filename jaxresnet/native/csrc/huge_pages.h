// Output buffers on transparent huge pages.
//
// XLA:CPU maps a fresh temporary buffer for every step and every activation in it is first
// touched by the layer that writes it: with 4 KiB pages that is one page fault per 4 KiB, and the
// stem's 36 MB output alone took 19.7 ms to write in a lone jitted convolution against 12.6 ms
// with huge pages (oneDNN's own time for it with a reused buffer: 11.2 ms). Where the kernel's
// transparent huge pages are "madvise" (Debian's default), asking for them on the still-untouched
// output is what makes its first-touch faults 2 MiB ones. Already-touched pages are unaffected,
// and a refused request (THP "never", another OS) costs nothing but the call.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace jaxresnet {

inline void AdviseHugePages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (bytes < 2 * kHuge) return;  // too small to hold one aligned huge page worth asking for
  uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace jaxresnet

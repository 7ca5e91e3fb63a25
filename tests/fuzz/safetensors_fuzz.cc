// libFuzzer target: the input is a whole .safetensors file. It is written to an
// in-memory file (the reader mmaps a path), opened, and every tensor it accepts is
// read end to end, so a header that passes validation but points outside the
// mapping faults here.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/weights/safetensors.h"

namespace {

// One in-memory file per fuzzer process (memfd, reached by path through
// /proc/self/fd), rewritten for every input. A file on disk would make the
// run I/O-bound: ext4 flushes a truncated-and-rewritten file on close.
struct Scratch {
  int fd = -1;
  std::string path;
};

const Scratch& GetScratch() {
  static const Scratch scratch = [] {
    Scratch s;
    s.fd = memfd_create("moegraph-safetensors-fuzz", MFD_CLOEXEC);
    if (s.fd < 0) __builtin_trap();
    s.path = "/proc/self/fd/" + std::to_string(s.fd);
    return s;
  }();
  return scratch;
}

bool Rewrite(const Scratch& s, const uint8_t* data, size_t size) {
  if (ftruncate(s.fd, 0) != 0) return false;
  size_t done = 0;
  while (done < size) {
    ssize_t n = pwrite(s.fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moegraph;
  const Scratch& scratch = GetScratch();
  if (!Rewrite(scratch, data, size)) __builtin_trap();
  auto store = WeightStore::OpenFile(scratch.path);
  if (!store.ok()) return 0;
  volatile uint8_t sink = 0;
  for (const std::string& name : (*store)->Names()) {
    auto t = (*store)->Get(name);
    if (!t.ok()) continue;                    // rank > 4 is refused here, not at open
    if (t->bytes() > size) __builtin_trap();  // the data must come from the input
    const auto* bytes = static_cast<const uint8_t*>(t->data);
    for (size_t i = 0; i < t->bytes(); ++i) sink = sink ^ bytes[i];
  }
  (void)sink;
  return 0;
}

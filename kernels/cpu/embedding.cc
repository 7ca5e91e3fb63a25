#include "kernels/cpu/embedding.h"

namespace moegraph::cpu {

bool Embedding(const EmbeddingParams& p) {
  for (int64_t t = 0; t < p.tokens; ++t) {
    const int32_t id = p.ids[t];
    if (id < 0 || id >= p.vocab) return false;
    float* row = p.out + t * p.streams * p.dim;
    for (int64_t c = 0; c < p.dim; ++c) row[c] = LoadWeight(p.table, p.table_type, id * p.dim + c);
    for (int s = 1; s < p.streams; ++s) {
      for (int64_t c = 0; c < p.dim; ++c) row[s * p.dim + c] = row[c];
    }
  }
  return true;
}

}  // namespace moegraph::cpu

#include "engine/backend/op_timer.h"

namespace moegraph {

const char* OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kMatmul:
      return "matmul";
    case OpKind::kAttention:
      return "attention";
    case OpKind::kCompressor:
      return "compressor";
    case OpKind::kIndexer:
      return "indexer";
    case OpKind::kMoe:
      return "moe";
    case OpKind::kOther:
      return "norms/mhc/other";
    case OpKind::kCount:
      break;
  }
  return "?";
}

}  // namespace moegraph

// Runtime sizes -> compile-time template arguments, in one place. Each macro
// runs its body with a constexpr bound to the matched value, and returns
// cudaErrorInvalidValue (after printing which value was unsupported) for any
// other value, so that an unsupported shape fails loudly at launch instead of
// running a wrong instantiation.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdio>

#define MG_DISPATCH_FAIL(what, value)                                                   \
  do {                                                                                  \
    std::fprintf(stderr, "moegraph cuda dispatch: unsupported %s = %d (%s:%d)\n", what, \
                 static_cast<int>(value), __FILE__, __LINE__);                          \
    return cudaErrorInvalidValue;                                                       \
  } while (0)

#define MG_DISPATCH_CASE(NAME, V, ...) \
  case V: {                            \
    constexpr int NAME = V;            \
    __VA_ARGS__;                       \
  } break;

// Hyper-connection stream count n (hc_mult).
#define MG_DISPATCH_HC_MULT(value, NAME, ...) \
  switch (value) {                            \
    MG_DISPATCH_CASE(NAME, 1, __VA_ARGS__)    \
    MG_DISPATCH_CASE(NAME, 2, __VA_ARGS__)    \
    MG_DISPATCH_CASE(NAME, 3, __VA_ARGS__)    \
    MG_DISPATCH_CASE(NAME, 4, __VA_ARGS__)    \
    MG_DISPATCH_CASE(NAME, 8, __VA_ARGS__)    \
    default:                                  \
      MG_DISPATCH_FAIL("hc_mult", value);     \
  }

// Indexer head dim c (keys held in registers, 8 channels per 16-byte load).
#define MG_DISPATCH_INDEX_HEAD_DIM(value, NAME, ...) \
  switch (value) {                                   \
    MG_DISPATCH_CASE(NAME, 8, __VA_ARGS__)           \
    MG_DISPATCH_CASE(NAME, 16, __VA_ARGS__)          \
    MG_DISPATCH_CASE(NAME, 32, __VA_ARGS__)          \
    MG_DISPATCH_CASE(NAME, 64, __VA_ARGS__)          \
    MG_DISPATCH_CASE(NAME, 128, __VA_ARGS__)         \
    default:                                         \
      MG_DISPATCH_FAIL("index_head_dim", value);     \
  }

// Attention head dim d for the tensor-core kernel (the generic kernel takes
// any d up to 1024).
#define MG_DISPATCH_ATTN_HEAD_DIM(value, NAME, ...)  \
  switch (value) {                                   \
    MG_DISPATCH_CASE(NAME, 512, __VA_ARGS__)         \
    default:                                         \
      MG_DISPATCH_FAIL("attention head_dim", value); \
  }

// Rows per tile of the grouped expert GEMM.
#define MG_DISPATCH_MOE_BLOCK_M(value, NAME, ...) \
  switch (value) {                                \
    MG_DISPATCH_CASE(NAME, 16, __VA_ARGS__)       \
    MG_DISPATCH_CASE(NAME, 64, __VA_ARGS__)       \
    default:                                      \
      MG_DISPATCH_FAIL("moe block_m", value);     \
  }

// Indexer heads for the tensor-core scorer (head_dim 128; static shared
// memory holds the queries of at most 64 heads).
#define MG_DISPATCH_INDEX_TC_HEADS(value, NAME, ...) \
  switch (value) {                                   \
    MG_DISPATCH_CASE(NAME, 32, __VA_ARGS__)          \
    MG_DISPATCH_CASE(NAME, 64, __VA_ARGS__)          \
    default:                                         \
      MG_DISPATCH_FAIL("indexer heads", value);      \
  }

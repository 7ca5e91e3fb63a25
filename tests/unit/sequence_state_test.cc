// Entry page pools and sequence slots: reservation at admission, mapping on
// demand, release, and refusal when the pool cannot promise the pages.
#include <catch2/catch.hpp>

#include "engine/backend/backend.h"
#include "engine/model/model_config.h"
#include "engine/state/entry_page_pool.h"
#include "engine/state/sequence_state.h"

using namespace moegraph;

TEST_CASE("entry page pool reserves, maps on demand and releases", "[state]") {
  EntryPagePool pool(/*num_pages=*/4, /*page_size=*/2, /*num_slots=*/2, /*max_pages_per_slot=*/3);
  CHECK(pool.PagesFor(0) == 0);
  CHECK(pool.PagesFor(5) == 3);
  REQUIRE(pool.Reserve(0, 3).ok());
  CHECK(pool.unreserved_pages() == 1);
  // Slot 1 cannot get 2 pages while slot 0 holds a promise of 3.
  CHECK(pool.Reserve(1, 2).code() == absl::StatusCode::kResourceExhausted);
  // More than a slot's table holds is refused too.
  CHECK(pool.Reserve(1, 4).code() == absl::StatusCode::kResourceExhausted);

  REQUIRE(pool.Ensure(0, 3).ok());  // 2 pages mapped
  CHECK(pool.table()[0] >= 0);
  CHECK(pool.table()[1] >= 0);
  CHECK(pool.table()[2] == -1);
  CHECK(pool.table()[0] != pool.table()[1]);
  CHECK(pool.Ensure(0, 7).code() == absl::StatusCode::kOutOfRange);  // beyond the reservation

  pool.Release(0);
  CHECK(pool.unreserved_pages() == 4);
  CHECK(pool.table()[0] == -1);
  REQUIRE(pool.Reserve(1, 3).ok());
  REQUIRE(pool.Ensure(1, 6).ok());
}

TEST_CASE("sequence state admits by reservation and checks chunk continuity", "[state]") {
  auto config = ParseModelConfig(R"({
    "model_type": "deepseek_v4", "vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 2,
    "num_attention_heads": 2, "head_dim": 8, "partial_rotary_factor": 0.25, "q_lora_rank": 4,
    "o_groups": 1, "o_lora_rank": 4, "n_routed_experts": 2, "num_experts_per_tok": 1,
    "moe_intermediate_size": 4, "sliding_window": 4,
    "layer_types": ["compressed_sparse_attention", "heavily_compressed_attention"],
    "mlp_layer_types": ["moe", "moe"],
    "compress_rates": {"compressed_sparse_attention": 2, "heavily_compressed_attention": 4},
    "index_n_heads": 1, "index_head_dim": 4, "index_topk": 2, "hc_mult": 2,
    "hc_sinkhorn_iters": 2, "max_position_embeddings": 64,
    "rope_parameters": {"main": {"rope_type": "default", "rope_theta": 10000.0},
                        "compress": {"rope_type": "default", "rope_theta": 10000.0}}})");
  INFO(config.status().ToString());
  REQUIRE(config.ok());
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  SequenceStateOptions options;
  options.num_slots = 2;
  options.context_limit = 32;
  options.pool_tokens = 40;  // less than 2 x 32: admission must refuse
  options.page_size = 4;
  auto state = SequenceState::Create(backend.get(), *config, options);
  INFO(state.status().ToString());
  REQUIRE(state.ok());
  SequenceState& s = **state;

  REQUIRE(s.Acquire(0, 32).ok());
  CHECK(s.Acquire(0, 8).code() == absl::StatusCode::kFailedPrecondition);  // in use
  CHECK(s.Acquire(1, 33).code() == absl::StatusCode::kInvalidArgument);    // over the limit
  CHECK(s.Acquire(1, 32).code() == absl::StatusCode::kResourceExhausted);
  CHECK_FALSE(s.in_use(1));  // refused admission leaves the slot free
  REQUIRE(s.Acquire(1, 8).ok());

  CHECK(s.PrepareChunk(1, 1, 2).code() == absl::StatusCode::kInvalidArgument);  // not contiguous
  REQUIRE(s.PrepareChunk(1, 0, 5).ok());
  s.Advance(1, 5);
  CHECK(s.length(1) == 5);
  CHECK(s.PrepareChunk(1, 5, 4).code() == absl::StatusCode::kOutOfRange);  // past max_tokens
  REQUIRE(s.SyncTables().ok());

  // Pages of the CSA kind are addressed per layer of the kind.
  EntryPages e = s.entries(EntryKind::kCsa, 0);
  CHECK(e.page_size == 4);
  CHECK(e.pool.dim(2) == 1);
  CHECK(e.pool.dim(3) == 8);

  s.Release(0);
  CHECK_FALSE(s.in_use(0));
  CHECK(s.PrepareChunk(0, 0, 1).code() == absl::StatusCode::kFailedPrecondition);
  REQUIRE(s.Acquire(0, 24).ok());
}

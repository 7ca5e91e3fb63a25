// Engine::state_pool() on the DeepSeek-V4 engine (tiny model, CPU): the pool's
// pages and tokens as SequenceState sizes them, what one sequence can get,
// and reserve / use / release as a request goes through.
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "engine/model/dsv4_engine.h"

namespace moegraph {
namespace {

const std::string kModelDir = std::string(MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/dsv4-tiny";

TEST_CASE("state pool: capacity, the longest sequence, reserve, use and release", "[state]") {
  EngineOptions o;
  o.model_dir = kModelDir;
  o.num_slots = 2;
  o.context_limit = 4096;
  o.max_step_tokens = 128;
  o.state_pool_tokens = 1000;
  auto created = Dsv4Engine::Create(o);
  REQUIRE(created.ok());
  Dsv4Engine& engine = **created;

  // dsv4-tiny: CSA rate 4 (entries and indexer keys), HCA rate 16, pages of
  // 64 entries. CSA: ceil(1000/4/64) = 4 pages + 1 per slot = 6 of 256
  // tokens; HCA: ceil(62/64) = 1 + 2 = 3 of 1024 tokens; index as CSA.
  StatePoolStats st = engine.state_pool();
  CHECK(st.capacity_pages == 6 + 3 + 6);
  CHECK(st.capacity_tokens == 6 * 256);
  // CSA binds: 6 pages hold entries 0..383, i.e. tokens up to 384*4 + 3.
  CHECK(st.max_sequence_tokens == 1539);
  CHECK(st.reserved_pages == 0);
  CHECK(st.used_pages == 0);
  CHECK(st.reserved_tokens == 0);
  CHECK(st.used_tokens == 0);

  // The computed limit is the one AcquireSlot applies.
  CHECK(engine.AcquireSlot(0, 1540).code() == absl::StatusCode::kResourceExhausted);
  CHECK(engine.state_pool().reserved_pages == 0);  // a refusal leaves nothing reserved
  REQUIRE(engine.AcquireSlot(0, 1539).ok());
  st = engine.state_pool();
  CHECK(st.reserved_tokens == 1539);
  CHECK(st.reserved_pages == 6 + 2 + 6);  // HCA: 1539/16 = 96 entries, 2 pages
  CHECK(st.used_pages == 0);
  // What is left cannot hold even a short second sequence's CSA entries.
  CHECK(engine.AcquireSlot(1, 8).code() == absl::StatusCode::kResourceExhausted);

  // A 100-token prefill maps one page of each kind (25 CSA, 6 HCA entries).
  constexpr int kPrompt = 100;
  auto ids = engine.AllocateHostTokens(kPrompt);
  for (int i = 0; i < kPrompt; ++i) ids[i] = 5 + i % 50;
  StepPlan plan;
  plan.token_ids = ids.get();
  plan.num_tokens = kPrompt;
  plan.seqs.push_back(SeqChunk{0, 0, 0, kPrompt, true});
  std::vector<float> logits;
  REQUIRE(engine.Step(plan, &logits).ok());
  st = engine.state_pool();
  CHECK(st.used_tokens == kPrompt);
  CHECK(st.used_pages == 3);
  CHECK(st.reserved_tokens == 1539);

  engine.ReleaseSlot(0);
  st = engine.state_pool();
  CHECK(st.reserved_tokens == 0);
  CHECK(st.used_tokens == 0);
  CHECK(st.reserved_pages == 0);
  CHECK(st.used_pages == 0);
  CHECK(st.capacity_pages == 15);
}

TEST_CASE("state pool: the context limit binds when the pool is large", "[state]") {
  EngineOptions o;
  o.model_dir = kModelDir;
  o.num_slots = 2;
  o.context_limit = 512;
  o.max_step_tokens = 64;  // default pool: 2 x 512 tokens
  auto created = Dsv4Engine::Create(o);
  REQUIRE(created.ok());
  const StatePoolStats st = (*created)->state_pool();
  CHECK(st.max_sequence_tokens == 512);
  // CSA: 1024/4 = 256 entries = 4 pages + 2; HCA: 64 entries = 1 page + 2.
  CHECK(st.capacity_pages == 6 + 3 + 6);
  CHECK(st.capacity_tokens == 6 * 256);
}

}  // namespace
}  // namespace moegraph

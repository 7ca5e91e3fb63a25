// server/scheduler/host_step_buffers: two sets that alternate, each keeping
// what was staged in it until its next turn.
#include <catch2/catch.hpp>

#include "server/scheduler/host_step_buffers.h"
#include "server/testing/fake_engine.h"

namespace moegraph {
namespace {

TEST_CASE("host step buffers: sets alternate and keep their contents", "[scheduler]") {
  FakeEngine engine(FakeEngineOptions{});
  auto buffers = HostStepBuffers::Create(&engine, 16, 4);
  REQUIRE(buffers.ok());
  HostStepBuffers::Set& a = (*buffers)->Next();
  for (int i = 0; i < 16; ++i) a.token_ids[i] = i;
  for (int i = 0; i < 4; ++i) a.sampled_ids[i] = 300 + i;
  HostStepBuffers::Set& b = (*buffers)->Next();
  CHECK(b.token_ids != a.token_ids);
  b.token_ids[0] = -1;
  b.sampled_ids[3] = -1;
  // Staging step N+1 leaves step N's inputs and sampled ids intact.
  CHECK(a.token_ids[0] == 0);
  CHECK(a.token_ids[15] == 15);
  CHECK(a.sampled_ids[3] == 303);
  CHECK(&(*buffers)->Next() == &a);
  CHECK(&(*buffers)->current() == &a);

  CHECK_FALSE(HostStepBuffers::Create(&engine, 0, 4).ok());
}

}  // namespace
}  // namespace moegraph

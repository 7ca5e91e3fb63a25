// Interim: Engine::Create until the CPU engine lands on main.
#include "engine/engine.h"

namespace moegraph {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options) {
  return absl::UnimplementedError("the engine is not merged yet; cannot load " + options.model_dir +
                                  " (run moegraphd --fake-engine)");
}

}  // namespace moegraph

// Engine::Create's choice when EngineOptions::devices is set
// (docs/expert-parallel.md): the devices and layout checked, then one rank
// (the single-rank engine), an ExpertParallelEngine (`ep`) or a
// LayerParallelEngine (`layers`).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"

namespace moegraph {

// Errors name the field (devices, layout, num_slots, exchange_timeout_ms).
absl::StatusOr<std::unique_ptr<Engine>> CreateMultiRankEngine(const EngineOptions& options);

// The entries of `devices`, checked: non-empty, "cpu" or "cpu:N", no repeats.
absl::StatusOr<std::vector<std::string>> ParseDevices(const std::string& devices);
// OK when `layout` is one of kLayouts.
absl::Status CheckLayout(const std::string& layout);
// What every multi-rank engine checks first: the devices (returned), the
// layout (one of kLayouts and `layout`), and exchange_timeout_ms.
absl::StatusOr<std::vector<std::string>> CheckRankOptions(const EngineOptions& options,
                                                          const char* layout);

}  // namespace moegraph

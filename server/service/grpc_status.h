// The one place where absl::Status and grpc::Status meet: the codes map one
// to one (both follow google.rpc.Code), messages pass through unchanged.
#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace moegraph {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace moegraph

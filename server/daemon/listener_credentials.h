// The gRPC listener's transport security from the config: plaintext, TLS
// (tls_cert_file + tls_key_file), or mutual TLS (plus tls_client_ca_file:
// every client must present a certificate that CA signed). The files are
// re-read every tls_reload_seconds, so replaced certificates take effect for
// new connections without a restart.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"
#include "server/config/server_config.h"

namespace moegraph {

// Errors name the key of a file that cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenerCredentials(
    const ServerConfig& config);

// Whether `listen_address` can only be reached from this host (127.0.0.0/8,
// ::1, localhost).
bool IsLoopbackAddress(const std::string& listen_address);

}  // namespace moegraph

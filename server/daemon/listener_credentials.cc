#include "server/daemon/listener_credentials.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "server/config/host_port.h"

namespace moegraph {
namespace {

// Refuses at start a file the watcher could not read (it would only log
// that, and every handshake would fail).
absl::Status CheckReadable(const char* key, const std::string& path) {
  std::ifstream in(path);
  if (!in || in.peek() == std::ifstream::traits_type::eof()) {
    return absl::InvalidArgumentError(absl::StrCat(
        key, ": cannot read ", path, ": ", in ? "the file is empty" : std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenerCredentials(
    const ServerConfig& config) {
  if (config.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  if (absl::Status s = CheckReadable("tls_cert_file", config.tls_cert_file); !s.ok()) return s;
  if (absl::Status s = CheckReadable("tls_key_file", config.tls_key_file); !s.ok()) return s;
  const bool mutual = !config.tls_client_ca_file.empty();
  if (mutual) {
    if (absl::Status s = CheckReadable("tls_client_ca_file", config.tls_client_ca_file); !s.ok()) {
      return s;
    }
  }
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      config.tls_key_file, config.tls_cert_file, mutual ? config.tls_client_ca_file : "",
      static_cast<unsigned int>(config.tls_reload_seconds));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (mutual) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

bool IsLoopbackAddress(const std::string& listen_address) {
  absl::StatusOr<HostPort> hp = ParseHostPort(listen_address);
  if (!hp.ok()) return false;
  return hp->host == "localhost" || hp->host == "::1" || absl::StartsWith(hp->host, "127.");
}

}  // namespace moegraph

#!/usr/bin/env bash
# Installs the Debian 12 packages moegraph builds and tests with. Idempotent and
# quiet when everything is already there; the CUDA toolkit is used if present
# (/usr/local/cuda) and never installed here. Extra package names given as
# arguments are installed the same way (tests/image/image_test.sh adds podman,
# buildah and debootstrap).
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libyaml-cpp-dev catch2 nlohmann-json3-dev libonig-dev libicu-dev prometheus-cpp-dev libssl-dev openssl
  python3 python3-grpcio python3-grpc-tools python3-yaml prometheus
  clang-14 libclang-rt-14-dev
  "$@"
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

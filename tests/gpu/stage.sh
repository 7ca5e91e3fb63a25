#!/usr/bin/env bash
# Stages what tests/gpu/run.sh needs on the GPU machine into DEST (default
# ../main/.gpu, the git-ignored folder the device tool carries): stripped
# executables, their non-system shared libraries (the machine has libc,
# libstdc++, CUDA and NCCL but no abseil/gRPC/protobuf/yaml-cpp), this
# folder's scripts, the fixture tools (tools/) and the flash-shaped config,
# and the tokenizer fixtures. Run from the repository root after `make build`.
set -euo pipefail
BUILD=${BUILD:-build}
DEST=${1:-../main/.gpu}
rm -rf "$DEST"
mkdir -p "$DEST/lib" "$DEST/fixtures"
exes=()
for exe in "$BUILD/tests/moegraph_cuda_tests" "$BUILD/moegraph" "$BUILD/moegraphd"; do
  if [ -x "$exe" ]; then
    strip -o "$DEST/$(basename "$exe")" "$exe"
    exes+=("$exe")
  fi
done
ldd "${exes[@]}" | awk '/=> \//{print $3}' | sort -u |
  grep -vE '/(libc|libm|libstdc\+\+|libgcc_s|ld-linux[^/]*|libdl|libpthread|librt|libcuda|libcudart|libcublas|libcublasLt|libnccl)\.so' |
  while read -r lib; do cp -L "$lib" "$DEST/lib/"; done
# Large libraries (ICU data) and the executables travel compressed (the
# device tool carries 64 MiB with the tree); run.sh unpacks them.
find "$DEST/lib" -type f -size +4M -exec gzip -9 {} \;
for exe in "${exes[@]}"; do gzip -9 -f "$DEST/$(basename "$exe")"; done
cp tests/gpu/run.sh "$DEST/"
cp tools/make_dsv4_fixture.py tools/quantize_checkpoint.py \
  tests/fixtures/configs/flash-shaped-4layer.overrides.json \
  tests/fixtures/configs/v4-flash-base.config.json "$DEST/"
cp -r tests/fixtures/dsv4-tiny tests/fixtures/bpe32k "$DEST/fixtures/"
cp tests/gpu/tokenizers_bench.py tests/gpu/peer_transformers.py "$DEST/"
du -sh "$DEST"

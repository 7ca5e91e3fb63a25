# moegraphd container image: the daemon, the `moegraph` tool, the tiny test
# model and the default config. Usage: deploy/README.md.
#
# Tested: `make image-test` (tests/image/image_test.sh, run by .ci/run) builds
# this file with `podman build --isolation chroot --build-arg MOEGRAPH_CUDA=OFF`
# on a debootstrapped Debian 12 base, then starts moegraphd inside the image as
# the moegraph user and checks health, a Generate and /metrics. Not tested:
# the CUDA variant (MOEGRAPH_CUDA=ON, the default), because NVIDIA's apt
# repository cannot be reached from the test machine, and `docker run`/`podman
# run` themselves (the test machine permits no setrlimit for them; the test
# uses `buildah run`).
#
# Base image choice: Debian 12 plus, for MOEGRAPH_CUDA=ON, the CUDA 13.0
# toolkit from NVIDIA's debian12 apt repository. NVIDIA publishes no
# Debian-based nvidia/cuda devel image, and an Ubuntu one would bring other
# versions of gRPC, protobuf, abseil, yaml-cpp and Catch2 than the Debian 12
# ones the project is developed and tested with (scripts/install-deps.sh).

# ON: the CUDA backend (needs NVIDIA's apt repository at build time).
# OFF: the CPU-only daemon, built from Debian packages alone.
ARG MOEGRAPH_CUDA=ON
ARG CUDA_KEYRING_URL=https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb

# ---------------------------------------------------------------------------
# build: (the CUDA 13.0 toolkit,) the project's Debian packages, then `make build`.
FROM debian:12 AS build
ARG MOEGRAPH_CUDA
ARG CUDA_KEYRING_URL
ENV DEBIAN_FRONTEND=noninteractive
RUN if [ "$MOEGRAPH_CUDA" = ON ]; then \
      apt-get update \
   && apt-get install -y --no-install-recommends ca-certificates curl \
   && curl -fsSL -o /tmp/cuda-keyring.deb "$CUDA_KEYRING_URL" \
   && dpkg -i /tmp/cuda-keyring.deb \
   && apt-get update \
   && apt-get install -y --no-install-recommends cuda-toolkit-13-0 libnccl-dev \
   && rm -rf /var/lib/apt/lists/* /tmp/cuda-keyring.deb; \
    elif [ "$MOEGRAPH_CUDA" != OFF ]; then \
      echo "MOEGRAPH_CUDA must be ON or OFF, got '$MOEGRAPH_CUDA'"; exit 1; \
    fi
# The same package list CI uses; a layer of its own so that source changes
# do not reinstall it.
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# `make build` is the README's build (it runs install-deps.sh again, which
# finds everything installed), limited to the two executables the image
# ships. nvcc is named so that CMake finds CUDA even if /usr/local/cuda is not
# linked.
RUN if [ "$MOEGRAPH_CUDA" = ON ]; then \
      cmake_args="-DCMAKE_CUDA_COMPILER=/usr/local/cuda-13.0/bin/nvcc"; \
    else \
      cmake_args="-DMOEGRAPH_CUDA=OFF"; \
    fi \
 && make build BUILD_DIR=/build TARGETS="moegraphd moegraph" CMAKE_ARGS="$cmake_args"

# ---------------------------------------------------------------------------
# runtime: shared libraries only. The GPU driver (libcuda) comes from the host
# through the NVIDIA Container Toolkit (`docker run --gpus all`); without a
# GPU, device: auto runs the model on the CPU.
FROM debian:12-slim AS runtime
ARG MOEGRAPH_CUDA
ARG CUDA_KEYRING_URL
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libabsl20220623 libyaml-cpp0.7 libonig5 libicu72 \
      libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libcivetweb1 \
 && if [ "$MOEGRAPH_CUDA" = ON ]; then \
      apt-get install -y --no-install-recommends ca-certificates curl \
   && curl -fsSL -o /tmp/cuda-keyring.deb "$CUDA_KEYRING_URL" \
   && dpkg -i /tmp/cuda-keyring.deb \
   && apt-get update \
   && apt-get install -y --no-install-recommends cuda-cudart-13-0 libcublas-13-0 libnccl2 \
   && echo /usr/local/cuda-13.0/lib64 > /etc/ld.so.conf.d/moegraph-cuda.conf \
   && ldconfig; \
    fi \
 && rm -rf /var/lib/apt/lists/* /tmp/cuda-keyring.deb
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

COPY --from=build /build/moegraphd /build/moegraph /usr/local/bin/
# Fail the build, not the first start, when a shared library is missing
# (libcuda.so.1 is the driver's and arrives with --gpus).
RUN missing=$(ldd /usr/local/bin/moegraphd /usr/local/bin/moegraph | grep "not found" \
              | grep -v "libcuda.so.1" || true) \
 && if [ -n "$missing" ]; then echo "missing libraries:"; echo "$missing"; exit 1; fi

# The default config names model_dir: tests/fixtures/dsv4-tiny relative to the
# working directory, so the image keeps the repository's layout under /opt/moegraph.
WORKDIR /opt/moegraph
COPY config/moegraphd.yaml config/moegraphd.yaml
COPY tests/fixtures/dsv4-tiny tests/fixtures/dsv4-tiny
# A fixed uid, so that Kubernetes' runAsNonRoot can check it (deploy/k8s/).
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin moegraph
USER moegraph

# gRPC, Prometheus /metrics.
EXPOSE 50051 9464
# SIGTERM drains (drain_grace_seconds, 30 s by default): give `docker stop`
# more than that (`docker stop -t 40`, or `--stop-timeout 40` at run time).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD ["moegraph", "health", "--server", "127.0.0.1:50051", "--timeout", "3"]

ENTRYPOINT ["moegraphd"]
# Inside a container the daemon must listen on all interfaces to be reached
# through -p. Arguments given to `docker run` replace these three, so repeat
# them when adding flags (deploy/README.md).
CMD ["--config=config/moegraphd.yaml", "--listen_address=0.0.0.0:50051", \
     "--metrics_address=0.0.0.0:9464"]

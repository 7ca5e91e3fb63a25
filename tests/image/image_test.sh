#!/usr/bin/env bash
# `make image-test`: builds the project's Dockerfile (CPU variant) without a
# Docker engine and runs the image. A Debian 12 base is made with debootstrap
# (cached in build-image/), imported as debian:12 and debian:12-slim, the
# Dockerfile is built with `podman build --isolation chroot`, then moegraphd is
# started inside the built image as its non-root user with `buildah run`
# (`podman run` needs setrlimit, which this kind of machine does not permit)
# and checked: health, a Generate through the image's own `moegraph` tool, and
# /metrics counting that request. Needs root (podman's rootful storage).
#
# Caches: build-image/debian12-rootfs.tar (delete it to refresh the base),
# build-image/apt-archives (the .debs the image build downloads, bind-mounted
# into its RUN steps), and podman's layer cache (source changes rebuild only
# the `COPY . .` layer onwards).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
cache=$root/build-image
mirror=${MOEGRAPH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
image=localhost/moegraph:cpu-test
t0=$(date +%s)
phase() { echo "image-test: [$(($(date +%s) - t0)) s] $*"; }

[ "$(id -u)" -eq 0 ] || { echo "image-test: needs root (debootstrap, podman's rootful storage)"; exit 1; }
scripts/install-deps.sh podman buildah debootstrap
mkdir -p "$cache/apt-archives"

# --- the base image ----------------------------------------------------------
tarball=$cache/debian12-rootfs.tar
if [ ! -s "$tarball" ]; then
  phase "debootstrap bookworm from $mirror"
  rm -rf "$cache/rootfs"
  debootstrap --variant=minbase --cache-dir="$cache/apt-archives" bookworm "$cache/rootfs" \
    "$mirror" > "$cache/debootstrap.log" 2>&1 || { tail -20 "$cache/debootstrap.log"; exit 1; }
  # The sources of Debian's own debian:12 image (updates and security too).
  rm -f "$cache/rootfs/etc/apt/sources.list"
  cat > "$cache/rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$cache/rootfs/var/lib/apt/lists/"*
  tar -C "$cache/rootfs" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$cache/rootfs"
fi
stamp=$cache/imported.stamp
if [ ! -f "$stamp" ] || [ "$tarball" -nt "$stamp" ] || ! podman image exists localhost/debian:12; then
  phase "importing the base as debian:12 and debian:12-slim"
  podman import --quiet "$tarball" localhost/debian:12 > /dev/null
  # One base for both stages: the runtime stage's debian:12-slim is the same
  # minbase system here (Docker Hub's slim drops docs and locales).
  podman tag localhost/debian:12 localhost/debian:12-slim
  touch "$stamp"
fi

# --- the image ---------------------------------------------------------------
phase "podman build (MOEGRAPH_CUDA=OFF)"
build() {
  # Docker's format: OCI images have no HEALTHCHECK (podman drops it).
  podman build --isolation chroot --pull=never --layers --format docker \
    --build-arg MOEGRAPH_CUDA=OFF \
    --label moegraph.image-test=1 --volume "$cache/apt-archives:/var/cache/apt/archives" -f Dockerfile "$@" . \
    >> "$cache/build.log" 2>&1 || { tail -40 "$cache/build.log"; exit 1; }
}
: > "$cache/build.log"
# The build stage gets a tag of its own, so that pruning what earlier runs
# left untagged (this test's images only, by label) keeps its layers, the
# next run's cache.
build --target build -t "$image-build"
build -t "$image"
podman image prune -f --filter label=moegraph.image-test=1 > /dev/null
phase "built $image ($(podman image inspect --format '{{.Size}}' "$image") bytes)"

# What the image declares, so the run below is the image's own.
user=$(podman image inspect --format '{{.Config.User}}' "$image")
workdir=$(podman image inspect --format '{{.Config.WorkingDir}}' "$image")
entrypoint=$(podman image inspect --format '{{join .Config.Entrypoint " "}}' "$image")
config_arg=$(podman image inspect --format '{{index .Config.Cmd 0}}' "$image")
[ "$user" = moegraph ] || { echo "image-test: image user is '$user', not moegraph"; exit 1; }
[ "$entrypoint" = moegraphd ] || { echo "image-test: entrypoint '$entrypoint'"; exit 1; }

# --- run it ------------------------------------------------------------------
# buildah run shares the host's network: free loopback ports instead of the
# image's 0.0.0.0:50051/9464 (another daemon may hold those here).
read -r grpc_port metrics_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
ctr=$(buildah from --pull-never --quiet "$image")
log=$cache/daemon.log
daemon_pid=""
runner=""
find_daemon() {
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' 2> /dev/null < "$p/cmdline" \
      | grep -Eq "^(\S*/)?moegraphd .*--listen_address=127.0.0.1:$grpc_port "; then
      daemon_pid=${p#/proc/}
    fi
  done
}
cleanup() {
  [ -n "$daemon_pid" ] || { [ -n "$runner" ] && kill -0 "$runner" 2> /dev/null && find_daemon; }
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2> /dev/null || true
  buildah rm "$ctr" > /dev/null 2>&1 || true
}
trap cleanup EXIT
in_image() { buildah run --isolation chroot --user "$user" --workingdir "$workdir" "$ctr" -- "$@"; }

phase "starting $entrypoint as $user on 127.0.0.1:$grpc_port, metrics :$metrics_port"
in_image "$entrypoint" "$config_arg" --listen_address=127.0.0.1:$grpc_port \
  --metrics_address=127.0.0.1:$metrics_port > "$log" 2>&1 &
runner=$!
# The image's own HEALTHCHECK command, pointed at this run's port.
mapfile -t health_cmd < <(podman image inspect --format '{{json .HealthCheck.Test}}' "$image" \
  | python3 -c "import json, sys; t = json.load(sys.stdin); assert t[0] == 'CMD', t
print('\n'.join(a.replace('127.0.0.1:50051', '127.0.0.1:$grpc_port') for a in t[1:]))")
[ "${health_cmd[0]:-}" = moegraph ] || { echo "image-test: HEALTHCHECK is '${health_cmd[*]}'"; exit 1; }
for _ in $(seq 1 120); do
  in_image "${health_cmd[@]}" > "$cache/health.txt" 2>&1 && break
  kill -0 "$runner" 2> /dev/null || { echo "image-test: moegraphd exited"; cat "$log"; exit 1; }
  sleep 1
done
cat "$cache/health.txt"
grep -qx "liveness: SERVING" "$cache/health.txt" \
  && grep -qx "readiness moegraph.v1.Generation: SERVING" "$cache/health.txt" \
  || { echo "image-test: not healthy"; cat "$log"; exit 1; }

# The daemon inside the chroot (not buildah's processes above it): its pid by
# its unique listen address, and its uid.
find_daemon
[ -n "$daemon_pid" ] || { echo "image-test: no moegraphd process"; exit 1; }
uid=$(awk '/^Uid:/ {print $2}' /proc/$daemon_pid/status)
[ "$uid" = 10001 ] || { echo "image-test: moegraphd runs as uid $uid, not 10001"; exit 1; }
phase "moegraphd is pid $daemon_pid, uid $uid"

in_image moegraph generate "Hello world" --max-tokens 5 --temperature 0 --ignore-eos \
  --server 127.0.0.1:$grpc_port > "$cache/generate.txt" 2> "$cache/generate.err"
cat "$cache/generate.err"
grep -q "length" "$cache/generate.err" || { echo "image-test: Generate did not finish by length"; exit 1; }

python3 - "$metrics_port" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read().decode()
samples = {}
for line in text.splitlines():
    if line and not line.startswith("#"):
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
want = {'moegraph_requests_total{finish_reason="length"}': 1.0,
        "moegraph_generated_tokens_total": 5.0,
        "moegraph_time_to_first_token_seconds_count": 1.0,
        "moegraph_inter_token_latency_seconds_count": 4.0}
bad = {k: samples.get(k) for k, v in want.items() if samples.get(k) != v}
if bad:
    sys.exit(f"image-test: /metrics has {bad}, want {want}")
print(f"image-test: /metrics: {len(samples)} samples, {want}")
EOF

phase "SIGTERM to moegraphd"
kill -TERM "$daemon_pid"
wait "$runner" || { echo "image-test: moegraphd exited $?"; cat "$log"; exit 1; }
daemon_pid=""
grep -q "moegraphd: bye" "$log" || { echo "image-test: no clean drain"; cat "$log"; exit 1; }
phase "PASS"

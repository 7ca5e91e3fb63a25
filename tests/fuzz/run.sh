#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/*_fuzz.cc) with clang-14 in
# BUILD_DIR/build-fuzz (engine + fuzzers only, ASan+UBSan) and runs each for a
# bounded time on seeds copied from the fixtures into a temp corpus. Prints one
# line per target on success; the build log or fuzzer output on failure.
#
#   tests/fuzz/run.sh SRC_DIR [BUILD_DIR]      (BUILD_DIR defaults to SRC_DIR/build)
#
# MOEGRAPH_FUZZ_SECONDS (default 20) is the time per target; MOEGRAPH_FUZZ_JOBS
# (default nproc) how many targets run at once, MOEGRAPH_BUILD_JOBS (default nproc)
# the build's parallelism. Exit 0: no findings; 1: a crash,
# leak or >5 s input (artifact kept in BUILD_DIR/build-fuzz/artifacts) or a build
# failure; 77: clang-14 missing (ctest: skipped).
set -uo pipefail

src=$(cd "${1:?usage: run.sh SRC_DIR [BUILD_DIR]}" && pwd) || exit 1
build_arg=${2:-$src/build}
mkdir -p "$build_arg" && build=$(cd "$build_arg" && pwd) || exit 1
fuzz_build=$build/build-fuzz
seconds=${MOEGRAPH_FUZZ_SECONDS:-20}
jobs=${MOEGRAPH_FUZZ_JOBS:-$(nproc)}
max_len=16384  # larger than any seed; real config.json/headers are a few KB

if ! command -v clang-14 >/dev/null 2>&1 || ! command -v clang++-14 >/dev/null 2>&1; then
  echo "fuzz: clang-14 not found, skipping"
  exit 77
fi

mkdir -p "$fuzz_build"
log=$fuzz_build/build.log
if [ ! -f "$fuzz_build/CMakeCache.txt" ]; then
  gen=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  if ! CC=clang-14 CXX=clang++-14 cmake -S "$src" -B "$fuzz_build" "${gen[@]}" \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOEGRAPH_CUDA=OFF -DMOEGRAPH_FUZZ=ON >"$log" 2>&1; then
    echo "fuzz: configuring $fuzz_build failed:"
    cat "$log"
    rm -f "$fuzz_build/CMakeCache.txt"  # configure afresh next time
    exit 1
  fi
fi
if ! cmake --build "$fuzz_build" --target moegraph_fuzzers -j "${MOEGRAPH_BUILD_JOBS:-$(nproc)}" >"$log" 2>&1; then
  echo "fuzz: building the fuzz targets failed (log: $log):"
  tail -n 100 "$log"
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/moegraph-fuzz.XXXXXX") || exit 1
pids=()
# On any exit: stop the target runners still going (and their fuzzers), then
# remove the corpora. INT/TERM/HUP exit through here too.
cleanup() {
  local p
  for p in "${pids[@]}"; do
    pkill -TERM -P "$p" 2>/dev/null
    kill -TERM "$p" 2>/dev/null
  done
  wait
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
artifacts=$fuzz_build/artifacts
mkdir -p "$artifacts"

# Copies seed files into a corpus dir, named after their source path.
add_seeds() {
  local corpus=$1 f
  shift
  for f in "$@"; do
    [ -f "$f" ] && cp "$f" "$corpus/$(printf '%s' "${f#"$src"/}" | tr '/' '_')"
  done
  return 0
}

# Runs one target; writes its summary to $work/NAME.summary and, when the run
# found nothing, creates $work/NAME.ok.
run_one() {
  local name=$1 bin=$fuzz_build/fuzz/$1 corpus=$work/corpus-$1 out=$work/$1.log
  mkdir -p "$corpus"
  case $name in
    model_config_fuzz)
      add_seeds "$corpus" "$src"/tests/fixtures/*/config.json "$src"/tests/fixtures/configs/*.json ;;
    tokenizer_json_fuzz)
      add_seeds "$corpus" "$src"/tests/fixtures/dsv4-tiny/tokenizer.json ;;
  esac
  add_seeds "$corpus" "$src/tests/fuzz/seeds/${name%_fuzz}"/*
  local args=(-max_total_time="$seconds" -timeout=5 -max_len="$max_len" -rss_limit_mb=2048
              -print_final_stats=1 -artifact_prefix="$artifacts/$name-")
  [ -f "$src/tests/fuzz/${name%_fuzz}.dict" ] && args+=(-dict="$src/tests/fuzz/${name%_fuzz}.dict")
  local seeds
  seeds=$(find "$corpus" -type f | wc -l)
  if ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
      "$bin" "${args[@]}" "$corpus" >"$out" 2>&1; then
    local execs secs cov
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n 1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$out" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$out" | tail -n 1)
    echo "fuzz: $name ok: ${execs:-?} execs in ${secs:-?} s, $seeds seeds, ${cov:-cov: ?}" >"$work/$name.summary"
    touch "$work/$name.ok"
    return 0
  fi
  {
    echo "fuzz: $name FAILED (artifacts under $artifacts):"
    grep -v '^#[0-9]' "$out" | tail -n 80
  } >"$work/$name.summary"
  return 1
}

# The targets are the sources (a stale binary of a removed source is not run).
mapfile -t targets < <(find "$src/tests/fuzz" -maxdepth 1 -type f -name '*_fuzz.cc' -printf '%f\n' |
                       sed 's/\.cc$//' | sort)
for t in "${targets[@]}"; do
  if [ ! -x "$fuzz_build/fuzz/$t" ]; then
    echo "fuzz: $t was not built in $fuzz_build/fuzz"
    exit 1
  fi
done

running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
  run_one "$t" &
  pids+=($!)
  running=$((running + 1))
done
wait
status=0
for t in "${targets[@]}"; do
  cat "$work/$t.summary" 2>/dev/null || echo "fuzz: $t produced no summary"
  [ -f "$work/$t.ok" ] || status=1
done
exit $status

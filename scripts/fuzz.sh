#!/usr/bin/env bash
# fuzz.sh: build the libFuzzer targets with clang and run each for a bounded time.
#
#   scripts/fuzz.sh [TARGET...]      TARGET: fuzz_request_parser fuzz_reply_parser fuzz_config fuzz_auth_gate
#                                    fuzz_binary_parser (default: all)
#
# Builds tests/fuzz/ in build-fuzz/ (clang, -fsanitize=fuzzer, ASan, UBSan, MR_CHECK),
# replays each target's seed corpus (tests/fuzz/corpus/TARGET/), then fuzzes it
# for FUZZ_SECONDS (-max_total_time). New inputs accumulate in
# build-fuzz/corpus/TARGET/, so a later run starts where this one stopped.
# Exits non-zero on any crash, leak, timeout or sanitizer report; the input
# that caused it is saved in build-fuzz/artifacts/ and the log's tail printed.
# Reproduce one with: build-fuzz/tests/fuzz/TARGET build-fuzz/artifacts/FILE
#
# Environment: FUZZ_SECONDS (per target; default 60), FUZZ_PARALLEL (targets
# run at once; default: the number of cores), FUZZ_ARGS (more libFuzzer flags),
# MEMRELAY_SKIP_DEPS=1 (do not install clang), MEMRELAY_JOBS (compile jobs).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

all_targets=(fuzz_request_parser fuzz_reply_parser fuzz_config fuzz_auth_gate fuzz_binary_parser)
targets=()
for arg in "$@"; do
    case "$arg" in
    -h | --help)
        sed -n '2,18s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    fuzz_request_parser | fuzz_reply_parser | fuzz_config | fuzz_auth_gate | fuzz_binary_parser) targets+=("$arg") ;;
    *)
        echo "fuzz.sh: unknown target '$arg' (expected: ${all_targets[*]})" >&2
        exit 2
        ;;
    esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")

seconds="${FUZZ_SECONDS:-60}"
cores="$(nproc 2>/dev/null || echo 2)"
parallel="${FUZZ_PARALLEL:-$cores}"
jobs="${MEMRELAY_JOBS:-$cores}"
build_dir="$root/build-fuzz"
read -r -a extra_args <<<"${FUZZ_ARGS:-}"

# clang and its runtime (libFuzzer lives in libclang-rt-N-dev on Debian 12).
scripts/setup-deps.sh build
if [[ "${MEMRELAY_SKIP_DEPS:-0}" != 1 ]] && command -v apt-get >/dev/null 2>&1; then
    installed() { [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]; }
    want=()
    installed clang || want+=(clang)
    if [[ ${#want[@]} -eq 0 ]]; then
        ver="$(clang -dumpversion | cut -d. -f1)"
        installed "libclang-rt-$ver-dev" || want+=("libclang-rt-$ver-dev")
    else
        want+=(libclang-rt-14-dev) # Debian 12's clang is 14
    fi
    if [[ ${#want[@]} -gt 0 ]]; then
        echo "fuzz.sh: installing ${want[*]}"
        sudo=()
        [[ $(id -u) -eq 0 ]] || sudo=(sudo)
        apt_opts=(-y -q -o DPkg::Lock::Timeout=300)
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update </dev/null
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get "${apt_opts[@]}" install --no-install-recommends "${want[@]}" </dev/null
    fi
fi
command -v clang >/dev/null 2>&1 || {
    echo "fuzz.sh: clang not found" >&2
    exit 1
}

# A build directory configured from another checkout: start afresh.
cache="$build_dir/CMakeCache.txt"
if [[ -f "$cache" ]]; then
    home="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache")"
    if [[ -n "$home" && "$home" != "$root" ]]; then
        rm -rf "$build_dir"
    fi
fi

echo "== fuzz: configure ($build_dir)"
CC=clang cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEMRELAY_FUZZ=ON -DMEMRELAY_CHECKS=ON \
    -DMEMRELAY_TESTS=OFF -DMEMRELAY_BENCH=OFF -DMEMRELAY_SANITIZE=OFF -DMEMRELAY_WERROR=OFF >/dev/null
echo "== fuzz: build"
cmake --build "$build_dir" --parallel "$jobs" --target "${targets[@]}"

mkdir -p "$build_dir/artifacts" "$build_dir/logs"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# Longest input per target: long enough to cross the parser's limits
# (memcached's 2 KiB peek and 16 KiB read buffer).
max_len() {
    case "$1" in
    fuzz_request_parser) echo 20000 ;;
    fuzz_reply_parser) echo 4096 ;;
    fuzz_binary_parser) echo 20000 ;;
    *) echo 8192 ;;
    esac
}

# Run one target; its log goes to build-fuzz/logs/TARGET.log.
run_target() {
    local t="$1" bin="$build_dir/tests/fuzz/$1" log="$build_dir/logs/$1.log"
    local seeds="$root/tests/fuzz/corpus/$t" work="$build_dir/corpus/$t"
    mkdir -p "$work"
    {
        # The seeds first, alone: a regression there fails fast and clearly.
        "$bin" -runs=0 "$seeds" &&
            "$bin" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
                -print_final_stats=1 -artifact_prefix="$build_dir/artifacts/$t-" "${extra_args[@]}" \
                "$work" "$seeds"
    } >"$log" 2>&1
}

echo "== fuzz: ${targets[*]} (${seconds} s each, ${parallel} at a time)"
declare -A pid_of=()
failed=()
passed=0
finish() {
    local t="$1" log="$build_dir/logs/$1.log" rc=0
    wait "${pid_of[$t]}" || rc=$?
    local execs
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    if [[ $rc -ne 0 ]] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
        failed+=("$t")
        echo "fuzz: $t FAILED (exit $rc); last lines of $log:"
        tail -n 60 "$log" | sed 's/^/    /'
        ls -1 "$build_dir/artifacts/$t-"* 2>/dev/null | sed 's/^/    artifact: /' || true
    else
        passed=$((passed + 1))
        echo "fuzz: $t ok: ${execs:-?} executions in ${seconds} s, corpus $(ls -1 "$build_dir/corpus/$t" | wc -l) inputs"
    fi
}

queue=("${targets[@]}")
running=()
while [[ ${#queue[@]} -gt 0 || ${#running[@]} -gt 0 ]]; do
    while [[ ${#queue[@]} -gt 0 && ${#running[@]} -lt $parallel ]]; do
        t="${queue[0]}"
        queue=("${queue[@]:1}")
        run_target "$t" &
        pid_of[$t]=$!
        running+=("$t")
    done
    # Wait for the oldest running target (they all run for the same time).
    finish "${running[0]}"
    running=("${running[@]:1}")
done

echo "fuzz: $passed passed, ${#failed[@]} failed"
[[ ${#failed[@]} -eq 0 ]]

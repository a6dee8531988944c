#!/usr/bin/env bash
# test.sh: install what is missing, build with -Werror, run every test.
#
#   scripts/test.sh [--sanitize] [CTEST_ARGS...]
#
# Builds in build/ (or build-asan/ with --sanitize or MEMRELAY_SANITIZE=1,
# which adds AddressSanitizer, UndefinedBehaviorSanitizer and the ownership
# checks, MEMRELAY_CHECKS), then runs
# `ctest --output-on-failure`: the criterion unit tests and the pytest
# integration suite. Extra arguments go to ctest, e.g. `-R unit` or `-V`.
# Exits non-zero if the build or any test fails.
#
# After the build, scripts/check_layers.py --strict checks src/'s calls and
# includes against the layer order (docs/architecture.md) and fails on any breach,
# and scripts/format.sh --check fails if a C file differs from .clang-format.
#
# Then the reliability stages (docs/reliability.md), each reported with its time:
#   builds        configure and build only, with -Werror: build-release/
#                 (CMAKE_BUILD_TYPE=Release, -O3) and build-hardened/ (Debian's
#                 dpkg-buildflags with hardening=+all, build type None as debhelper)
#   asan          build-asan/ (ASan+UBSan), the whole ctest suite again, leaks on
#   fuzz          scripts/fuzz.sh: every libFuzzer target for FUZZ_SECONDS (60)
#   soak          tests/soak/soak.py on build/memrelay (SOAK_SECONDS, 120) and on
#                 build-asan/memrelay (SOAK_ASAN_SECONDS, 60)
#   bad_backends  tests/soak/bad_backends.py on both binaries
# MEMRELAY_QUICK=1 skips them (so do CTEST_ARGS), except when CI=true.
#
# Environment: MEMRELAY_SANITIZE=1, MEMRELAY_BUILD_DIR (override the build
# directory), MEMRELAY_JOBS (compile jobs; default: all cores),
# CTEST_PARALLEL_LEVEL (tests run one at a time unless set), MEMRELAY_SKIP_DEPS=1,
# MEMRELAY_QUICK=1, FUZZ_SECONDS, SOAK_SECONDS, SOAK_ASAN_SECONDS.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

sanitize="${MEMRELAY_SANITIZE:-0}"
ctest_args=()
for arg in "$@"; do
    case "$arg" in
    --sanitize) sanitize=1 ;;
    -h | --help)
        sed -n '2,30s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *) ctest_args+=("$arg") ;;
    esac
done

scripts/setup-deps.sh build test

cmake_args=(-DMEMRELAY_WERROR=ON -DMEMRELAY_TESTS=ON)
if [[ "$sanitize" == 1 ]]; then
    build_dir="${MEMRELAY_BUILD_DIR:-build-asan}"
    cmake_args+=(-DMEMRELAY_SANITIZE=ON -DMEMRELAY_CHECKS=ON)
    # Stop at the first UB report, with a stack; leave any user settings alone.
    export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
else
    build_dir="${MEMRELAY_BUILD_DIR:-build}"
    # build/ is also the benchmark binary (bench/run.py): no ownership checks.
    cmake_args+=(-DMEMRELAY_SANITIZE=OFF -DMEMRELAY_CHECKS=OFF)
fi

# A build directory configured from another checkout (copied tree, container
# mount) makes cmake refuse to run; start it afresh instead.
cache="$build_dir/CMakeCache.txt"
if [[ -f "$cache" ]]; then
    home="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache")"
    if [[ -n "$home" && "$home" != "$root" ]]; then
        echo "test.sh: $build_dir was configured for $home; reconfiguring from scratch"
        rm -rf "$build_dir"
    fi
fi

jobs="${MEMRELAY_JOBS:-$(nproc 2>/dev/null || echo 2)}"

echo "== configure ($build_dir)"
cmake -S . -B "$build_dir" "${cmake_args[@]}"
echo "== build"
cmake --build "$build_dir" --parallel "$jobs"
echo "== layers"
# Who calls whom in src/ against the layer order (docs/architecture.md): any
# upward call or include, any cycle across layers or of more than 3 files
# inside one fails the run.
/usr/bin/python3 scripts/check_layers.py "$build_dir" --strict
echo "== format"
scripts/format.sh --check
echo "== test"
# --timeout applies to tests without their own TIMEOUT (the unit tests), so a
# hung test fails instead of stalling CI; --no-tests=error catches an empty run.
(cd "$build_dir" && ctest --output-on-failure --timeout 600 --no-tests=error "${ctest_args[@]}")
echo "test.sh: all tests passed ($build_dir)"

# ---- reliability stages ----
if [[ "${CI:-}" != true ]]; then
    if [[ "${MEMRELAY_QUICK:-0}" == 1 ]]; then
        echo "test.sh: MEMRELAY_QUICK=1: skipping the asan, fuzz, soak and bad_backends stages"
        exit 0
    fi
    if [[ ${#ctest_args[@]} -gt 0 ]]; then
        echo "test.sh: ctest arguments given: skipping the asan, fuzz, soak and bad_backends stages"
        exit 0
    fi
fi

started=$SECONDS
stage_names=()
stage_results=()
# stage NAME COMMAND...: run it, record pass/fail and its time, go on either way.
stage() {
    local name="$1" t0=$SECONDS rc=0
    shift
    echo "== $name"
    "$@" || rc=$?
    stage_names+=("$name")
    if [[ $rc -eq 0 ]]; then
        stage_results+=("ok      $(printf '%4d' $((SECONDS - t0))) s  $name")
    else
        stage_results+=("FAILED  $(printf '%4d' $((SECONDS - t0))) s  $name (exit $rc)")
    fi
    return 0
}

# forget_foreign DIR: remove DIR if it was configured from another checkout.
forget_foreign() {
    local cache="$1/CMakeCache.txt" home
    if [[ -f "$cache" ]]; then
        home="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache")"
        [[ -z "$home" || "$home" == "$root" ]] || rm -rf "$1"
    fi
}

# The builds stage: other compiler flags find other warnings (-O3 inlines more, so
# -Wmaybe-uninitialized sees further; _FORTIFY_SOURCE checks buffer sizes), and a
# warning anywhere is a build failure for whoever packages memrelay with -Werror.
# Configure and build only (tests and bench included, so they compile too).
build_variant() {
    local dir="$1"
    shift
    forget_foreign "$dir"
    echo "-- $dir: $*"
    cmake -S . -B "$dir" -DMEMRELAY_WERROR=ON -DMEMRELAY_TESTS=ON -DMEMRELAY_SANITIZE=OFF "$@" >/dev/null &&
        cmake --build "$dir" --parallel "$jobs" >/dev/null
}
build_matrix() {
    local rc=0 cflags cppflags ldflags
    build_variant build-release -DCMAKE_BUILD_TYPE=Release || rc=1
    if ! command -v dpkg-buildflags >/dev/null 2>&1; then
        echo "build-hardened: dpkg-buildflags not found (Debian's dpkg-dev)" >&2
        return 1
    fi
    # CMake reads CFLAGS and LDFLAGS from the environment but never CPPFLAGS, so
    # pass all three explicitly (also keeps a reused build directory current).
    cflags="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CFLAGS)"
    cppflags="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CPPFLAGS)"
    ldflags="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get LDFLAGS)"
    build_variant build-hardened -DCMAKE_BUILD_TYPE=None "-DCMAKE_C_FLAGS=$cflags $cppflags" \
        "-DCMAKE_EXE_LINKER_FLAGS=$ldflags" "-DCMAKE_SHARED_LINKER_FLAGS=$ldflags" || rc=1
    return $rc
}

asan_dir=build-asan
asan_build() {
    if [[ "$sanitize" == 1 && "$build_dir" == "$asan_dir" ]]; then
        echo "(the main run above was already the sanitizer build)"
        return 0
    fi
    forget_foreign "$asan_dir"
    cmake -S . -B "$asan_dir" -DMEMRELAY_WERROR=ON -DMEMRELAY_TESTS=ON -DMEMRELAY_SANITIZE=ON -DMEMRELAY_CHECKS=ON &&
        cmake --build "$asan_dir" --parallel "$jobs" &&
        (cd "$asan_dir" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            ctest --output-on-failure --timeout 600 --no-tests=error)
}
plain_bin="$build_dir/memrelay"
[[ "$sanitize" == 1 ]] && plain_bin=""
asan_bin="$asan_dir/memrelay"

stage "builds: -Werror with Release and with Debian's hardening flags (build only)" build_matrix
stage "asan: build and ctest in $asan_dir with ASan+UBSan" asan_build
stage "fuzz: scripts/fuzz.sh, ${FUZZ_SECONDS:-60} s per target" scripts/fuzz.sh
if [[ -n "$plain_bin" ]]; then
    stage "soak: $plain_bin, ${SOAK_SECONDS:-120} s" /usr/bin/python3 tests/soak/soak.py --memrelay "$plain_bin"
    stage "bad_backends: $plain_bin" /usr/bin/python3 tests/soak/bad_backends.py --memrelay "$plain_bin"
fi
if [[ -x "$asan_bin" ]]; then
    stage "soak: $asan_bin, ${SOAK_ASAN_SECONDS:-60} s" /usr/bin/python3 tests/soak/soak.py --memrelay "$asan_bin" \
        --seconds "${SOAK_ASAN_SECONDS:-60}"
    stage "bad_backends: $asan_bin" /usr/bin/python3 tests/soak/bad_backends.py --memrelay "$asan_bin"
fi

echo "== reliability stages ($((SECONDS - started)) s in all)"
failed=0
for r in "${stage_results[@]}"; do
    echo "  $r"
    [[ "$r" == FAILED* ]] && failed=$((failed + 1))
done
echo "stages: $((${#stage_results[@]} - failed)) passed, $failed failed"
[[ $failed -eq 0 ]]

#!/usr/bin/env bash
# test.sh: install what is missing, build with -Werror, run every test.
#
#   scripts/test.sh [--sanitize] [CTEST_ARGS...]
#
# Builds in build/ (or build-asan/ with --sanitize or MEMRELAY_SANITIZE=1,
# which adds AddressSanitizer and UndefinedBehaviorSanitizer), then runs
# `ctest --output-on-failure`: the criterion unit tests and the pytest
# integration suite. Extra arguments go to ctest, e.g. `-R unit` or `-V`.
# Exits non-zero if the build or any test fails.
#
# Environment: MEMRELAY_SANITIZE=1, MEMRELAY_BUILD_DIR (override the build
# directory), MEMRELAY_JOBS (compile jobs; default: all cores),
# CTEST_PARALLEL_LEVEL (tests run one at a time unless set), MEMRELAY_SKIP_DEPS=1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

sanitize="${MEMRELAY_SANITIZE:-0}"
ctest_args=()
for arg in "$@"; do
    case "$arg" in
    --sanitize) sanitize=1 ;;
    -h | --help)
        sed -n '2,15s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *) ctest_args+=("$arg") ;;
    esac
done

scripts/setup-deps.sh build test

cmake_args=(-DMEMRELAY_WERROR=ON -DMEMRELAY_TESTS=ON)
if [[ "$sanitize" == 1 ]]; then
    build_dir="${MEMRELAY_BUILD_DIR:-build-asan}"
    cmake_args+=(-DMEMRELAY_SANITIZE=ON)
    # Stop at the first UB report, with a stack; leave any user settings alone.
    export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
else
    build_dir="${MEMRELAY_BUILD_DIR:-build}"
    cmake_args+=(-DMEMRELAY_SANITIZE=OFF)
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
echo "== test"
# --timeout applies to tests without their own TIMEOUT (the unit tests), so a
# hung test fails instead of stalling CI; --no-tests=error catches an empty run.
(cd "$build_dir" && ctest --output-on-failure --timeout 600 --no-tests=error "${ctest_args[@]}")
echo "test.sh: all tests passed ($build_dir)"

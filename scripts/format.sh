#!/usr/bin/env bash
# format.sh: the C sources in the repository's .clang-format style.
#
#   scripts/format.sh           reformat in place
#   scripts/format.sh --check   list the files that differ; exit 1 if any do (test.sh's format stage, CI)
#
# The files: src/, include/memrelay/, tests/unit/ (with support/), tests/fuzz/
# and bench/ C sources and headers that git tracks. clang-format 14 (Debian 12's
# clang-format package) is the reference: another version may wrap a few lines
# differently, so CI and developers use the Debian one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mapfile -t files < <(git ls-files 'src/*.c' 'src/*.h' 'include/memrelay/*.h' 'tests/unit/*.c' \
    'tests/unit/support/*.c' 'tests/unit/support/*.h' 'tests/fuzz/*.c' 'bench/*.c' 'bench/*.h')
if ! command -v clang-format >/dev/null 2>&1; then
    echo "format.sh: clang-format is missing (scripts/setup-deps.sh test installs it)" >&2
    exit 2
fi
if [[ "${1:-}" == --check ]]; then
    bad=()
    for f in "${files[@]}"; do
        if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
            bad+=("$f")
        fi
    done
    if [[ ${#bad[@]} -gt 0 ]]; then
        echo "format.sh: ${#bad[@]} of ${#files[@]} files differ from .clang-format (run scripts/format.sh):"
        printf '  %s\n' "${bad[@]}"
        exit 1
    fi
    echo "format.sh: ${#files[@]} files match .clang-format"
    exit 0
fi
clang-format -i "${files[@]}"
echo "format.sh: formatted ${#files[@]} files"

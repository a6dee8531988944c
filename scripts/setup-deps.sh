#!/usr/bin/env bash
# setup-deps.sh: install the Debian packages memrelay needs, and nothing else.
#
#   scripts/setup-deps.sh [GROUP...]     GROUP: build run test bench all (default: build test)
#
#   build  compiler, cmake, libev, libyaml, libmicrohttpd, OpenSSL and c-ares headers
#   run    a local memcached for scripts/run-local.sh, libmicrohttpd (admin HTTP listener)
#   test   criterion, clang-format (scripts/format.sh --check), libmemcached, memcached tools, pytest, pymemcache, PyYAML, prometheus-client, pylibmc, openssl CLI, dpkg-dev (dpkg-buildflags, for the
#          hardened build in test.sh), nc (netcat-openbsd: half-close tests),
#          dnsmasq (dnsmasq-base: a real DNS server for the DNS tests);
#          the other ecosystems' clients (tests/integration/test_clients_ecosystem.py): Go and gomemcache,
#          PHP and its memcached extension, Perl's Cache::Memcached::Fast, Node.js and npm (the tests
#          install npm's memcached and memjs packages themselves, under build/), sasl2-bin
#          (saslpasswd2: test_binary.py compares SASL with memcached -S)
#   bench  nutcracker (twemproxy), to compare against; linux-perf and strace (bench/run.py
#          --syscalls counts with perf's syscall tracepoints, with strace where perf cannot)
#
# Idempotent: packages already installed are left alone, and `apt-get update`
# runs only when something is missing. Needs root (or sudo) only then.
# MEMRELAY_SKIP_DEPS=1 skips everything (for machines set up by other means).
#
# Installing Debian's memcached or nutcracker also starts their system
# services (ports 11211 and 22121). Nothing in memrelay's scripts or tests
# uses those services or those ports; they are harmless and left alone.
set -euo pipefail

declare -A GROUP_PACKAGES=(
    [build]="cmake gcc libc6-dev make pkg-config libev-dev libyaml-dev libmicrohttpd-dev libssl-dev libc-ares-dev"
    [run]="memcached libmicrohttpd12 libssl3 libc-ares2"
    [test]="libcriterion-dev clang-format memcached libmemcached-dev libmemcached-tools python3 python3-pytest python3-pymemcache python3-yaml python3-prometheus-client python3-pylibmc openssl dpkg-dev netcat-openbsd dnsmasq-base golang-go golang-github-bradfitz-gomemcache-dev php-cli php-memcached libcache-memcached-fast-perl nodejs npm sasl2-bin"
    [bench]="nutcracker linux-perf strace"
)

# A package that counts as present when its command is on PATH, whatever dpkg says: NodeSource's
# nodejs bundles npm and conflicts with Debian's npm package, so asking apt for npm there would
# replace that Node.js with Debian's.
declare -A PROVIDED_BY_COMMAND=(
    [npm]=npm
)

usage() {
    sed -n '2,21s/^# \{0,1\}//p' "$0"
}

groups=("$@")
if [[ ${#groups[@]} -eq 0 ]]; then
    groups=(build test)
fi

wanted=()
for group in "${groups[@]}"; do
    case "$group" in
    -h | --help)
        usage
        exit 0
        ;;
    all)
        for g in build run test bench; do
            read -r -a pkgs <<<"${GROUP_PACKAGES[$g]}"
            wanted+=("${pkgs[@]}")
        done
        ;;
    build | run | test | bench)
        read -r -a pkgs <<<"${GROUP_PACKAGES[$group]}"
        wanted+=("${pkgs[@]}")
        ;;
    *)
        echo "setup-deps: unknown group '$group' (expected build, run, test, bench or all)" >&2
        exit 2
        ;;
    esac
done

if [[ "${MEMRELAY_SKIP_DEPS:-0}" == 1 ]]; then
    echo "setup-deps: MEMRELAY_SKIP_DEPS=1, not checking: ${wanted[*]}"
    exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-deps: not a Debian-like system; make sure these (or their equivalents) are installed:" >&2
    echo "  ${wanted[*]}" >&2
    exit 0
fi

# `dpkg -s` also succeeds for removed packages whose config files remain,
# so ask for the exact installed state.
is_installed() {
    local cmd="${PROVIDED_BY_COMMAND[$1]:-}"
    if [[ -n "$cmd" ]] && command -v "$cmd" >/dev/null 2>&1; then
        return 0
    fi
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

missing=()
declare -A seen=()
for pkg in "${wanted[@]}"; do
    [[ -n "${seen[$pkg]:-}" ]] && continue
    seen[$pkg]=1
    is_installed "$pkg" || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "setup-deps: all present (${groups[*]})"
    exit 0
fi

echo "setup-deps: installing ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "setup-deps: need root to install: ${missing[*]}" >&2
        echo "  run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -q -o DPkg::Lock::Timeout=300)
# No stdin: CI runs us without a terminal, and nothing here should prompt.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update </dev/null
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" </dev/null

still_missing=()
for pkg in "${missing[@]}"; do
    is_installed "$pkg" || still_missing+=("$pkg")
done
if [[ ${#still_missing[@]} -gt 0 ]]; then
    echo "setup-deps: still missing after install: ${still_missing[*]}" >&2
    exit 1
fi
echo "setup-deps: done"

#!/usr/bin/env bash
# run-local.sh: build memrelay, start a local memcached pool, run memrelay in front of it.
#
#   scripts/run-local.sh [MEMRELAY_ARGS...]        e.g. scripts/run-local.sh -v -t 2
#
# Starts one memcached per 127.0.0.1/localhost server in the config
# (conf/memrelay.yaml: ports 21211-21213), then memrelay with that config,
# and prints where to connect. memrelay logs to this terminal; memcached logs
# go to build/run-local/. Ctrl-C (or SIGTERM) stops everything this script
# started, by process id. If memrelay or a memcached exits on its own, the
# rest is stopped too and the script exits non-zero.
#
# Environment: MEMRELAY_CONF (default conf/memrelay.yaml), MEMRELAY_BIN (use
# this binary instead of building build/memrelay), MEMCACHED_MEMORY (MiB per
# memcached, default 64), MEMRELAY_SKIP_DEPS=1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

for arg in "$@"; do
    if [[ "$arg" == -h || "$arg" == --help ]]; then
        sed -n '2,16s/^# \{0,1\}//p' "$0"
        exit 0
    fi
done

conf="${MEMRELAY_CONF:-conf/memrelay.yaml}"
run_dir="$root/build/run-local"
say() { echo "run-local: $*"; }
die() {
    echo "run-local: $*" >&2
    exit 1
}

[[ -f "$conf" ]] || die "no config file at $conf"

# --- what to start, read from the config ------------------------------------
# Server lines look like `- 127.0.0.1:21211:1 [name]` (maybe quoted); the
# local ones are ours to start. Listen lines are where memrelay will answer.
mapfile -t mc_ports < <(sed -nE \
    's/^[[:space:]]*-[[:space:]]*["'"'"']?(127\.0\.0\.1|localhost):([0-9]+):.*/\2/p' "$conf" | sort -nu)
mapfile -t listens < <(sed -nE \
    's/^[[:space:]]*listen:[[:space:]]*["'"'"']?([^"'"'"' #]+).*/\1/p' "$conf")
[[ ${#mc_ports[@]} -gt 0 ]] || die "$conf names no 127.0.0.1/localhost servers to start"
[[ ${#listens[@]} -gt 0 ]] || die "$conf has no listen address"

# True if something accepts TCP connections on host:port.
tcp_open() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# host:port or unix path -> is memrelay answering there?
listen_ready() {
    local addr="$1"
    if [[ "$addr" == /* ]]; then
        [[ -S "${addr%%:*}" ]]
    else
        local host="${addr%:*}" port="${addr##*:}"
        host="${host#[}"
        host="${host%]}"
        [[ "$host" == 0.0.0.0 ]] && host=127.0.0.1
        [[ "$host" == :: ]] && host=::1
        tcp_open "$host" "$port"
    fi
}

# Refuse to start on top of someone else's server: it would mix our pool
# with theirs (or a leftover from a run that was killed with SIGKILL).
busy=()
for port in "${mc_ports[@]}"; do
    tcp_open 127.0.0.1 "$port" && busy+=("127.0.0.1:$port")
done
for addr in "${listens[@]}"; do
    listen_ready "$addr" && busy+=("$addr")
done
if [[ ${#busy[@]} -gt 0 ]]; then
    echo "run-local: already in use: ${busy[*]}" >&2
    if command -v ss >/dev/null 2>&1; then
        ss -ltnp 2>/dev/null | grep -E "$(printf ':%s |' "${busy[@]##*:}" | sed 's/|$//')" >&2 || true
    fi
    die "stop whatever holds those ports (or point MEMRELAY_CONF at other ports) and retry"
fi

# --- dependencies and build ----------------------------------------------------
scripts/setup-deps.sh build run
if [[ -n "${MEMRELAY_BIN:-}" ]]; then
    bin="$MEMRELAY_BIN"
else
    cache="build/CMakeCache.txt"
    if [[ -f "$cache" ]] && ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$root" "$cache"; then
        say "build/ was configured from another checkout; reconfiguring"
        rm -rf build
    fi
    # Keep whatever options build/ already has (test.sh turns tests on); a
    # first configure leaves tests off, as they need more packages than running does.
    configure=(cmake -S . -B build)
    [[ -f "$cache" ]] || configure+=(-DMEMRELAY_TESTS=OFF)
    if ! out="$("${configure[@]}" 2>&1)"; then
        echo "$out" >&2
        die "cmake configure failed (output above)"
    fi
    cmake --build build --target memrelay --parallel "$(nproc 2>/dev/null || echo 2)"
    bin="build/memrelay"
fi
[[ -x "$bin" ]] || die "no executable at $bin"
mkdir -p "$run_dir"

# --- processes we own: stopped by pid on every way out ----------------------
pids=()
names=()
# shellcheck disable=SC2317  # reached through the traps below
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ ${#pids[@]} -gt 0 ]]; then
        say "stopping ${names[*]}"
        local pid i
        for pid in "${pids[@]}"; do
            kill -TERM "$pid" 2>/dev/null || true
        done
        for ((i = 0; i < 50; i++)); do
            local alive=0
            for pid in "${pids[@]}"; do
                kill -0 "$pid" 2>/dev/null && alive=1
            done
            [[ $alive == 0 ]] && break
            sleep 0.1
        done
        for pid in "${pids[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then
                say "pid $pid did not stop on SIGTERM; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            wait "$pid" 2>/dev/null || true
        done
        say "stopped"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# memcached refuses to run as root without -u.
mc_user=()
if [[ $(id -u) -eq 0 ]]; then
    if getent passwd memcache >/dev/null; then mc_user=(-u memcache); else mc_user=(-u nobody); fi
fi

for port in "${mc_ports[@]}"; do
    log="$run_dir/memcached-$port.log"
    memcached -l 127.0.0.1 -p "$port" -U 0 -m "${MEMCACHED_MEMORY:-64}" "${mc_user[@]}" \
        </dev/null >"$log" 2>&1 &
    pids+=($!)
    names+=("memcached:$port")
done

# Wait until every memcached accepts connections (or has died).
for i in "${!mc_ports[@]}"; do
    port="${mc_ports[$i]}" pid="${pids[$i]}"
    for ((t = 0; t < 50; t++)); do
        tcp_open 127.0.0.1 "$port" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! tcp_open 127.0.0.1 "$port"; then
        cat "$run_dir/memcached-$port.log" >&2 || true
        die "memcached on 127.0.0.1:$port did not start (log above: $run_dir/memcached-$port.log)"
    fi
    say "memcached 127.0.0.1:$port ready (pid $pid)"
done

say "starting $bin -c $conf $*"
"$bin" -c "$conf" "$@" </dev/null &
relay_pid=$!
pids+=("$relay_pid")
names+=(memrelay)

# Wait for memrelay to listen. If it exits first, say so and stop the pool.
ready=0
for ((t = 0; t < 100; t++)); do
    if ! kill -0 "$relay_pid" 2>/dev/null; then
        status=0
        wait "$relay_pid" || status=$?
        die "memrelay exited early with status $status before listening on ${listens[0]} (its output is above)"
    fi
    if listen_ready "${listens[0]}"; then
        ready=1
        break
    fi
    sleep 0.1
done

if [[ $ready == 1 ]]; then
    for addr in "${listens[@]}"; do
        say "connect to $addr"
    done
    first="${listens[0]}"
    if [[ "$first" != /* ]]; then
        say "  e.g. printf 'set hello 0 0 5\\r\\nworld\\r\\nget hello\\r\\n' | nc -q1 ${first%:*} ${first##*:}"
    fi
else
    say "memrelay (pid $relay_pid) is running but not listening on ${listens[0]} after 10 s; still waiting"
fi
say "Ctrl-C stops memrelay and the memcached servers"

# Run until a signal arrives or one of our processes exits on its own.
status=0
wait -n -p gone "${pids[@]}" || status=$?
for i in "${!pids[@]}"; do
    if [[ "${pids[$i]}" == "${gone:-}" ]]; then
        unset 'pids[i]' 'names[i]'
        pids=("${pids[@]}") names=("${names[@]}")
        [[ "$gone" == "$relay_pid" ]] && die "memrelay exited with status $status"
        die "a memcached (pid $gone) exited with status $status; see $run_dir/"
    fi
done
die "wait returned unexpectedly (status $status)"

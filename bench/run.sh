#!/usr/bin/env bash
# bench/run.sh: the body of `make bench`. Builds nothing (the Makefile target builds
# first); takes the build directory as $1 (default: build).
#
# Starts, under a temporary directory and on free ports: nats-server -js, auth-svc,
# chat-svc, notify-svc (when built), one gateway (more join later, on the same port
# with --reuse-port, for the socket-count scenarios) and the bare relay (tools/relay).
# Creates users and tokens with sbctl, then runs, in this order:
#   sb-sqlitebench            raw SQLite inserts (WAL, synchronous=FULL), 1/64/1024 per txn
#   sb-natsbench              raw NATS request/reply, as the services connect and with send-asap
#   sb-wakebench              one hand-off between two processes, on two CPUs and on one
#   chat-rate  x rates        open loop against the relay, the bus alone (sb-natsbench --rate:
#                             request/reply through nats-server, as "bus"), then Switchboard
#   chat-max                  closed loop: relay (1 and 2 load generator processes), Switchboard
#   chat-max + idle           Switchboard's chat-max again while idle sockets sit on its gateway
#   idle                      users x (chat + notification) sockets over the gateways
#   fanout                    one NATS broadcast to N notification sockets (needs notify-svc),
#                             on every gateway, then the largest N on two of them
# and writes bench/results/latest.json, latest.md (the table) and latency.png (gnuplot).
# Everything it starts is stopped by PID on exit, whatever happens.
#
# Environment:
#   SB_BENCH_QUICK=1        under a minute instead of ~5: fewer rates, shorter runs, fewer sockets
#   SB_BENCH_OUT=DIR        where results go (default bench/results)
#   SB_BENCH_GATEWAYS=N     gateway processes for idle/fanout (default 6: a process holds at
#                           most 20,000 files here; one gateway does chat)
#   SB_BENCH_RATES="a b"    offered chat rates, msg/s (default "1000 5000 10000 20000")
#   SB_BENCH_IDLE_USERS=N   idle users (2 sockets each; default 50000: 100,000 sockets)
#   SB_BENCH_FANOUT="a b"   fanout socket counts (default "2000 20000")
#   SB_BENCH_FANOUT_GATEWAYS=N  the largest fanout again on N of the gateways (default 2)
#   SB_BENCH_PAIRS=N        chat sender/receiver pairs (default 50)
#   SB_BENCH_SECONDS=N      seconds per chat run (default 10)
#   SB_BENCH_REPEAT=N       chat-max runs of the relay (1 process) and of Switchboard, in
#                           turn; the table quotes medians (default 3, quick 1); also the
#                           idle runs, and the chat-rate runs at SB_BENCH_REPEAT_RATES
#   SB_BENCH_REPEAT_RATES="a b"  offered rates run SB_BENCH_REPEAT times, relay and
#                           Switchboard in turn; the table quotes the run of median e2e p99
#                           (default "5000": the rate whose p99 has a target)
#   SB_BENCH_MIXED_USERS=N  idle users (2 sockets each) held during the mixed chat-max (default 5000)
#   SB_BENCH_GATEWAY_ARGS   extra gateway flags (default "--rate-limit 0": the per-socket
#                           abuse limit of 50 frames/s would refuse most of a benchmark)
#   SB_BENCH_SOAK=SECONDS   after the rest, a soak: chat-rate at SB_BENCH_SOAK_RATE (default
#                           2000/s) plus one broadcast a second for SECONDS, the RSS of every
#                           server sampled every 10 s (`make soak`: 600 s, nothing else)
#   SB_BENCH_ONLY=soak      skip every other scenario
#   SB_BENCH_ONLY=rates     only the chat-rate runs (relay, bus and Switchboard in turn), e.g.
#                           `make bench-steal`: 5,000/s twenty times, to read the p99
#                           against the hypervisor's steal (a table in the report)
#   SB_BENCH_PERF=1         perf record -g the gateway during Switchboard's chat-max
#   SB_BENCH_KEEP=1         keep the temporary directory (logs, raw results)
#   SB_BENCH_HALT_POLL_NS=N guest halt polling for the run: on a KVM guest with the
#                           cpuidle-haltpoll driver (as root), write N to
#                           /sys/module/haltpoll/parameters/guest_halt_poll_ns and restore
#                           the old value at the end. An idle virtual CPU then polls N ns
#                           before it halts, so a wake-up within that time does not wait for
#                           the host (docs/benchmarks.md, "What the machine costs").
#                           Unset: the machine's own setting, which the report states.
#   SB_BENCH_NATS_GOMAXPROCS=N  GOMAXPROCS of nats-server (default 1, as `make run`; empty:
#                           Go's default, one per core). Five processes and the load
#                           generator share two cores here; with two, Go's scheduler hands
#                           goroutines between its threads (docs/benchmarks.md)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-${SB_BUILD_DIR:-$ROOT/build}}" && pwd)"
OUT="${SB_BENCH_OUT:-$ROOT/bench/results}"
QUICK="${SB_BENCH_QUICK:-0}"
GATEWAYS="${SB_BENCH_GATEWAYS:-6}"
FANOUT_GATEWAYS="${SB_BENCH_FANOUT_GATEWAYS:-2}"
SOAK="${SB_BENCH_SOAK:-0}"
SOAK_RATE="${SB_BENCH_SOAK_RATE:-2000}"
ONLY="${SB_BENCH_ONLY:-}"
PAIRS="${SB_BENCH_PAIRS:-50}"
NATS_GOMAXPROCS="${SB_BENCH_NATS_GOMAXPROCS-1}"
read -r -a GATEWAY_ARGS <<<"${SB_BENCH_GATEWAY_ARGS---rate-limit 0}"
if [ "$QUICK" = 1 ]; then
  RATES="${SB_BENCH_RATES:-1000 5000}"
  SECONDS_PER_RUN="${SB_BENCH_SECONDS:-2}"
  IDLE_USERS="${SB_BENCH_IDLE_USERS:-500}"
  FANOUT="${SB_BENCH_FANOUT:-500}"
  MIXED_USERS="${SB_BENCH_MIXED_USERS:-250}"
  HOLD=1; RAW_SECONDS=1; FANOUT_ROUNDS=2; SETTLE_MS=500; REPEAT="${SB_BENCH_REPEAT:-1}"
else
  RATES="${SB_BENCH_RATES:-1000 5000 10000 20000}"
  SECONDS_PER_RUN="${SB_BENCH_SECONDS:-10}"
  IDLE_USERS="${SB_BENCH_IDLE_USERS:-50000}"
  FANOUT="${SB_BENCH_FANOUT:-2000 20000}"
  MIXED_USERS="${SB_BENCH_MIXED_USERS:-5000}"
  HOLD=10; RAW_SECONDS=3; FANOUT_ROUNDS=3; SETTLE_MS=2000; REPEAT="${SB_BENCH_REPEAT:-3}"
fi

LOADGEN="$BUILD/tools/sb-loadgen"
for b in gateway/gateway auth-svc/auth-svc chat-svc/chat-svc sbctl/sbctl tools/sb-loadgen \
         tools/sb-relay tools/sb-natsbench tools/sb-sqlitebench tools/sb-wakebench; do
  [ -x "$BUILD/$b" ] || { echo "bench: $BUILD/$b is not built (make build first)" >&2; exit 1; }
done
NATS_SERVER="$(command -v nats-server || echo /usr/sbin/nats-server)"
[ -x "$NATS_SERVER" ] || { echo "bench: nats-server not found" >&2; exit 1; }
BUILD_TYPE="$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)"
case "$BUILD_TYPE" in
  Release|RelWithDebInfo) ;;
  *) echo "bench: warning: $BUILD is a '${BUILD_TYPE:-no build type}' build (unoptimised);" \
          "figures will be low (make build uses RelWithDebInfo)" >&2 ;;
esac

# A gateway holds up to 20,000 files; so does each load generator worker.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Other work on the machine skews every figure: measure how busy it is before we start.
machine_busy() { # percent of one core used over 2 s, all processes
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  sleep 2
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  echo "$a $b" | awk -v n="$(nproc)" '{printf "%.0f", 100 * n * ($3 - $1) / ($4 - $2)}'
}
BUSY_BEFORE="$(machine_busy)"
echo "bench: machine busy before start: ${BUSY_BEFORE}% of one core" >&2
[ "$BUSY_BEFORE" -gt 25 ] && echo "bench: warning: the machine is busy with other work;" \
  "figures will be low and noisy (the tables show each run's machine CPU)" >&2

HALT_POLL_FILE=/sys/module/haltpoll/parameters/guest_halt_poll_ns
HALT_POLL_SAVED=""
if [ -n "${SB_BENCH_HALT_POLL_NS:-}" ]; then
  case "$SB_BENCH_HALT_POLL_NS" in
    *[!0-9]*) echo "bench: SB_BENCH_HALT_POLL_NS must be a number of nanoseconds" >&2; exit 2 ;;
  esac
  if [ ! -w "$HALT_POLL_FILE" ] ||
     [ "$(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null)" != haltpoll ]; then
    echo "bench: SB_BENCH_HALT_POLL_NS needs a writable $HALT_POLL_FILE and the" \
      "haltpoll cpuidle driver in use (a KVM guest with cpuidle-haltpoll, run as root)" >&2
    exit 2
  fi
fi

TMP="$(mktemp -d /tmp/sb-bench.XXXXXX)"
mkdir -p "$TMP/logs" "$TMP/res" "$OUT"
PIDS=()
NAMES=()

cleanup() {
  local rc=$?
  if [ -n "$HALT_POLL_SAVED" ]; then
    { echo "$HALT_POLL_SAVED" >"$HALT_POLL_FILE"; } 2>/dev/null ||
      echo "bench: could not restore $HALT_POLL_FILE to $HALT_POLL_SAVED" >&2
  fi
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
  done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    for _ in $(seq 50); do kill -0 "${PIDS[$i]}" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "${PIDS[$i]}" 2>/dev/null; then
      echo "bench: ${NAMES[$i]} (pid ${PIDS[$i]}) ignored SIGTERM; killing it" >&2
      kill -KILL "${PIDS[$i]}" 2>/dev/null || true
    fi
    wait "${PIDS[$i]}" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ] || [ "${SB_BENCH_KEEP:-0}" = 1 ]; then
    echo "bench: logs and raw results kept in $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${SB_BENCH_HALT_POLL_NS:-}" ]; then
  HALT_POLL_SAVED="$(cat "$HALT_POLL_FILE")"
  echo "$SB_BENCH_HALT_POLL_NS" >"$HALT_POLL_FILE"
  echo "bench: guest halt polling ${SB_BENCH_HALT_POLL_NS} ns for this run (was ${HALT_POLL_SAVED})" >&2
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start NAME ARGV...: run in the background, output to $TMP/logs/NAME.log
start() {
  local name="$1"; shift
  "$@" >"$TMP/logs/$name.log" 2>&1 &
  PIDS+=("$!")
  NAMES+=("$name")
  eval "PID_${name//-/_}=$!"
}

wait_ready() { # NAME PID: the service logs event=ready within 10 s
  for _ in $(seq 200); do
    grep -q 'event=ready' "$TMP/logs/$1.log" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "bench: $1 died:" >&2; tail -20 "$TMP/logs/$1.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "bench: $1 not ready after 10 s:" >&2; tail -20 "$TMP/logs/$1.log" >&2; exit 1
}

wait_readyz() { # PORT: the gateway answers GET /readyz with 200 (its bus is up)
  for _ in $(seq 200); do
    python3 -c "import sys,urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:$1/readyz', timeout=1).status != 200)" \
      2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: gateway on $1 not ready" >&2; exit 1
}

wait_tcp() { # PORT
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: nothing listening on $1" >&2; exit 1
}

cpu_ticks() { # PID...: summed utime+stime of the processes, in clock ticks
  local t=0 p f
  for p in "$@"; do
    f=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + f))
  done
  echo "$t"
}

# quiesce PID...: wait (at most 30 s) until the processes use less than 10 % of a core,
# so that one run's backlog does not land in the next run's figures. Returns 1 if they
# never went quiet.
quiesce() {
  local hz a b
  hz=$(getconf CLK_TCK)
  for _ in $(seq 30); do
    a=$(cpu_ticks "$@"); sleep 1; b=$(cpu_ticks "$@")
    [ $(( (b - a) * 10 )) -lt "$hz" ] && return 0
  done
  return 1
}

NATS_PORT="$(free_port)"
PORT="$(free_port)"
RELAY_PORT="$(free_port)"
NATS_URL="nats://127.0.0.1:$NATS_PORT"
mkdir -p "$TMP/nats" "$TMP/auth" "$TMP/chat" "$TMP/notify"

echo "bench: starting nats-server, services, gateway and relay under $TMP" >&2
NATS_ENV=()
[ -n "$NATS_GOMAXPROCS" ] && NATS_ENV=("GOMAXPROCS=$NATS_GOMAXPROCS")
start nats env "${NATS_ENV[@]}" "$NATS_SERVER" -js -sd "$TMP/nats" -a 127.0.0.1 -p "$NATS_PORT"
wait_tcp "$NATS_PORT"
start auth "$BUILD/auth-svc/auth-svc" --nats "$NATS_URL" --data-dir "$TMP/auth"
CHAT_HTTP="$(free_port)"
start chat "$BUILD/chat-svc/chat-svc" --nats "$NATS_URL" --data-dir "$TMP/chat" \
  --http-listen "127.0.0.1:$CHAT_HTTP"
HAVE_NOTIFY=0
if [ -x "$BUILD/notify-svc/notify-svc" ]; then
  HAVE_NOTIFY=1
  start notify "$BUILD/notify-svc/notify-svc" --nats "$NATS_URL" --data-dir "$TMP/notify"
fi
wait_ready auth "$PID_auth"
wait_ready chat "$PID_chat"
[ "$HAVE_NOTIFY" = 1 ] && wait_ready notify "$PID_notify"
GW_PIDS=()
TARGETS="127.0.0.1:$PORT"   # where the socket scenarios connect (comma list)
REUSE_PORT_WORKS=1
start_gateway() {
  local n=$(( ${#GW_PIDS[@]} + 1 )) pid
  start "gateway$n" "$BUILD/gateway/gateway" --nats "$NATS_URL" --listen "127.0.0.1:$PORT" \
    --reuse-port "${GATEWAY_ARGS[@]}"
  pid="${PIDS[${#PIDS[@]}-1]}"
  sleep 0.3
  if [ "$n" -gt 1 ] && ! kill -0 "$pid" 2>/dev/null && grep -q listen_failed "$TMP/logs/gateway$n.log"; then
    # --reuse-port did not let a second process bind: give it a port of its own and
    # let the load generator deal connections over the ports instead
    REUSE_PORT_WORKS=0
    local port
    port="$(free_port)"
    echo "bench: --reuse-port does not share the port; gateway$n listens on $port instead" >&2
    start "gateway$n" "$BUILD/gateway/gateway" --nats "$NATS_URL" --listen "127.0.0.1:$port" \
      "${GATEWAY_ARGS[@]}"
    pid="${PIDS[${#PIDS[@]}-1]}"
    TARGETS="$TARGETS,127.0.0.1:$port"
    wait_ready "gateway$n" "$pid"
    wait_readyz "$port"
  else
    wait_ready "gateway$n" "$pid"
    wait_readyz "$PORT"
  fi
  GW_PIDS+=("$pid")
}
start_gateway

# Users: chat pairs first, then the idle/fanout users.
if [ "$ONLY" = soak ] || [ "$ONLY" = rates ]; then
  IDLE_USERS=0; FANOUT=""; MIXED_USERS=0
fi
if [ "$ONLY" = soak ]; then
  [ "$SOAK" -gt 0 ] || SOAK=600
fi
MAX_FANOUT=0
for f in $FANOUT; do [ "$f" -gt "$MAX_FANOUT" ] && MAX_FANOUT=$f; done
SOCK_USERS=$IDLE_USERS
[ "$MAX_FANOUT" -gt "$SOCK_USERS" ] && SOCK_USERS=$MAX_FANOUT
[ "$MIXED_USERS" -gt "$SOCK_USERS" ] && SOCK_USERS=$MIXED_USERS
CHAT_USERS=$((2 * PAIRS))
NUSERS=$((CHAT_USERS + SOCK_USERS))
echo "bench: creating $NUSERS users and tokens" >&2
seq 1000001 $((1000000 + NUSERS)) | awk '{print $1, "Bench " $1}' >"$TMP/users.txt"
"$BUILD/sbctl/sbctl" --nats "$NATS_URL" --timeout-ms 30000 user add --stdin <"$TMP/users.txt"
cut -d' ' -f1 "$TMP/users.txt" >"$TMP/uids.txt"
"$BUILD/sbctl/sbctl" --nats "$NATS_URL" --timeout-ms 30000 token issue --stdin \
  <"$TMP/uids.txt" >"$TMP/toks.txt"
paste -d' ' "$TMP/uids.txt" "$TMP/toks.txt" >"$TMP/tokens.txt"
[ "$(wc -l <"$TMP/tokens.txt")" -eq "$NUSERS" ] || { echo "bench: token issue failed" >&2; exit 1; }
chmod 600 "$TMP/tokens.txt"

start relay "$BUILD/tools/sb-relay" --listen "127.0.0.1:$RELAY_PORT" --tokens "$TMP/tokens.txt"
wait_ready relay "$PID_relay"

SB_PIDS="nats=$PID_nats,auth-svc=$PID_auth,chat-svc=$PID_chat"
[ "$HAVE_NOTIFY" = 1 ] && SB_PIDS="$SB_PIDS,notify-svc=$PID_notify"
MANIFEST="$TMP/res/manifest.tsv"
: >"$MANIFEST"

# lg NAME KIND TARGET RATE ARGS...: one load generator run, recorded in the manifest.
lg() {
  local name="$1" kind="$2" target="$3" rate="$4"; shift 4
  echo "bench: $name (at ${SECONDS}s)" >&2
  if "$LOADGEN" "$@" --tokens "$TMP/tokens.txt" --max-seconds "${LG_MAX_SECONDS:-300}" \
       >"$TMP/res/$name.json" 2>"$TMP/logs/lg-$name.log"; then
    printf '%s\t%s\t%s\t%s\n' "$name" "$kind" "$target" "$rate" >>"$MANIFEST"
  else
    echo "bench: $name failed (see $TMP/logs/lg-$name.log):" >&2
    tail -5 "$TMP/logs/lg-$name.log" >&2
    [ -s "$TMP/res/$name.json" ] && printf '%s\t%s\t%s\t%s\n' "$name" "$kind" "$target" "$rate" >>"$MANIFEST"
  fi
  tail -1 "$TMP/logs/lg-$name.log" >&2 || true
}

# busrate NAME RATE: the bus alone at RATE requests/s (sb-natsbench --rate), recorded in
# the manifest as target "bus" of chat-rate: the report reads its request -> reply
# latency beside the relay's and Switchboard's e2e.
busrate() {
  local name="$1" rate="$2"
  echo "bench: $name (at ${SECONDS}s)" >&2
  if "$BUILD/tools/sb-natsbench" --nats "$NATS_URL" --rate "$rate" \
       --seconds "$SECONDS_PER_RUN" >"$TMP/res/$name.json" 2>>"$TMP/logs/natsbench.log"; then
    printf '%s\t%s\t%s\t%s\n' "$name" chat-rate bus "$rate" >>"$MANIFEST"
  else
    echo "bench: $name failed (see $TMP/logs/natsbench.log)" >&2
    tail -3 "$TMP/logs/natsbench.log" >&2
    # a run with requests unanswered still goes in the table, with its loss
    [ -s "$TMP/res/$name.json" ] && printf '%s\t%s\t%s\t%s\n' "$name" chat-rate bus "$rate" >>"$MANIFEST"
  fi
  return 0
}

if [ "$ONLY" != soak ]; then
CHAT=(--pairs "$PAIRS" --duration "$SECONDS_PER_RUN" --drain 5)

stop_pid() { # PID: SIGTERM, 15 s grace, SIGKILL
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 150); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# Between Switchboard runs: let the previous run's backlog drain (an overloaded run can
# leave work queued for a while); a gateway still busy after 30 s is replaced.
sb_quiet() {
  quiesce "${GW_PIDS[0]}" "$PID_chat" && return 0
  echo "bench: Switchboard still busy 30 s after the last run; restarting gateway1" >&2
  stop_pid "${GW_PIDS[0]}"
  GW_PIDS=()
  start_gateway
}

if [ "$ONLY" != rates ]; then
# --- raw stages
echo "bench: sqlitebench" >&2
"$BUILD/tools/sb-sqlitebench" --dir "$TMP" --seconds "$RAW_SECONDS" >"$TMP/res/sqlite.json" \
  2>>"$TMP/logs/sqlitebench.log"
echo "bench: natsbench" >&2
"$BUILD/tools/sb-natsbench" --nats "$NATS_URL" --seconds "$RAW_SECONDS" --sync-seconds 1 \
  --global-delivery >"$TMP/res/nats.json" 2>>"$TMP/logs/natsbench.log"
"$BUILD/tools/sb-natsbench" --nats "$NATS_URL" --seconds "$RAW_SECONDS" --sync-seconds 1 \
  --global-delivery --send-asap >"$TMP/res/nats-asap.json" 2>>"$TMP/logs/natsbench.log"
echo "bench: wakebench" >&2
"$BUILD/tools/sb-wakebench" --seconds "$RAW_SECONDS" >"$TMP/res/wake.json" \
  2>>"$TMP/logs/wakebench.log" || echo "bench: wakebench failed (see logs)" >&2

# --- chat-max: the most each sustains; the relay with 1 and 2 load generator processes
lg "max-relay" chat-max relay 0 chat-max --target "127.0.0.1:$RELAY_PORT" "${CHAT[@]}" \
  --window 16 --pids "relay=$PID_relay"
lg "max-relay-2procs" chat-max relay 0 chat-max --target "127.0.0.1:$RELAY_PORT" "${CHAT[@]}" \
  --window 16 --procs 2 --pids "relay=$PID_relay"
PERF_PID=""
if [ "${SB_BENCH_PERF:-0}" = 1 ] && command -v perf >/dev/null; then
  (sleep 2; exec perf record -F 999 -g -o "$TMP/perf-gateway.data" -p "${GW_PIDS[0]}" -- \
     sleep $((SECONDS_PER_RUN - 3))) >"$TMP/logs/perf.log" 2>&1 &
  PERF_PID=$!
fi
lg "max-sb" chat-max switchboard 0 chat-max --target "127.0.0.1:$PORT" "${CHAT[@]}" \
  --window 16 --gateway-pids "${GW_PIDS[0]}" --pids "$SB_PIDS"
if [ -n "$PERF_PID" ]; then
  wait "$PERF_PID" || true
  {
    echo "# perf record -F 999 -g -p <gateway> during Switchboard's chat-max; perf report --no-children"
    perf report -i "$TMP/perf-gateway.data" --stdio --no-children --sort dso -g none 2>/dev/null \
      | grep -v '^$'
    perf report -i "$TMP/perf-gateway.data" --stdio --no-children --sort dso,symbol -g none \
      2>/dev/null | grep -v '^$' | head -60
    perf report -i "$TMP/perf-gateway.data" --stdio --no-children --percent-limit 2 \
      2>/dev/null | grep -v '^$' | head -200
  } >"$OUT/perf-gateway.txt" || true
fi
# more runs, relay and Switchboard in turn: the tables quote the medians
for i in $(seq 2 "$REPEAT"); do
  sb_quiet
  lg "max-relay-r$i" chat-max relay 0 chat-max --target "127.0.0.1:$RELAY_PORT" "${CHAT[@]}" \
    --window 16 --pids "relay=$PID_relay"
  lg "max-sb-r$i" chat-max switchboard 0 chat-max --target "127.0.0.1:$PORT" "${CHAT[@]}" \
    --window 16 --gateway-pids "${GW_PIDS[0]}" --pids "$SB_PIDS"
done
sb_quiet

# --- the same chat-max while idle sockets sit on the same gateway (a gateway's cost per
# frame may grow with the sockets it holds)
echo "bench: mixed: holding $((2 * MIXED_USERS)) idle sockets on gateway1" >&2
"$LOADGEN" idle --target "127.0.0.1:$PORT" --tokens "$TMP/tokens.txt" --users "$MIXED_USERS" \
  --user-offset "$CHAT_USERS" --hold $((SECONDS_PER_RUN + 20)) --settle-ms 1000 \
  --max-seconds 300 --gateway-pids "${GW_PIDS[0]}" >"$TMP/res/mixed-idle.json" \
  2>"$TMP/logs/lg-mixed-idle.log" &
MIXED_PID=$!
PIDS+=("$MIXED_PID")
NAMES+=("mixed-idle")
for _ in $(seq 1200); do
  grep -q ' run\]' "$TMP/logs/lg-mixed-idle.log" 2>/dev/null && break
  kill -0 "$MIXED_PID" 2>/dev/null || break
  sleep 0.25
done
if grep -q ' run\]' "$TMP/logs/lg-mixed-idle.log" 2>/dev/null; then
  lg "max-sb-mixed" chat-max switchboard $((2 * MIXED_USERS)) chat-max --target "127.0.0.1:$PORT" \
    "${CHAT[@]}" --window 16 --gateway-pids "${GW_PIDS[0]}" --pids "$SB_PIDS"
else
  echo "bench: mixed: the idle sockets did not connect in time; skipped" >&2
fi
kill -TERM "$MIXED_PID" 2>/dev/null || true # it reports and exits early on SIGTERM
wait "$MIXED_PID" 2>/dev/null || true
sb_quiet
fi # not SB_BENCH_ONLY=rates

# --- chat-rate: the relay, the bus alone and Switchboard at each offered rate, side by side
for r in $RATES; do
  lg "rate-relay-$r" chat-rate relay "$r" chat-rate --target "127.0.0.1:$RELAY_PORT" \
    "${CHAT[@]}" --rate "$r" --pids "relay=$PID_relay"
  busrate "rate-bus-$r" "$r"
  # the services' own histograms around the run: which stage a message waits in
  METRICS=("http://127.0.0.1:$PORT/metrics" "http://127.0.0.1:$CHAT_HTTP/metrics")
  python3 "$ROOT/bench/stages.py" snap "$TMP/res/metrics-before" "${METRICS[@]}" || true
  lg "rate-sb-$r" chat-rate switchboard "$r" chat-rate --target "127.0.0.1:$PORT" \
    "${CHAT[@]}" --rate "$r" --gateway-pids "${GW_PIDS[0]}" --pids "$SB_PIDS"
  python3 "$ROOT/bench/stages.py" snap "$TMP/res/metrics-after" "${METRICS[@]}" || true
  python3 "$ROOT/bench/stages.py" delta "$TMP/res/metrics-before" "$TMP/res/metrics-after" \
    >"$TMP/res/stages-$r.json" || true
  sb_quiet
done
# more runs at the rates whose figures have targets: one run's p99 is a noisy figure here
for r in ${SB_BENCH_REPEAT_RATES-5000}; do
  case " $RATES " in *" $r "*) ;; *) continue ;; esac
  for i in $(seq 2 "$REPEAT"); do
    lg "rate-relay-$r-r$i" chat-rate relay "$r" chat-rate --target "127.0.0.1:$RELAY_PORT" \
      "${CHAT[@]}" --rate "$r" --pids "relay=$PID_relay"
    busrate "rate-bus-$r-r$i" "$r"
    lg "rate-sb-$r-r$i" chat-rate switchboard "$r" chat-rate --target "127.0.0.1:$PORT" \
      "${CHAT[@]}" --rate "$r" --gateway-pids "${GW_PIDS[0]}" --pids "$SB_PIDS"
    sb_quiet
  done
done

if [ "$ONLY" != rates ]; then
# --- sockets: fresh gateways (memory a gateway freed stays in its RSS), all on one port.
# REPEAT runs, each on fresh gateways and on source addresses of its own: the last run's
# sockets sit in TIME_WAIT on theirs for a minute. The report quotes the median.
IDLE_ADDRS=$(( (2 * IDLE_USERS + 7999) / 8000 ))
for k in $(seq "$REPEAT"); do
  for pid in "${GW_PIDS[@]}"; do stop_pid "$pid"; done
  GW_PIDS=()
  TARGETS="127.0.0.1:$PORT"
  while [ "${#GW_PIDS[@]}" -lt "$GATEWAYS" ]; do start_gateway; done
  ALL_GW="$(IFS=,; echo "${GW_PIDS[*]}")"
  SRC_FIRST=$(( 1 + (k - 1) * IDLE_ADDRS ))
  [ $(( SRC_FIRST + IDLE_ADDRS - 1 )) -le 254 ] || SRC_FIRST=1
  lg "idle-$k" idle switchboard 0 idle --target "$TARGETS" --users "$IDLE_USERS" \
    --user-offset "$CHAT_USERS" --hold "$HOLD" --settle-ms "$SETTLE_MS" --gateway-pids "$ALL_GW" \
    --pids "$SB_PIDS" --src-addrs "$IDLE_ADDRS" --src-first "$SRC_FIRST"
done
if [ "$HAVE_NOTIFY" = 1 ]; then
  for n in $FANOUT; do
    lg "fanout-$n" fanout switchboard "$n" fanout --target "$TARGETS" --users "$n" \
      --user-offset "$CHAT_USERS" --nats "$NATS_URL" --rounds "$FANOUT_ROUNDS" \
      --settle-ms "$SETTLE_MS" --gateway-pids "$ALL_GW" --pids "$SB_PIDS"
  done
  # The largest broadcast again on fewer gateways (default 2, one per core; 20,000
  # sockets need two processes here): six processes on two cores take turns.
  if [ -n "$FANOUT" ] && [ "$REUSE_PORT_WORKS" = 1 ] &&
     [ "$FANOUT_GATEWAYS" -lt "${#GW_PIDS[@]}" ]; then
    while [ "${#GW_PIDS[@]}" -gt "$FANOUT_GATEWAYS" ]; do
      stop_pid "${GW_PIDS[${#GW_PIDS[@]}-1]}"
      unset 'GW_PIDS[${#GW_PIDS[@]}-1]'
    done
    FEW_GW="$(IFS=,; echo "${GW_PIDS[*]}")"
    n="${FANOUT##* }"
    lg "fanout-$n-${FANOUT_GATEWAYS}gw" fanout switchboard "$n" fanout --target "$TARGETS" \
      --users "$n" --user-offset "$CHAT_USERS" --nats "$NATS_URL" --rounds "$FANOUT_ROUNDS" \
      --settle-ms "$SETTLE_MS" --gateway-pids "$FEW_GW" --pids "$SB_PIDS"
  fi
else
  echo "bench: notify-svc not built: no fanout" >&2
fi
fi # not SB_BENCH_ONLY=rates

fi # not SB_BENCH_ONLY=soak

# --- soak: steady chat traffic plus a broadcast a second; RSS of every server every 10 s
if [ "$SOAK" -gt 0 ]; then
  echo "bench: soak: ${SOAK} s of chat-rate at ${SOAK_RATE}/s plus a broadcast a second" >&2
  [ "${#GW_PIDS[@]}" -gt 0 ] && kill -0 "${GW_PIDS[0]}" 2>/dev/null || start_gateway
  SOAK_GW="${GW_PIDS[0]}"
  SOAK_TSV="$TMP/res/soak-rss.tsv"
  printf 't_s\tgateway\tchat-svc\tnotify-svc\tauth-svc\tnats\n' >"$SOAK_TSV"
  (
    rss() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
    t0=$(date +%s)
    while :; do
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' $(($(date +%s) - t0)) "$(rss "$SOAK_GW")" \
        "$(rss "$PID_chat")" "$(rss "${PID_notify:-0}")" "$(rss "$PID_auth")" \
        "$(rss "$PID_nats")" >>"$SOAK_TSV"
      [ "$HAVE_NOTIFY" = 1 ] && for _ in 1 2 3 4 5 6 7 8 9 10; do
        "$BUILD/sbctl/sbctl" --nats "$NATS_URL" notify --all --title soak \
          --message "soak broadcast" >/dev/null 2>&1 || true
        sleep 1
      done
      [ "$HAVE_NOTIFY" = 1 ] || sleep 10
    done
  ) &
  SAMPLER=$!
  PIDS+=("$SAMPLER")
  NAMES+=("soak-sampler")
  LG_MAX_SECONDS=$((SOAK + 120)) \
    lg "soak" soak switchboard "$SOAK_RATE" chat-rate --target "127.0.0.1:$PORT" \
    --pairs "$PAIRS" --duration "$SOAK" --drain 5 --rate "$SOAK_RATE" \
    --gateway-pids "$SOAK_GW" --pids "$SB_PIDS"
  kill "$SAMPLER" 2>/dev/null || true
  wait "$SAMPLER" 2>/dev/null || true
fi

# --- results
GIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
python3 "$ROOT/bench/report.py" --dir "$TMP/res" --out "$OUT" --git "$GIT" --quick "$QUICK" \
  --build-type "${BUILD_TYPE:-none}" --gateways "$GATEWAYS" --pairs "$PAIRS" \
  --reuse-port "$REUSE_PORT_WORKS" --busy-before "$BUSY_BEFORE" \
  --soak-rss "$TMP/res/soak-rss.tsv" --nats-gomaxprocs "${NATS_GOMAXPROCS:-default}"
if [ -n "$ONLY" ]; then
  : # no latency sweep: no plot
elif command -v gnuplot >/dev/null; then
  gnuplot -e "datafile='$OUT/latency.dat'; outfile='$OUT/latency.png'" "$ROOT/bench/latency.gp" \
    2>"$TMP/logs/gnuplot.log" || echo "bench: gnuplot failed (see logs)" >&2
else
  echo "bench: gnuplot not installed (apt-get install gnuplot-nox): no plot" >&2
fi
cat "$OUT/latest.md"

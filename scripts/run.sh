#!/usr/bin/env bash
# `make run`: start the whole Switchboard set on this machine: a local nats-server
# with JetStream, auth-svc, chat-svc, notify-svc and the gateway, data under $SB_DATA_DIR.
# Creates demo users 1 "Alice" and 2 "Bob", prints a token for each and the URL.
# Ctrl-C (or SIGTERM) stops every process this script started.
set -euo pipefail

BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)
PORT=${SB_PORT:-8000}
NATS_PORT=${SB_NATS_PORT:-4222}
HOST=${SB_HOST:-127.0.0.1}
DATA=${SB_DATA_DIR:-./var}
mkdir -p "$DATA/logs" "$DATA/nats"
DATA=$(cd "$DATA" && pwd)
NATS_URL="nats://127.0.0.1:$NATS_PORT"
LOGS="$DATA/logs"

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  echo "stopped."
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_ready() { # name logfile pid
  for _ in $(seq 100); do
    if grep -q "event=ready" "$2" 2>/dev/null; then return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then
      echo "error: $1 exited; last lines of $2:" >&2; tail -n 20 "$2" >&2; exit 1
    fi
    sleep 0.1
  done
  echo "error: $1 did not become ready; see $2" >&2
  exit 1
}

for p in "$PORT" "$NATS_PORT"; do
  if port_busy "$p"; then
    echo "error: port $p is in use (set SB_PORT / SB_NATS_PORT to choose others)" >&2
    exit 1
  fi
done

# Go's runtime on one thread: every process of the set shares this machine's cores, and
# with one thread per core nats-server hands goroutines between its threads (measured in
# docs/benchmarks.md). SB_NATS_GOMAXPROCS="" gives Go's default.
NATS_GOMAXPROCS="${SB_NATS_GOMAXPROCS-1}"
if [ -n "$NATS_GOMAXPROCS" ]; then export GOMAXPROCS="$NATS_GOMAXPROCS"; fi
nats-server -js -sd "$DATA/nats" -a 127.0.0.1 -p "$NATS_PORT" >"$LOGS/nats.log" 2>&1 &
unset GOMAXPROCS
pids+=($!)
for _ in $(seq 100); do port_busy "$NATS_PORT" && break; sleep 0.1; done
port_busy "$NATS_PORT" || { echo "error: nats-server did not start; see $LOGS/nats.log" >&2; exit 1; }

export SB_NATS_URL="$NATS_URL"
"$BUILD/auth-svc/auth-svc" --data-dir "$DATA/auth" >"$LOGS/auth-svc.log" 2>&1 &
pids+=($!); wait_ready auth-svc "$LOGS/auth-svc.log" $!
"$BUILD/chat-svc/chat-svc" --data-dir "$DATA/chat" >"$LOGS/chat-svc.log" 2>&1 &
pids+=($!); wait_ready chat-svc "$LOGS/chat-svc.log" $!
"$BUILD/notify-svc/notify-svc" --data-dir "$DATA/notify" >"$LOGS/notify-svc.log" 2>&1 &
pids+=($!); wait_ready notify-svc "$LOGS/notify-svc.log" $!
"$BUILD/gateway/gateway" --listen "$HOST:$PORT" >"$LOGS/gateway.log" 2>&1 &
pids+=($!); wait_ready gateway "$LOGS/gateway.log" $!

SBCTL="$BUILD/sbctl/sbctl"
"$SBCTL" user add --id 1 --name "Alice"
"$SBCTL" user add --id 2 --name "Bob"
T1=$("$SBCTL" token issue --user 1 --ttl 7d)
T2=$("$SBCTL" token issue --user 2 --ttl 7d)

cat <<MSG

Switchboard is running.

  URL:            ws://$HOST:$PORT   (chat: /ws/chat/?token=...  notifications: /ws/notifications/?token=...)
  Alice (id 1):   $T1
  Bob   (id 2):   $T2
  logs:           $LOGS/
  operator tool:  SB_NATS_URL=$NATS_URL $SBCTL --help

Browser console test (paste in two tabs, one per token):

  const ws = new WebSocket('ws://$HOST:$PORT/ws/chat/?token=$T1');
  ws.onmessage = (e) => console.log('Received:', JSON.parse(e.data));
  ws.onopen = () => ws.send(JSON.stringify({receiver_id: 2, message: "Test message"}));

Send Bob a notification (paste in another terminal):

  SB_NATS_URL=$NATS_URL $SBCTL notify --user 2 --title "New Notice" --message "Exam schedule released" --type notice

and watch it arrive on his notification socket:

  const n = new WebSocket('ws://$HOST:$PORT/ws/notifications/?token=$T2');
  n.onmessage = (e) => console.log('Notification:', JSON.parse(e.data));

Press Ctrl-C to stop.
MSG

# Exit (and stop everything) as soon as any service dies, or on Ctrl-C.
set +e
wait -n "${pids[@]}"
echo "a service exited; stopping the rest" >&2
exit 1

#!/bin/bash
# valgrind-e2e.sh: a short end-to-end run with every Switchboard binary under valgrind,
# reporting definite leaks and memory errors per binary.
#
#   scripts/valgrind-e2e.sh [BUILD_DIR]        # default: build (a non-sanitizer build)
#
# Starts nats-server -js (not under valgrind), then auth-svc, chat-svc, notify-svc and the
# gateway, each under
#   valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99
# adds two users and tokens with sbctl (also under valgrind), sends one chat message and
# one notification over real WebSockets (Debian's python3-websockets), then stops every
# service with SIGTERM and waits for it. Exit status: 0 when every binary exited 0 with
# no definite leak and no valgrind error; 1 otherwise; 2 when the run itself failed.
# Logs stay in the printed directory when something is found (or with SB_KEEP_LOGS=1).
# Slow (about a minute): not part of `make test`.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd) || { echo "no build directory ${1:-build}" >&2; exit 2; }
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/sb-valgrind-XXXXXX)
VG=(valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99
    --show-leak-kinds=definite --num-callers=40 --track-origins=no)
READY_TIMEOUT=120
STOP_TIMEOUT=60

for b in gateway auth-svc chat-svc notify-svc sbctl; do
	[ -x "$BUILD/$b/$b" ] || { echo "not built: $BUILD/$b/$b" >&2; exit 2; }
done
if ldd "$BUILD/gateway/gateway" | grep -q libasan; then
	echo "$BUILD is a sanitizer build; valgrind needs a plain one" >&2
	exit 2
fi
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)

declare -A PID
NATS_PID=
cleanup() {
	for name in "${!PID[@]}"; do
		kill -KILL "${PID[$name]}" 2>/dev/null
	done
	[ -n "$NATS_PID" ] && kill -KILL "$NATS_PID" 2>/dev/null
	wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 2' INT TERM

free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
NATS_PORT=$(free_port)
GW_PORT=$(free_port)
URL="nats://127.0.0.1:$NATS_PORT"
echo "valgrind e2e: logs in $WORK"

"$NATS" -js -sd "$WORK/nats" -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats-server.log" 2>&1 &
NATS_PID=$!
for _ in $(seq 100); do
	"$PY" -c "import socket; socket.create_connection(('127.0.0.1',$NATS_PORT),0.2)" 2>/dev/null && break
	sleep 0.1
done

start() {   # name, args...: the binary under valgrind, output in $WORK/<name>.log
	local name=$1
	shift
	"${VG[@]}" --log-file="$WORK/vg-$name.log" "$BUILD/$name/$name" "$@" \
		>"$WORK/$name.log" 2>&1 &
	PID[$name]=$!
}
wait_ready() {
	local name=$1 i
	for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
		grep -q 'event=ready' "$WORK/$name.log" 2>/dev/null && return 0
		kill -0 "${PID[$name]}" 2>/dev/null || { echo "$name died:"; tail -20 "$WORK/$name.log"; exit 2; }
		sleep 0.1
	done
	echo "$name not ready after ${READY_TIMEOUT}s" >&2
	exit 2
}

start auth-svc --nats "$URL" --data-dir "$WORK/auth"
start chat-svc --nats "$URL" --data-dir "$WORK/chat"
start notify-svc --nats "$URL" --data-dir "$WORK/notify"
for s in auth-svc chat-svc notify-svc; do wait_ready "$s"; done
start gateway --nats "$URL" --listen "127.0.0.1:$GW_PORT"
wait_ready gateway

SBCTL=("${VG[@]}" --log-file="$WORK/vg-sbctl-%p.log" "$BUILD/sbctl/sbctl" --nats "$URL"
       --timeout-ms 30000)
sbctl() {   # valgrind's own exit status (99) is a finding, not a failed step
	"${SBCTL[@]}" "$@"
	local rc=$?
	[ $rc = 99 ] && { echo "$*" >>"$WORK/sbctl-valgrind-errors"; return 0; }
	return $rc
}
sbctl user add --id 1 --name Alice || exit 2
sbctl user add --id 2 --name Bob || exit 2
T1=$(sbctl token issue --user 1) || exit 2
T2=$(sbctl token issue --user 2) || exit 2

"$PY" - "$GW_PORT" "$T1" "$T2" "${SBCTL[@]}" <<'EOF' || { echo "scenario failed"; exit 2; }
import asyncio, json, subprocess, sys, time, urllib.request
import websockets
port, t1, t2 = sys.argv[1:4]
sbctl = sys.argv[4:]          # valgrind ... sbctl --nats URL --timeout-ms N
deadline = time.time() + 60
while True:
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
            break
    except Exception:
        pass
    assert time.time() < deadline, "gateway /readyz never 200"
    time.sleep(0.2)

async def recv(ws, kind):
    while True:
        f = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if f.get("type") == kind:
            return f

async def main():
    base = f"ws://127.0.0.1:{port}"
    kw = dict(open_timeout=60, ping_interval=None)
    async with websockets.connect(f"{base}/ws/chat/?token={t1}", **kw) as a, \
            websockets.connect(f"{base}/ws/chat/?token={t2}", **kw) as b, \
            websockets.connect(f"{base}/ws/notifications/?token={t2}", **kw) as n:
        await asyncio.sleep(1)
        await a.send(json.dumps({"receiver_id": 2, "message": "under valgrind"}))
        sent = await recv(a, "message_sent")
        got = await recv(b, "chat_message")
        assert got["id"] == sent["id"], (sent, got)
        await asyncio.get_running_loop().run_in_executor(None, lambda: subprocess.run(
            sbctl + ["notify", "--user", "2", "--title", "vg", "--message", "notified"],
            check=True, capture_output=True))
        note = await recv(n, "notify")
        assert note["message"] == "notified", note
        print(f"scenario ok: chat id {got['id']}, notification id {note['id']}")
asyncio.run(main())
EOF

# Stop: the gateway first (it drains), then the back-ends; SIGTERM, bounded wait.
declare -A RC
for name in gateway chat-svc notify-svc auth-svc; do
	kill -TERM "${PID[$name]}" 2>/dev/null
	rc=
	for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
		if ! kill -0 "${PID[$name]}" 2>/dev/null; then
			wait "${PID[$name]}"
			rc=$?
			break
		fi
		sleep 0.1
	done
	if [ -z "$rc" ]; then
		kill -KILL "${PID[$name]}" 2>/dev/null
		wait "${PID[$name]}" 2>/dev/null
		rc="timeout"
	fi
	RC[$name]=$rc
	unset "PID[$name]"
done
kill -TERM "$NATS_PID" 2>/dev/null
wait "$NATS_PID" 2>/dev/null
NATS_PID=

# Report, per binary: exit status, definite leaks, valgrind errors.
status=0
printf '\n%-12s %-8s %-28s %s\n' binary exit "definitely lost" "valgrind errors"
report() {   # name, exit, log files...
	local name=$1 rc=$2
	shift 2
	local bytes=0 blocks=0 errors=0 f b k e
	for f in "$@"; do
		b=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes in \([0-9,]*\) blocks.*/\1/p' "$f" | tr -d , | tail -1)
		k=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes in \([0-9,]*\) blocks.*/\2/p' "$f" | tr -d , | tail -1)
		e=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$f" | tr -d , | tail -1)
		bytes=$((bytes + ${b:-0}))
		blocks=$((blocks + ${k:-0}))
		errors=$((errors + ${e:-0}))
	done
	printf '%-12s %-8s %-28s %s\n' "$name" "$rc" "$bytes bytes in $blocks blocks" "$errors"
	if [ "$rc" != 0 ] || [ "$bytes" != 0 ] || [ "$errors" != 0 ]; then
		status=1
	fi
}
for name in gateway auth-svc chat-svc notify-svc; do
	report "$name" "${RC[$name]}" "$WORK/vg-$name.log"
done
SBCTL_LOGS=("$WORK"/vg-sbctl-*.log)
report "sbctl(x${#SBCTL_LOGS[@]})" "$([ -e "$WORK/sbctl-valgrind-errors" ] && echo 99 || echo 0)" \
	"${SBCTL_LOGS[@]}"
if [ $status -ne 0 ]; then
	echo
	echo "details: grep -A40 'definitely lost in\|Invalid\|uninitialised' $WORK/vg-*.log"
elif [ -z "${SB_KEEP_LOGS:-}" ]; then
	rm -rf "$WORK"    # SB_KEEP_LOGS=1 keeps them
fi
exit $status

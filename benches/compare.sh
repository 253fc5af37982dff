#!/usr/bin/env bash
# Compares our servers (echo-server, chat-server on every runtime) with the
# reference servers in examples/ (ref_tokio_echo, ref_std_echo, ref_tokio_chat),
# all measured back to back in this run by `echochat bench … --json`, and prints
# ONE markdown table with ratios against the references.
#
#   bash benches/compare.sh                 # 5 s per timed case
#   DURATION=10 IDLE_CONNS=5000 bash benches/compare.sh
#
# Everything listens on and connects to 127.0.0.1 only. The load generator and
# the server share this machine's cores, so absolute numbers are lower than on
# separate hosts; the ratios (same client, same run) are what to read.
# Idle needs `ulimit -n` above IDLE_CONNS (the client and the server each hold
# one descriptor per connection).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
IDLE_CONNS=${IDLE_CONNS:-10000}
CHAT_CLIENTS=${CHAT_CLIENTS:-50}
BIG_QUEUE=${BIG_QUEUE:-16777216}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release --features cli --examples --bin echochat >&2
BIN="$TARGET/release/echochat"
# The servers measured (default: this build). SERVER_BIN=path/to/an/older/echochat
# measures another build's servers with this build's load generator, for a before/after.
SERVER_BIN=${SERVER_BIN:-$BIN}
EX="$TARGET/release/examples"
OUT=$(mktemp -d)
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
PID=""
ADDR=""

cleanup() { [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null || true; rm -rf "$OUT"; }
trap cleanup EXIT

# start_server NAME CMD... — sets PID and ADDR from its `listening on IP:PORT` line.
start_server() {
    local name=$1; shift
    : >"$OUT/$name.out"
    "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
    PID=$!
    ADDR=""
    for _ in $(seq 100); do
        ADDR=$(sed -n 's/^listening on \(127\.0\.0\.1:[0-9]*\)$/\1/p' "$OUT/$name.out" | head -n1)
        [ -n "$ADDR" ] && return 0
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "!! $name did not start: $(tail -n 3 "$OUT/$name.err" | tr '\n' ' ')" >&2
    stop_server
    return 1
}

stop_server() {
    [ -z "$PID" ] && return 0
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
}

# run_case SERVER CASE bench-args… — appends {"server","case","report"} to RESULTS.
run_case() {
    local server=$1 case=$2; shift 2
    local json
    echo ">> $server: $case" >&2
    if json=$("$BIN" bench "$@" --json 2>"$OUT/bench.err"); then
        printf '{"server":"%s","case":"%s","report":%s}\n' "$server" "$case" "$json" >>"$RESULTS"
    elif [ -n "$json" ]; then
        # It ran, but found problems (lost, reordered, errors: exit 1): keep its numbers.
        echo "!! $server $case: $(tail -n 1 "$OUT/bench.err")" >&2
        printf '{"server":"%s","case":"%s","report":%s}\n' "$server" "$case" "$json" >>"$RESULTS"
    else
        echo "!! $server $case failed: $(tail -n 1 "$OUT/bench.err")" >&2
    fi
}

echo_cases() {
    local name=$1 idle=$2
    run_case "$name" echo_conns echo --addr "$ADDR" --mode conns --conns 100 --size 512 --duration "$DURATION"
    run_case "$name" echo_stream echo --addr "$ADDR" --mode stream --conns 1 --size 65536 --duration "$DURATION"
    if [ "$idle" = yes ]; then
        run_case "$name" idle idle --addr "$ADDR" --conns "$IDLE_CONNS" --hold 1 --server-pid "$PID"
    fi
}

chat_cases() {
    local name=$1
    run_case "$name" chat_flood chat --addr "$ADDR" --clients "$CHAT_CLIENTS" --msgs 200 --size 64
    run_case "$name" chat_paced chat --addr "$ADDR" --clients "$CHAT_CLIENTS" --msgs $((20 * DURATION)) --size 64 --rate 20
}

for rt in threads tokio smol; do
    idle=no; [ "$rt" != threads ] && idle=yes
    if start_server "echo-$rt" "$SERVER_BIN" echo-server --addr 127.0.0.1:0 --runtime "$rt"; then
        echo_cases "$rt" "$idle"; stop_server
    fi
done
if start_server ref_tokio_echo "$EX/ref_tokio_echo" --addr 127.0.0.1:0; then
    echo_cases ref_tokio "yes"; stop_server
fi
if start_server ref_std_echo "$EX/ref_std_echo" --addr 127.0.0.1:0; then
    echo_cases ref_std "no"; stop_server
fi
for rt in threads tokio smol; do
    if start_server "chat-$rt" "$SERVER_BIN" chat-server --addr 127.0.0.1:0 --runtime "$rt"; then
        chat_cases "$rt"
        # Fair service: a canary's /who round trips while one client floods `x` lines.
        run_case "$rt" flood_lines flood --addr "$ADDR" --attack lines --duration "$DURATION"
        stop_server
    fi
    # The same flood with a send queue big enough for the whole burst (784 KB per
    # receiver): throughput without the slow-consumer policy kicking in.
    if start_server "chat-$rt-bigq" "$SERVER_BIN" chat-server --addr 127.0.0.1:0 --runtime "$rt" --send-queue "$BIG_QUEUE"; then
        run_case "$rt" chat_flood_bigq chat --addr "$ADDR" --clients "$CHAT_CLIENTS" --msgs 200 --size 64
        stop_server
    fi
done
if start_server ref_tokio_chat "$EX/ref_tokio_chat" --addr 127.0.0.1:0; then
    chat_cases ref_tokio
    # The reference has no send-queue limit: its flood is also its "big queue" flood.
    run_case ref_tokio chat_flood_bigq chat --addr "$ADDR" --clients "$CHAT_CLIENTS" --msgs 200 --size 64
    stop_server
fi

python3 - "$RESULTS" "$DURATION" "$IDLE_CONNS" "$CHAT_CLIENTS" <<'PY'
import json, sys
path, duration, idle_conns, clients = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
res = {}
for line in open(path):
    r = json.loads(line)
    res[(r["server"], r["case"])] = r["report"]

ours = ["threads", "tokio", "smol"]
refs = ["ref_tokio", "ref_std"]

def g(d, path):
    for k in path.split("."):
        if d is None:
            return None
        d = d.get(k)
    return d

def errors(r):
    e = r.get("errors", {})
    return sum(e.values())

# (case, label, getter, format, ratio?) — the reference for ratios is ref_tokio.
rows = [
    ("echo_conns", "echo 100 conns × 512 B: requests/s", lambda r: r["requests_per_s"], "{:.0f}", True),
    ("echo_conns", "echo 100 conns × 512 B: p50 µs", lambda r: r["latency"]["p50_us"], "{}", True),
    ("echo_conns", "echo 100 conns × 512 B: p99 µs", lambda r: r["latency"]["p99_us"], "{}", True),
    ("echo_conns", "echo 100 conns × 512 B: errors", errors, "{}", False),
    ("echo_stream", "echo stream 1 conn × 64 KiB writes: MB/s", lambda r: r["mb_per_s"], "{:.0f}", True),
    ("echo_stream", "echo stream: errors", errors, "{}", False),
    ("chat_flood", f"chat flood {clients} × 200 × 64 B: deliveries/s", lambda r: r["deliveries_per_s"], "{:.0f}", True),
    ("chat_flood", "chat flood: p50 µs", lambda r: r["latency"]["p50_us"], "{}", True),
    ("chat_flood", "chat flood: p99 µs", lambda r: r["latency"]["p99_us"], "{}", True),
    ("chat_flood", "chat flood: lost / order violations / errors",
        lambda r: f'{r["lost"]} / {r["order_violations"]} / {errors(r)}', "{}", False),
    ("chat_flood_bigq", "chat flood, --send-queue 16 MiB: deliveries/s", lambda r: r["deliveries_per_s"], "{:.0f}", True),
    ("chat_flood_bigq", "chat flood, 16 MiB queue: p50 µs", lambda r: r["latency"]["p50_us"], "{}", True),
    ("chat_flood_bigq", "chat flood, 16 MiB queue: p99 µs", lambda r: r["latency"]["p99_us"], "{}", True),
    ("chat_flood_bigq", "chat flood, 16 MiB queue: lost / order violations / errors",
        lambda r: f'{r["lost"]} / {r["order_violations"]} / {errors(r)}', "{}", False),
    ("chat_paced", f"chat paced {clients} × 20 lines/s: p50 µs", lambda r: r["latency"]["p50_us"], "{}", True),
    ("chat_paced", "chat paced: p99 µs", lambda r: r["latency"]["p99_us"], "{}", True),
    ("chat_paced", "chat paced: lost / order violations / errors",
        lambda r: f'{r["lost"]} / {r["order_violations"]} / {errors(r)}', "{}", False),
    ("flood_lines", "one client floods x lines: canary /who p50 µs", lambda r: r["canary"]["p50_us"], "{}", False),
    ("flood_lines", "one client floods x lines: canary /who p99 µs", lambda r: r["canary"]["p99_us"], "{}", False),
    ("flood_lines", "one client floods x lines: MB sent by the flooder", lambda r: r["flood_bytes"] / 1e6, "{:.0f}", False),
    ("idle", f"idle {idle_conns} conns: open after hold", lambda r: r["alive_after_hold"], "{}", False),
    ("idle", "idle: connect p99 µs", lambda r: r["connect_latency"]["p99_us"], "{}", True),
    ("idle", "idle: server RSS bytes per conn", lambda r: r["server_bytes_per_conn"], "{:.0f}", True),
]

def cell(server, case, get, fmt, ratio):
    r = res.get((server, case))
    if r is None:
        return "–"
    try:
        v = get(r)
    except (KeyError, TypeError):
        return "–"
    if v is None:
        return "–"
    text = fmt.format(v) if not isinstance(v, str) else v
    if ratio and server in ours:
        ref = res.get(("ref_tokio", case))
        try:
            rv = get(ref) if ref else None
        except (KeyError, TypeError):
            rv = None
        if isinstance(rv, (int, float)) and rv:
            text += f" ({v / rv:.2f}×)"
    return text

print(f"\nDURATION={duration}s per timed case; ratios in parentheses are ours ÷ ref_tokio "
      "(higher is better for rates, lower for latency and memory).\n")
print("| case | " + " | ".join(ours + refs) + " |")
print("|---|" + "---|" * (len(ours) + len(refs)))
for case, label, get, fmt, ratio in rows:
    print(f"| {label} | " + " | ".join(cell(s, case, get, fmt, ratio) for s in ours + refs) + " |")
PY

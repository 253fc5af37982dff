#!/usr/bin/env bash
# Chat across nodes (docs/cluster.md), measured: `bench chat` with its clients spread
# over 1, 2 and 3 `chat-server --cluster` nodes sharing one redis-server, against one
# plain node (no --cluster) with the same clients, all in this run.
#
#   bash benches/cluster.sh                 # needs redis-server on the PATH
#   CLIENTS=50 MSGS=200 RATE=20 REPEAT=2 bash benches/cluster.sh
#
# Two loads per setup: a flood (every client sends MSGS lines flat out:
# deliveries/s) and a paced run (every client sends RATE lines/s for PACED_S
# seconds: delivery latency p50/p99, most of it across nodes). Also reported: the
# CPU seconds redis-server and the nodes used during each load (from /proc).
# Every run must lose nothing and keep each sender's order (bench exits non-zero
# otherwise, and so does this script).
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-50}
MSGS=${MSGS:-200}
RATE=${RATE:-20}
PACED_S=${PACED_S:-5}
REPEAT=${REPEAT:-1}
RUNTIME=${RUNTIME:-tokio}

command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 2; }
cargo build --release --features cli --quiet
BIN=target/release/echochat
OUT=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$OUT"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# start_nodes N CLUSTER(yes|no): starts N nodes, sets ADDRS and NODE_PIDS.
start_nodes() {
    ADDRS=""; NODE_PIDS=()
    for i in $(seq "$1"); do
        local args=(chat-server --addr 127.0.0.1:0 --runtime "$RUNTIME")
        [ "$2" = yes ] && args+=(--cluster "redis://127.0.0.1:$REDIS_PORT" --node-name "n$i")
        "$BIN" "${args[@]}" >"$OUT/node$i.out" 2>"$OUT/node$i.err" &
        local pid=$!; NODE_PIDS+=("$pid"); PIDS+=("$pid")
        local addr=""
        for _ in $(seq 100); do
            addr=$(sed -n 's/^listening on \(127\.0\.0\.1:[0-9]*\)$/\1/p' "$OUT/node$i.out" | head -n1)
            [ -n "$addr" ] && break; sleep 0.05
        done
        [ -n "$addr" ] || { echo "node $i did not start:" >&2; cat "$OUT/node$i.err" >&2; exit 1; }
        ADDRS="${ADDRS:+$ADDRS,}$addr"
    done
    sleep 3 # a heartbeat round: every node knows the others
}
stop_nodes() { for p in "${NODE_PIDS[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done; }

# measure NAME LOAD ARGS...: one bench run, its JSON plus CPU seconds in $OUT/NAME.LOAD.json
measure() {
    local name=$1 load=$2; shift 2
    local r0 n0 r1 n1
    r0=$(cpu_ticks "$REDIS_PID"); n0=$(cpu_ticks "${NODE_PIDS[@]}")
    "$BIN" bench chat --addr "$ADDRS" --clients "$CLIENTS" --size 64 --json "$@" >"$OUT/$name.$load.json"
    r1=$(cpu_ticks "$REDIS_PID"); n1=$(cpu_ticks "${NODE_PIDS[@]}")
    python3 - "$OUT/$name.$load.json" "$((r1 - r0))" "$((n1 - n0))" <<'EOF'
import json, sys
path, redis, nodes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = json.load(open(path))
r["redis_cpu_s"], r["nodes_cpu_s"] = redis / 100, nodes / 100
json.dump(r, open(path, "w"))
EOF
}

for rep in $(seq "$REPEAT"); do
    for setup in single:1:no cluster1:1:yes cluster2:2:yes cluster3:3:yes; do
        IFS=: read -r name n cluster <<<"$setup"
        start_nodes "$n" "$cluster"
        measure "$name.$rep" flood --msgs "$MSGS"
        measure "$name.$rep" paced --msgs $((RATE * PACED_S)) --rate "$RATE"
        stop_nodes
    done
done

python3 - "$OUT" "$REPEAT" "$CLIENTS" "$MSGS" "$RATE" "$PACED_S" <<'EOF'
import json, sys, os
out, repeat, clients, msgs, rate, paced = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
setups = [("single", "1 node, no --cluster"), ("cluster1", "1 node, --cluster"),
          ("cluster2", "2 nodes"), ("cluster3", "3 nodes")]
def get(name, load):
    return [json.load(open(os.path.join(out, f"{name}.{k}.{load}.json"))) for k in range(1, repeat + 1)]
def span(vals, fmt="{:.0f}"):
    lo, hi = min(vals), max(vals)
    return fmt.format(lo) if lo == hi else fmt.format(lo) + "–" + fmt.format(hi)
print(f"clients {clients}, flood {msgs} lines each, paced {rate} lines/s each for {paced} s; {repeat} run(s) each\n")
print("| setup | flood deliveries/s | flood: redis / nodes CPU s | paced p50 µs | paced p99 µs | paced: redis CPU % | lost / order violations |")
print("|---|---|---|---|---|---|---|")
for name, label in setups:
    f, p = get(name, "flood"), get(name, "paced")
    lost = sum(r["lost"] for r in f + p)
    order = sum(r["order_violations"] for r in f + p)
    redis_pct = [100 * r["redis_cpu_s"] / max(r["elapsed_s"], 1e-9) for r in p]
    print(f"| {label} | {span([r['deliveries_per_s'] for r in f])} | "
          f"{span([r['redis_cpu_s'] for r in f], '{:.2f}')} / {span([r['nodes_cpu_s'] for r in f], '{:.2f}')} | "
          f"{span([r['latency']['p50_us'] for r in p])} | {span([r['latency']['p99_us'] for r in p])} | "
          f"{span(redis_pct, '{:.1f}')} | {lost} / {order} |")
EOF

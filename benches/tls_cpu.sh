#!/usr/bin/env bash
# TLS echo, ours against the hand-written tokio + tokio-rustls reference
# (examples/ref_tokio_rustls_echo.rs), reported as throughput *and* as the server's
# CPU time per unit of work (utime+stime from /proc, per request or per MB): on a
# shared machine throughput swings with the load, CPU per unit much less.
#
#   bash benches/tls_cpu.sh                          # 100 conns × 512 B round trips
#   MODE=stream SIZE=65536 CONNS=1 bash benches/tls_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-conns}; SIZE=${SIZE:-512}; CONNS=${CONNS:-100}
DURATION=${DURATION:-5}; REPEAT=${REPEAT:-2}
cargo build --release --features cli --quiet
cargo build --release --features cli --example ref_tokio_rustls_echo --quiet
B=target/release/echochat
R=target/release/examples/ref_tokio_rustls_echo
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
run() {
    local name=$1; shift
    "$@" >"$OUT" 2>/dev/null &
    local pid=$! addr=""
    for _ in $(seq 100); do
        addr=$(sed -n 's/^listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$OUT" | head -n1)
        [ -n "$addr" ] && break; sleep 0.05
    done
    local c0 c1 json
    c0=$(cpu "$pid")
    json=$("$B" bench echo --tls --addr "$addr" --mode "$MODE" --conns "$CONNS" --size "$SIZE" --duration "$DURATION" --json)
    c1=$(cpu "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    python3 -c '
import json, sys
name, ticks, dur, r = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
if r.get("requests_per_s"):
    rate, unit = r["requests_per_s"], "request"
else:
    rate, unit = r["mb_per_s"], "MB"
print(f"{name:14} {rate:12.0f} {unit}s/s   server CPU {ticks / 100:5.2f} s   {ticks * 1e4 / (rate * dur):8.2f} µs CPU per {unit}")
' "$name" "$((c1 - c0))" "$DURATION" "$json"
}
for _ in $(seq "$REPEAT"); do
    for rt in threads tokio smol; do
        run "ours-$rt" "$B" echo-server --addr 127.0.0.1:0 --runtime "$rt" --tls-self-signed
    done
    run ref_tokio_rustls "$R" --addr 127.0.0.1:0
done

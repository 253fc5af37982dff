#!/usr/bin/env bash
# Compares our servers (echo-server, chat-server on every runtime) with the
# reference servers in examples/ (ref_tokio_echo, ref_std_echo, ref_tokio_chat,
# ref_tokio_rustls_echo), all measured back to back in this run by
# `echochat bench … --json`, and prints a markdown table with ratios against the
# references (and a second one for TLS).
#
#   bash benches/compare.sh                 # 5 s per timed case
#   DURATION=10 IDLE_CONNS=5000 bash benches/compare.sh
#   ONLY=tls REPEAT=2 bash benches/compare.sh   # only the TLS table, every case twice
#
#   ONLY=abuse BEFORE_BIN=../before/target/release/echochat bash benches/compare.sh
#
# ONLY=plain or ONLY=tls runs one section (default: both); ONLY=abuse runs only
# the hostile-client workloads (docs/abuse-bench.md: a single-client flood, `/me`,
# `/nick`, `/join` and tiny-line floods into a crowded room, the join curve), on
# fresh servers, each runtime; with BEFORE_BIN, each case also runs, right after,
# on that build's server (same load generator, same run). REPEAT=N runs the
# sections N times, interleaved (ours, reference, ours, reference…); cells then
# show the range over the runs, and ratios the range of each run's own ratio.
# TLS: our servers with --tls-self-signed against ref_tokio_rustls_echo (tokio +
# tokio-rustls), loaded by `bench … --tls` (no certificate check; handshakes are
# done before the measured window).
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
ONLY=${ONLY:-all}
REPEAT=${REPEAT:-1}
# ONLY=abuse: the room size, the attack length, the join curve, an older build.
ABUSE_MEMBERS=${ABUSE_MEMBERS:-1000}
ABUSE_DURATION=${ABUSE_DURATION:-$DURATION}
JOIN_CURVE=${JOIN_CURVE:-1000 2000 5000 10000}
BEFORE_BIN=${BEFORE_BIN:-}
ABUSE_RUNTIMES=${ABUSE_RUNTIMES:-threads tokio smol}
case "$ONLY" in all|plain|tls|abuse) ;; *) echo "ONLY must be all, plain, tls or abuse" >&2; exit 2 ;; esac

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
REP=1

# RESULTS_COPY=path keeps the raw reports (one JSON object a line).
cleanup() {
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null || true
    [ -n "${RESULTS_COPY:-}" ] && cp "$RESULTS" "$RESULTS_COPY"
    rm -rf "$OUT"
}
trap cleanup EXIT

# start_server NAME CMD... — sets PID and ADDR from its `listening on IP:PORT` line
# (`listening on IP:PORT (tls)` for a TLS server).
start_server() {
    local name=$1; shift
    : >"$OUT/$name.out"
    "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
    PID=$!
    ADDR=""
    for _ in $(seq 100); do
        ADDR=$(sed -n 's/^listening on \(127\.0\.0\.1:[0-9]*\)\( (tls)\)\{0,1\}$/\1/p' "$OUT/$name.out" | head -n1)
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

# run_case SERVER CASE bench-args… — appends {"server","case","rep","report"} to RESULTS.
run_case() {
    local server=$1 case=$2; shift 2
    local json
    echo ">> [$REP/$REPEAT] $server: $case" >&2
    if json=$("$BIN" bench "$@" --json 2>"$OUT/bench.err"); then
        printf '{"server":"%s","case":"%s","rep":%s,"report":%s}\n' "$server" "$case" "$REP" "$json" >>"$RESULTS"
    elif [ -n "$json" ]; then
        # It ran, but found problems (lost, reordered, errors: exit 1): keep its numbers.
        echo "!! $server $case: $(tail -n 1 "$OUT/bench.err")" >&2
        printf '{"server":"%s","case":"%s","rep":%s,"report":%s}\n' "$server" "$case" "$REP" "$json" >>"$RESULTS"
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

plain_section() {
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
}

tls_echo_cases() {
    local name=$1
    run_case "$name" tls_echo_stream echo --tls --addr "$ADDR" --mode stream --conns 1 --size 65536 --duration "$DURATION"
    run_case "$name" tls_echo_conns echo --tls --addr "$ADDR" --mode conns --conns 100 --size 512 --duration "$DURATION"
}

tls_section() {
for rt in threads tokio smol; do
    if start_server "tls-echo-$rt" "$SERVER_BIN" echo-server --addr 127.0.0.1:0 --runtime "$rt" --tls-self-signed; then
        tls_echo_cases "$rt"; stop_server
    fi
done
if start_server ref_tokio_rustls_echo "$EX/ref_tokio_rustls_echo" --addr 127.0.0.1:0; then
    tls_echo_cases ref_tokio_rustls; stop_server
fi
for rt in threads tokio smol; do
    # The same flood in plaintext and in TLS, back to back: what TLS costs.
    if start_server "chat-$rt" "$SERVER_BIN" chat-server --addr 127.0.0.1:0 --runtime "$rt"; then
        run_case "$rt" tls_pair_plain_chat_flood chat --addr "$ADDR" --clients "$CHAT_CLIENTS" --msgs 200 --size 64
        stop_server
    fi
    if start_server "tls-chat-$rt" "$SERVER_BIN" chat-server --addr 127.0.0.1:0 --runtime "$rt" --tls-self-signed; then
        run_case "$rt" tls_chat_flood chat --tls --addr "$ADDR" --clients "$CHAT_CLIENTS" --msgs 200 --size 64
        stop_server
    fi
done
}

# abuse_cases NAME BIN RUNTIME — every hostile-client case, each on a fresh server
# (so VmHWM is the case's own), the server's pid given for memory and CPU.
abuse_cases() {
    local name=$1 bin=$2 rt=$3 d=$ABUSE_DURATION m=$ABUSE_MEMBERS n
    local serve=("$bin" chat-server --addr 127.0.0.1:0 --runtime "$rt")
    # Fair service: one client floods `x` lines alone in its room.
    if start_server "abuse-$name" "${serve[@]}"; then
        run_case "$name" abuse_flood_lines flood --addr "$ADDR" --attack lines --duration "$d"; stop_server
    fi
    # Fair service for timers and shutdown: a silent client's --idle-timeout 2 under
    # that flood; SIGTERM at the end of an `x` flood and of a /nick storm.
    if start_server "abuse-$name" "${serve[@]}" --idle-timeout 2; then
        run_case "$name" abuse_flood_idle flood --addr "$ADDR" --attack lines --duration "$d" --idle-timeout 2; stop_server
    fi
    for attack in lines nick; do
        if start_server "abuse-$name" "${serve[@]}"; then
            run_case "$name" "abuse_sigterm_$attack" flood --addr "$ADDR" --attack "$attack" --duration "$d" --server-pid "$PID" --sigterm; stop_server
        fi
    done
    # No collateral drops: /me flood, 200 members reading steadily at 1 MiB/s, then
    # at 256 KiB/s, then m members reading as fast as they can.
    if start_server "abuse-$name" "${serve[@]}"; then
        run_case "$name" room_me_200 room --addr "$ADDR" --attack me --members 200 --member-rate 1048576 --duration "$d" --server-pid "$PID"; stop_server
    fi
    if start_server "abuse-$name" "${serve[@]}"; then
        run_case "$name" room_me_200_slow room --addr "$ADDR" --attack me --members 200 --member-rate 262144 --duration "$d" --server-pid "$PID"; stop_server
    fi
    for attack in me nick join tiny; do
        if start_server "abuse-$name" "${serve[@]}"; then
            run_case "$name" "room_$attack" room --addr "$ADDR" --attack "$attack" --members "$m" --duration "$d" --server-pid "$PID"; stop_server
        fi
    done
    # Shutdown under a flood into the crowded room: SIGTERM halfway, the attack going on.
    for attack in nick tiny; do
        if start_server "abuse-$name" "${serve[@]}"; then
            run_case "$name" "room_sigterm_$attack" room --addr "$ADDR" --attack "$attack" --members "$m" --duration "$d" --server-pid "$PID" --sigterm; stop_server
        fi
    done
    for n in $JOIN_CURVE; do
        if start_server "abuse-$name" "${serve[@]}"; then
            run_case "$name" "joins_$n" joins --addr "$ADDR" --conns "$n" --server-pid "$PID"; stop_server
        fi
    done
}

abuse_section() {
for rt in $ABUSE_RUNTIMES; do
    abuse_cases "$rt" "$SERVER_BIN" "$rt"
    if [ -n "$BEFORE_BIN" ]; then abuse_cases "$rt-before" "$BEFORE_BIN" "$rt"; fi
done
}

if [ "$ONLY" = abuse ]; then
    # The join curve holds up to 10,000 connections on each side.
    ulimit -n "$(ulimit -Hn)"
fi
for REP in $(seq "$REPEAT"); do
    if [ "$ONLY" = abuse ]; then abuse_section; continue; fi
    if [ "$ONLY" != tls ]; then plain_section; fi
    if [ "$ONLY" != plain ]; then tls_section; fi
done

python3 - "$RESULTS" "$DURATION" "$IDLE_CONNS" "$CHAT_CLIENTS" "$ABUSE_MEMBERS" "$JOIN_CURVE" "$ABUSE_DURATION" <<'PY'
import json, sys, statistics
path, duration, idle_conns, clients = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
abuse_members, join_curve, abuse_duration = sys.argv[5], sys.argv[6].split(), sys.argv[7]
# (server, case) -> {rep: report}
res = {}
for line in open(path):
    r = json.loads(line)
    res.setdefault((r["server"], r["case"]), {})[r.get("rep", 1)] = r["report"]

ours = ["threads", "tokio", "smol"]

def errors(r):
    e = r.get("errors", {})
    return sum(e.values())

def value(r, get):
    try:
        v = get(r)
    except (KeyError, TypeError):
        return None
    return v

def span(values, fmt):
    """One value, or the range `min–max` over the runs."""
    lo, hi = min(values), max(values)
    a, b = fmt.format(lo), fmt.format(hi)
    return a if a == b else f"{a}–{b}"

def ratio_text(ratios):
    if not ratios:
        return ""
    a, b = f"{min(ratios):.2f}", f"{max(ratios):.2f}"
    return f" ({a}×)" if a == b else f" ({a}–{b}×)"

def cell(server, case, get, fmt, ratio, ref):
    runs = res.get((server, case))
    if not runs:
        return "–"
    vals = {k: value(r, get) for k, r in runs.items()}
    vals = {k: v for k, v in vals.items() if v is not None}
    if not vals:
        return "–"
    if any(isinstance(v, str) for v in vals.values()):
        return " ; ".join(dict.fromkeys(str(v) for _, v in sorted(vals.items())))
    text = span(list(vals.values()), fmt)
    if ratio and server in ours and ref:
        # Each run's own ratio (ours and the reference measured in the same run).
        refs = {k: value(r, get) for k, r in res.get((ref, case), {}).items()}
        ratios = [vals[k] / refs[k] for k in vals
                  if isinstance(refs.get(k), (int, float)) and refs.get(k)]
        text += ratio_text(ratios)
    return text

def table(rows, servers, ref):
    print("| case | " + " | ".join(servers) + " |")
    print("|---|" + "---|" * len(servers))
    for case, label, get, fmt, ratio in rows:
        print(f"| {label} | " + " | ".join(cell(s, case, get, fmt, ratio, ref) for s in servers) + " |")

def present(rows):
    return any(k[1] == row[0] for row in rows for k in res)

reps = max((k for runs in res.values() for k in runs), default=1)
runs_note = f"; {reps} runs: ranges over the runs" if reps > 1 else ""

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

if present(rows):
    print(f"\nDURATION={duration}s per timed case{runs_note}; ratios in parentheses are ours ÷ ref_tokio "
          "(higher is better for rates, lower for latency and memory).\n")
    table(rows, ours + ["ref_tokio", "ref_std"], "ref_tokio")

# TLS: ratios against ref_tokio_rustls; the chat flood against the same runtime's
# plaintext flood, measured just before it.
for server in ours:
    pair = res.get((server, "tls_pair_plain_chat_flood"), {})
    for k, r in res.get((server, "tls_chat_flood"), {}).items():
        p = pair.get(k)
        if p and p.get("deliveries_per_s"):
            r["tls_over_plain"] = r["deliveries_per_s"] / p["deliveries_per_s"]
tls_rows = [
    ("tls_echo_stream", "TLS echo stream 1 conn × 64 KiB writes: MB/s", lambda r: r["mb_per_s"], "{:.0f}", True),
    ("tls_echo_conns", "TLS echo 100 conns × 512 B: requests/s", lambda r: r["requests_per_s"], "{:.0f}", True),
    ("tls_echo_conns", "TLS echo 100 conns × 512 B: p99 µs", lambda r: r["latency"]["p99_us"], "{}", True),
    ("tls_echo_stream", "TLS echo stream: errors", errors, "{}", False),
    ("tls_echo_conns", "TLS echo conns: errors", errors, "{}", False),
    ("tls_chat_flood", f"TLS chat flood {clients} × 200 × 64 B: deliveries/s", lambda r: r["deliveries_per_s"], "{:.0f}", False),
    ("tls_pair_plain_chat_flood", "plaintext chat flood, same run: deliveries/s", lambda r: r["deliveries_per_s"], "{:.0f}", False),
    ("tls_chat_flood", "TLS chat flood ÷ plaintext chat flood (target > 0.5)", lambda r: r["tls_over_plain"], "{:.2f}", False),
    ("tls_chat_flood", "TLS chat flood: p99 µs", lambda r: r["latency"]["p99_us"], "{}", False),
    ("tls_chat_flood", "TLS chat flood: lost / order violations / errors",
        lambda r: f'{r["lost"]} / {r["order_violations"]} / {errors(r)}', "{}", False),
]
if present(tls_rows):
    print(f"\nTLS (--tls-self-signed, `bench … --tls`), DURATION={duration}s per timed case{runs_note}; "
          "ratios in parentheses are ours ÷ ref_tokio_rustls (tokio + tokio-rustls).\n")
    table(tls_rows, ours + ["ref_tokio_rustls"], "ref_tokio_rustls")

# Hostile clients (ONLY=abuse): ours and, with BEFORE_BIN, the older build, per runtime.
ms = lambda us: us / 1000
mib = lambda kib: kib / 1024
def dropped(r):
    return f'{r["members_dropped"]} / {r["attackers_closed"]} / {"yes" if r["canary_dropped"] else "no"}'
abuse_rows = [
    ("abuse_flood_lines", "one client floods x lines: canary p50 ms", lambda r: ms(r["canary"]["p50_us"]), "{:.1f}", False),
    ("abuse_flood_lines", "one client floods x lines: canary p99 ms (target ≤ 5)", lambda r: ms(r["canary"]["p99_us"]), "{:.1f}", False),
    ("abuse_flood_lines", "one client floods x lines: MB the flooder got in", lambda r: r["flood_bytes"] / 1e6, "{:.0f}", False),
    ("abuse_flood_idle", "same flood: a silent client closed after s (--idle-timeout 2; target ≤ 2.5)",
        lambda r: "not closed" if r["idle_closed_after_s"] is None else r["idle_closed_after_s"], "{:.2f}", False),
    ("abuse_sigterm_lines", "same flood: exit after SIGTERM s (target ≤ 2.5)",
        lambda r: "> 30" if r["exit_after_sigterm_s"] is None else r["exit_after_sigterm_s"], "{:.2f}", False),
    ("abuse_sigterm_nick", "/nick storm (1 client): exit after SIGTERM s (target ≤ 2.5)",
        lambda r: "> 30" if r["exit_after_sigterm_s"] is None else r["exit_after_sigterm_s"], "{:.2f}", False),
]
for case, label in [("room_me_200", "/me flood, 200 members reading 1 MiB/s"),
                    ("room_me_200_slow", "/me flood, 200 members reading 256 KiB/s"),
                    ("room_me", f"/me flood, {abuse_members} members reading flat out"),
                    ("room_nick", f"/nick storm, {abuse_members} members"),
                    ("room_join", f"/join hopping, {abuse_members} members"),
                    ("room_tiny", f"tiny-line flood, {abuse_members} members")]:
    abuse_rows += [
        (case, f"{label}: members dropped / attacker closed / canary dropped", dropped, "{}", False),
        (case, f"{label}: canary p50 ms", lambda r: ms(r["canary"]["p50_us"]), "{:.1f}", False),
        (case, f"{label}: canary p99 ms (samples)", lambda r: f'{ms(r["canary"]["p99_us"]):.1f} ({r["canary"]["samples"]})', "{}", False),
        (case, f"{label}: attack lines/s served", lambda r: r["attack_lines_per_s"], "{:.0f}", False),
    ]
    if case in ("room_nick", "room_join", "room_tiny"):
        abuse_rows.append((case, f"{label}: amplification (bytes out ÷ bytes in)", lambda r: r["amplification"], "{:.0f}", False))
abuse_rows += [
    ("room_tiny", "tiny-line flood: server RSS before MiB", lambda r: mib(r["server"]["rss_before_kib"]), "{:.0f}", False),
    ("room_tiny", "tiny-line flood: server peak RSS MiB", lambda r: mib(r["server"]["rss_peak_kib"]), "{:.0f}", False),
    ("room_tiny", "tiny-line flood: server peak RSS − RSS before MiB", lambda r: mib(r["server"]["rss_peak_kib"] - r["server"]["rss_before_kib"]), "{:.0f}", False),
    ("room_tiny", "tiny-line flood: server RSS after the queues drained MiB", lambda r: mib(r["server"]["rss_after_kib"]), "{:.0f}", False),
    ("room_tiny", "tiny-line flood: bound (clients × send queue + 64 KiB each) MiB", lambda r: mib(r["memory_bound_kib"]), "{:.0f}", False),
    ("room_tiny", "tiny-line flood: drain s (gave up at 30)", lambda r: r["drain_s"], "{:.1f}", False),
    ("room_sigterm_nick", f"/nick storm, {abuse_members} members: exit after SIGTERM s (target ≤ 2.5)",
        lambda r: "> 30" if r["exit_after_sigterm_s"] is None else r["exit_after_sigterm_s"], "{:.2f}", False),
    ("room_sigterm_tiny", f"tiny-line flood, {abuse_members} members: exit after SIGTERM s (target ≤ 2.5)",
        lambda r: "> 30" if r["exit_after_sigterm_s"] is None else r["exit_after_sigterm_s"], "{:.2f}", False),
]
for n in join_curve:
    c = f"joins_{n}"
    abuse_rows += [
        (c, f"{n} joins: joined / refused / dropped", lambda r: f'{r["joined"]} / {r["refused"] + r["failed"]} / {r["dropped"]}', "{}", False),
        (c, f"{n} joins: server CPU s", lambda r: r["server"]["cpu_s"], "{:.2f}", False),
        (c, f"{n} joins: server peak RSS MiB", lambda r: mib(r["server"]["rss_peak_kib"]), "{:.0f}", False),
        (c, f"{n} joins: canary p99 ms", lambda r: ms(r["canary"]["p99_us"]), "{:.1f}", False),
        (c, f"{n} joins: all notices delivered after s", lambda r: r["settle_s"], "{:.1f}", False),
    ]
abuse_cases = {row[0] for row in abuse_rows}
loads = [r["load1"] for k, runs in res.items() if k[1] in abuse_cases for r in runs.values() if r.get("load1") is not None]
if present(abuse_rows):
    servers = [s for rt in ours for s in (rt, f"{rt}-before") if any(k[0] == s for k in res)]
    load_note = f"; 1-min load average at the cases {min(loads):.1f}–{max(loads):.1f}" if loads else ""
    print(f"\nHostile clients, {abuse_duration} s per attack{runs_note}{load_note}; `-before` columns: "
          "BEFORE_BIN's server, same load generator, measured right after ours.\n")
    table(abuse_rows, servers, None)
PY

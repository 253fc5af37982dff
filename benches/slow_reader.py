#!/usr/bin/env python3
"""Chat with one client that never reads while others flood (issue: bounded memory).

Starts `echochat chat-server` on each runtime (127.0.0.1:0), connects one client with a
tiny receive buffer that never reads, runs `echochat bench chat` with 10 flooding
clients in the same room, and reports the server's peak memory growth (VmHWM minus
the RSS before the run), what the bench lost, and whether the non-reader was dropped.

    python3 benches/slow_reader.py [path/to/echochat]   (default: target/release/echochat)

Build the binary first: cargo build --release --features cli
"""
import json, os, socket, subprocess, sys, time

BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "target"), "release", "echochat")


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def run(runtime):
    srv = subprocess.Popen([BIN, "chat-server", "--addr", "127.0.0.1:0", "--runtime", runtime],
                           stdout=subprocess.PIPE, text=True)
    try:
        host, port = srv.stdout.readline().split()[-1].rsplit(":", 1)
        time.sleep(0.2)
        base = status(srv.pid, "VmRSS")
        lazy = socket.socket()
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.connect((host, int(port)))
        lazy.sendall(b"/nick lazy\n")  # then never reads
        out = subprocess.run([BIN, "bench", "chat", "--addr", f"{host}:{port}", "--clients", "10",
                              "--msgs", "5000", "--size", "64", "--json"],
                             capture_output=True, text=True, timeout=120)
        r = json.loads(out.stdout)
        growth = status(srv.pid, "VmHWM") - base
        # Dropped: the server closed it (its kernel buffers may still hold data first).
        lazy.settimeout(0.5)
        dropped = False
        try:
            while True:
                chunk = lazy.recv(1 << 16)
                if not chunk:
                    dropped = True
                    break
        except ConnectionResetError:
            dropped = True
        except socket.timeout:
            dropped = False  # still open: the server kept it
        lazy.close()
        return {"runtime": runtime, "peak_growth_mib": round(growth / 2**20, 2),
                "lost": r.get("lost"), "order_violations": r.get("order_violations"),
                "deliveries_per_s": r.get("deliveries_per_s"), "lazy_dropped": dropped}
    finally:
        srv.terminate()
        srv.wait(timeout=10)


if __name__ == "__main__":
    print("| runtime | server peak memory growth | lost (10 flooders × 5000 × 64 B) | order violations | non-reader dropped |")
    print("|---|---|---|---|---|")
    for rt in ("threads", "tokio", "smol"):
        x = run(rt)
        print(f"| {rt} | {x['peak_growth_mib']} MiB | {x['lost']} | {x['order_violations']} | {x['lazy_dropped']} |")

#!/usr/bin/env bash
# Runs cargo-fuzz campaigns over echochat's fuzz targets and reports executions and
# crashes per target. Exits non-zero if any target crashed (or failed to build/run).
#
#   fuzz/run.sh TARGET SECS        one target for SECS seconds
#   fuzz/run.sh all SECS           every target, SECS seconds each
#
# Environment:
#   FUZZ_ASAN=1     use `cargo +nightly` with AddressSanitizer (needs a nightly toolchain);
#                   default: the current (stable) toolchain with `--sanitizer none`.
#   FUZZ_ARGS       extra libFuzzer flags, e.g. "-max_len=8192 -jobs=2".
# Crashing inputs land in fuzz/artifacts/TARGET/; see fuzz/README.md to reproduce one.
set -uo pipefail

usage() { echo "usage: $0 TARGET|all SECS" >&2; exit 2; }
[ $# -eq 2 ] || usage
what=$1
secs=$2
case $secs in ''|*[!0-9]*) usage ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
all_targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^echochat-fuzz$')
if [ "$what" = all ]; then
    targets=$all_targets
elif grep -qx "$what" <<<"$all_targets"; then
    targets=$what
else
    echo "unknown target '$what'; targets: $(echo $all_targets)" >&2
    exit 2
fi

if [ "${FUZZ_ASAN:-0}" = 1 ]; then
    if ! cargo +nightly --version >/dev/null 2>&1; then
        echo "FUZZ_ASAN=1 needs a nightly toolchain (cargo +nightly)" >&2
        exit 2
    fi
    cargo=(cargo +nightly fuzz)
    sanitizer=(--sanitizer address)
    mode="nightly, AddressSanitizer"
else
    cargo=(cargo fuzz)
    sanitizer=(--sanitizer none)
    mode="$(rustc --version | cut -d' ' -f2), no sanitizer"
fi

logdir=$(mktemp -d "${TMPDIR:-/tmp}/echochat-fuzz.XXXXXX")
failed=0
summary=()
for t in $targets; do
    mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t" "fuzz/artifacts/$t"
    log="$logdir/$t.log"
    echo "== $t: ${secs}s ($mode); log $log" >&2
    # libFuzzer writes new inputs to the first folder; regressions are read-only seeds.
    "${cargo[@]}" run "${sanitizer[@]}" "$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE.*/\1/p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    crashes=$(grep -cE '^(==[0-9]+== ?ERROR|SUMMARY: libFuzzer|.*panicked at)' "$log")
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [ $rc -ne 0 ]; then
        failed=1
        [ "$crashes" -gt 0 ] || crashes="?"
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        echo "!! $t failed (exit $rc); last lines of $log:" >&2
        tail -n 30 "$log" >&2
        [ -n "$artifact" ] && echo "!! reproduce: cargo fuzz run ${sanitizer[*]} $t $artifact" >&2
    fi
    summary+=("$(printf '%-8s executions=%-10s crashes=%-3s corpus=%-5s exit=%s' "$t" "${execs:-?}" "$crashes" "$corpus" "$rc")")
done

echo "== fuzz summary (${secs}s per target, $mode)"
printf '%s\n' "${summary[@]}"
exit $failed

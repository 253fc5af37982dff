#!/usr/bin/env bash
# CI smoke run: every fuzz target for ~30 s (SECS to change) on the STABLE toolchain
# without a sanitizer. Installs cargo-fuzz if it is missing. Exits non-zero on a crash.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
FUZZ_ASAN=0 exec "$here/run.sh" all "${SECS:-30}"

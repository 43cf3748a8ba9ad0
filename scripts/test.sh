#!/usr/bin/env bash
# Runs the whole tollgate test suite on this machine.
#
# It installs and starts whatever the tests need that is not there yet, on
# loopback only, and fails loudly if something cannot start. Today the suite
# needs nothing beyond the Rust toolchain: the embedded store is a SQLite file
# the tests create. Services (Redis, PostgreSQL, Chromium) are added here as
# the capabilities that need them land.
set -euo pipefail
cd "$(dirname "$0")/.."

# A fresh debug build of the workspace and its tests takes about 2 GB.
# Say so plainly rather than let a linker die of a full disk.
free_kb=$(df -Pk "${CARGO_TARGET_DIR:-target}" 2>/dev/null | awk 'NR==2 {print $4}' || true)
[ -n "$free_kb" ] || free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
if [ "$free_kb" -lt 3000000 ]; then
  echo "error: $((free_kb / 1024)) MB free; the build needs about 3 GB" >&2
  exit 1
fi

echo "== cargo test (workspace)"
cargo test --workspace --locked

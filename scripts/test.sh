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

echo "== cargo test (workspace)"
cargo test --workspace --locked

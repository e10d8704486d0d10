#!/usr/bin/env bash
# Runs the whole test suite: unit, integration, property, crash and CLI tests of every crate.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
cargo test --workspace --all-targets
cargo test --workspace --doc

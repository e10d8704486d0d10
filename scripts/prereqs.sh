#!/usr/bin/env bash
# Sourced by the other scripts: checks, and on Debian/Ubuntu as root installs, what building
# rstreams needs: a C/C++ compiler and libclang (for RocksDB's bindings) and a Rust toolchain;
# and what the tests use: psql (the PostgreSQL client) and Python's psycopg driver, for the
# endpoint's tests.
set -euo pipefail

missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
if command -v dpkg >/dev/null 2>&1; then
  dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing system packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "error: missing system packages: ${missing[*]} (install them, e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
if ! python3 -c 'import psycopg' >/dev/null 2>&1; then
  command -v python3 >/dev/null 2>&1 || { echo "error: python3 is missing (the endpoint's tests drive psycopg)" >&2; exit 1; }
  echo "installing psycopg (Python PostgreSQL driver) for the tests" >&2
  # Debian's own package where the system Python refuses pip (PEP 668), else pip.
  if ! { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-psycopg >/dev/null 2>&1 \
        && python3 -c 'import psycopg' >/dev/null 2>&1; }; then
    python3 -m pip install -q 'psycopg[binary]' >/dev/null 2>&1 \
      || python3 -m pip install -q --user --break-system-packages 'psycopg[binary]' >/dev/null
  fi
fi
if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: no Rust toolchain: install one with rustup (https://rustup.rs), stable 1.89 or newer" >&2
  exit 1
fi

#!/usr/bin/env bash
# The main job: builds rstreams, then
#   1. generates one million Nexmark auction events and writes their bids into topic `bids`
#      of a fresh embedded store (examples/quickstart/bids_to_topic.sql), and
#   2. runs a windowed SQL job over the topic: the hottest items of every 10-second window
#      (examples/quickstart/hot_items.sql), printing each window's result as it closes.
# Edit the SQL and run step 2 again: `rstreams --data-dir DIR run examples/quickstart/hot_items.sql`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh

profile="${RSTREAMS_PROFILE:-release}"
dir="$profile"; [ "$profile" = dev ] && dir=debug
bin="${CARGO_TARGET_DIR:-target}/$dir/rstreams"
if [ "${RSTREAMS_PREBUILT:-0}" = 1 ] && [ -x "$bin" ]; then
  # CI: the test build already made this binary (rebuilding it alone would resolve features
  # differently and compile DataFusion a second time).
  echo "== using the binary built by the tests: $bin"
else
  cargo build --profile "$profile" --bin rstreams
fi
data="${RSTREAMS_DEMO_DIR:-./rstreams-data-demo}"
rm -rf "$data"
rs() { "$bin" --data-dir "$data" "$@"; }
started=$(date +%s)

echo "== a topic with 4 logical queues in a fresh store ($data)"
rs topic create bids --queues 4
echo "== 1,000,000 Nexmark events; their bids go into topic 'bids' (examples/quickstart/bids_to_topic.sql)"
rs run examples/quickstart/bids_to_topic.sql
rs topic describe bids | head -3
echo "== the hottest items of every 10-second window (examples/quickstart/hot_items.sql)"
out="$data/hot_items.txt"
rs run examples/quickstart/hot_items.sql | tee "$out"

# The bids span 100 seconds of event time: every 10-second window must have its winner.
windows=$(grep -E '^\| [0-9]{4}-' "$out" | cut -d'|' -f2 | sort -u | wc -l)
if [ "$windows" -lt 10 ]; then
  echo "error: results for $windows windows, expected at least 10" >&2
  exit 1
fi
echo "OK: the hottest items of $windows windows in $(( $(date +%s) - started )) s (store in $data)"

#!/usr/bin/env bash
# The main job, until the SQL engine lands: builds rstreams, creates a topic with 4 queues in a
# fresh store, produces 5,000 JSON click events keyed by user, and consumes them back through a
# consumer group.
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

echo "== create a topic with 4 logical queues"
rs topic create clicks --queues 4 --durability interval:100 --retention 7d
echo "== produce 5,000 click events keyed by user"
for i in $(seq 1 5000); do
  printf '{"user":"u%d","page":"/item/%d","seq":%d}\n' $((i % 50)) $((i % 17)) "$i"
done | rs produce clicks --key-field user
rs topic describe clicks
echo "== the first 5 records, then the rest, through consumer group 'demo'"
rs consume clicks --group demo --limit 5
rest=$(rs consume clicks --group demo | wc -l)
echo "... and $rest more"
rs group describe demo
total=$((rest + 5))
if [ "$total" -ne 5000 ]; then
  echo "error: consumed $total records, expected 5000" >&2
  exit 1
fi
echo "OK: 5000 records produced and consumed back (store in $data)"

#!/usr/bin/env bash
# make demo: fills an example `products` table on the local single ClickHouse
# node, applies examples/ while a writer keeps inserting, then shows the job
# status and each MV's result next to the same aggregate computed from the
# source. Run it again: the second apply finds nothing to do.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
set -a
# shellcheck disable=SC1091
. .stack/env
set +a
export SHIRATH_LOG_LEVEL="${SHIRATH_LOG_LEVEL:-warn}"
ROWS="${DEMO_ROWS:-3000000}"
HOST="${SHIRATH_CH_ADDR%:*}"
PORT="${SHIRATH_CH_ADDR##*:}"
ch() { clickhouse-client --host "$HOST" --port "$PORT" "$@"; }
shirath() { "$ROOT/bin/shirath" "$@"; }

echo "== source: default.products"
ch -q "CREATE TABLE IF NOT EXISTS default.products (id UInt64, category String, price Decimal(18,2), created_at DateTime) ENGINE = MergeTree() ORDER BY id"
have=$(ch -q "SELECT count() FROM default.products")
if [[ $have -lt $ROWS ]]; then
	echo "filling $((ROWS - have)) rows server side"
	ch -q "INSERT INTO default.products SELECT $have + number + 1, concat('category_', toString(($have + number) % 50)), toDecimal64((($have + number) * 7919) % 100000, 2) / 100, toDateTime('2024-01-01 00:00:00') + ($have + number) FROM numbers($((ROWS - have)))"
fi
ch -q "SELECT count() AS rows, max(id) AS max_id FROM default.products FORMAT PrettyCompactNoEscapes"

# A writer keeps inserting while apply runs, as a CDC stream would: the fence
# keeps the result exact anyway.
writer() {
	while :; do
		ch -q "INSERT INTO default.products SELECT m + number + 1, concat('category_', toString((m + number) % 50)), toDecimal64(((m + number) * 7919) % 100000, 2) / 100, now() FROM numbers(500) CROSS JOIN (SELECT max(id) AS m FROM default.products)" || true
		sleep 0.2
	done
}
writer &
WRITER=$!
trap 'kill $WRITER 2>/dev/null || true' EXIT

echo
echo "== shirath apply --auto-approve examples/ (a writer inserts meanwhile)"
shirath apply --auto-approve examples/
sleep 1
kill $WRITER 2>/dev/null || true
wait $WRITER 2>/dev/null || true
trap - EXIT

echo
echo "== shirath status"
shirath status

echo
echo "== products_by_category: the MV's target next to the aggregate of the source"
ch -q "SELECT m.category, m.cnt AS mv_cnt, s.cnt AS source_cnt, m.total AS mv_total, s.total AS source_total, if(m.cnt = s.cnt AND m.total = s.total, 'same', 'DIFFERENT') AS check
FROM (SELECT category, sum(cnt) AS cnt, sum(total_price) AS total FROM default.products_by_category_data GROUP BY category) AS m
ALL FULL OUTER JOIN (SELECT category, count() AS cnt, sum(price) AS total FROM default.products GROUP BY category) AS s USING category
ORDER BY category LIMIT 10 FORMAT PrettyCompactNoEscapes"
ch -q "SELECT countIf(m.cnt = s.cnt AND m.total = s.total) AS categories_same, countIf(NOT (m.cnt = s.cnt AND m.total = s.total)) AS categories_different
FROM (SELECT category, sum(cnt) AS cnt, sum(total_price) AS total FROM default.products_by_category_data GROUP BY category) AS m
ALL FULL OUTER JOIN (SELECT category, count() AS cnt, sum(price) AS total FROM default.products GROUP BY category) AS s USING category FORMAT PrettyCompactNoEscapes"

echo
echo "== products_stats_by_category (AggregatingMergeTree, read with -Merge)"
ch -q "SELECT countIf(m.u = s.u AND m.t = s.t) AS categories_same, countIf(NOT (m.u = s.u AND m.t = s.t)) AS categories_different
FROM (SELECT category, uniqMerge(products) AS u, sumMerge(total_price) AS t FROM default.products_stats_by_category_data GROUP BY category) AS m
ALL FULL OUTER JOIN (SELECT category, uniq(id) AS u, sum(price) AS t FROM default.products GROUP BY category) AS s USING category FORMAT PrettyCompactNoEscapes"

echo
echo "== shirath plan examples/ (nothing left to do)"
shirath plan examples/

#!/usr/bin/env bash
# saga-stages.sh DATABASE prints where a load test's sagas spent their time, stage by stage
# (p50, p90 and p99 in ms), from the timestamps both services already store: a booking's
# created_at, its SeatHoldRequested outbox row's published_at and its HELD history line in
# MySQL; its hold's created_at and its SeatsHeld outbox row's published_at in PostgreSQL.
#
# DATABASE is the name both services used (FLIGHTBOOK_POSTGRES_URL / FLIGHTBOOK_MYSQL_DSN), on
# the local servers as `make run` and docs/performance.md set them up. It needs the mysql and
# psql clients and reads only. The clocks are the two servers' own, on one machine here.
set -euo pipefail
db=${1:?usage: saga-stages.sh DATABASE}
tsv=$(mktemp -t saga-stages.XXXXXX)
trap 'rm -f "$tsv"' EXIT

mysql -h127.0.0.1 -uroot -N -B "$db" -e "
	SELECT b.id, UNIX_TIMESTAMP(b.created_at),
	       (SELECT UNIX_TIMESTAMP(o.published_at) FROM outbox o
	        WHERE o.aggregate_id = b.id AND o.subject LIKE '%seat-hold-requested' LIMIT 1),
	       (SELECT UNIX_TIMESTAMP(h.at) FROM booking_history h
	        WHERE h.booking_id = b.id AND h.to_status = 'HELD' LIMIT 1)
	FROM bookings b" >"$tsv"

psql -h127.0.0.1 -Upostgres -X -q "$db" <<SQL
CREATE TEMP TABLE bk (id uuid, created float8, published text, held text);
\copy bk FROM '$tsv' WITH (FORMAT text, NULL 'NULL')
WITH s AS (
	SELECT bk.created AS t0, bk.published::float8 AS t1, extract(epoch FROM h.created_at) AS t2,
	       extract(epoch FROM o.published_at) AS t3, bk.held::float8 AS t4
	FROM bk
	JOIN holds h ON h.booking_id = bk.id
	JOIN outbox o ON o.aggregate_id = bk.id::text AND o.subject LIKE '%seats-held'
	WHERE bk.published IS NOT NULL AND bk.held IS NOT NULL AND o.published_at IS NOT NULL
), d(stage, ord, ms) AS (
	SELECT 'POST to SeatHoldRequested published', 1, (t1 - t0) * 1000 FROM s
	UNION ALL SELECT 'published to hold committed', 2, (t2 - t1) * 1000 FROM s
	UNION ALL SELECT 'hold to SeatsHeld published', 3, (t3 - t2) * 1000 FROM s
	UNION ALL SELECT 'SeatsHeld published to HELD', 4, (t4 - t3) * 1000 FROM s
	UNION ALL SELECT 'POST to HELD', 5, (t4 - t0) * 1000 FROM s
)
SELECT stage, count(*) AS sagas,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS p50_ms,
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS p90_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS p99_ms
FROM d GROUP BY stage, ord ORDER BY ord;
SQL

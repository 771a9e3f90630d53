#!/usr/bin/env bash
# bench.sh runs flightbook's Go benchmarks and a short load test and writes every figure to one
# file (default bench/results.txt), so a change's effect can be compared with docs/performance.md.
#
# The load test builds the binary, starts `flightbook dev` in the background on free ports with
# fresh databases (dropped again at the end) and an embedded NATS server in a temporary
# directory, runs the hot and burst scenarios, and stops it. It needs PostgreSQL and MariaDB as
# `make run` does (FLIGHTBOOK_POSTGRES_URL / FLIGHTBOOK_MYSQL_DSN name the servers; their database
# part is replaced). psql and mysql clients, when installed, drop the databases afterwards.
#
# Settings (environment):
#   BENCH_OUT        results file                           (bench/results.txt)
#   BENCH_DURATION   length of the hot scenario             (20s)
#   BENCH_CLIENTS    clients of the hot scenario            (64)
#   BENCH_GO         "none" skips the Go benchmarks
#
# Each load test also reports the CPU time that flightbook, MariaDB (or MySQL) and PostgreSQL
# spent per booking accepted (loadtest --cpu): on a shared machine it moves less from run
# to run than bookings/s does.
#
# The outbox benchmarks time a fixed workload per run (-benchtime 1x); the hold benchmarks are
# ordinary per-op benchmarks (and the booking writes' one) and get -benchtime 2s.
set -euo pipefail

cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench/results.txt}
duration=${BENCH_DURATION:-20s}
clients=${BENCH_CLIENTS:-64}
run_go=${BENCH_GO:-}
go=${GO:-go}

mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d -t flightbook-bench.XXXXXX)
db="flightbook_bench_$$"
pg_url=${FLIGHTBOOK_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/flightbook?sslmode=disable}
my_dsn=${FLIGHTBOOK_MYSQL_DSN:-root@tcp(127.0.0.1:3306)/flightbook?parseTime=true}
# Replace the database name: postgres://.../NAME?... and user@tcp(...)/NAME?...
pg_url=$(sed -E "s#^([^/]*//[^/]*/)[^?]*#\1$db#" <<<"$pg_url")
my_dsn=$(sed -E "s#^([^/]*\)/)[^?]*#\1$db#" <<<"$my_dsn")
dev_pid=

cleanup() {
	if [ -n "$dev_pid" ] && kill -0 "$dev_pid" 2>/dev/null; then
		kill "$dev_pid"
		wait "$dev_pid" 2>/dev/null || true
	fi
	if command -v psql >/dev/null; then
		psql -q "$(sed -E "s#^([^/]*//[^/]*/)[^?]*#\1postgres#" <<<"$pg_url")" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
	fi
	if command -v mysql >/dev/null; then
		mysql -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

say() { echo "$*" | tee -a "$out"; }
: >"$out"
say "# flightbook bench $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (working tree modified)')"
say "# $(nproc) CPUs, $(uname -sr), $($go version)"
# The machine may be shared: the load average before each part tells a quiet run from a noisy one.
loadavg() { say "# load average $(cut -d' ' -f1-3 /proc/loadavg)"; }
say

gobench() {
	local benchtime=$1
	shift
	say "## go test -run '^\$' -bench . -benchtime $benchtime $*"
	loadavg
	$go test -run '^$' -bench . -benchtime "$benchtime" "$@" 2>&1 | tee -a "$out"
	say
}
if [ "$run_go" != none ]; then
	gobench 1x ./outbox/
	gobench 2s ./services/flight/messaging/ ./services/flight/postgres/ ./services/booking/api/
fi

say "## load test: flightbook dev (embedded NATS, PostgreSQL and MariaDB database $db)"
$go build -o "$tmp/flightbook" ./cmd/flightbook
(
	cd "$tmp"
	FLIGHTBOOK_POSTGRES_URL="$pg_url" FLIGHTBOOK_MYSQL_DSN="$my_dsn" \
		FLIGHTBOOK_FLIGHT_HTTP_ADDR=127.0.0.1:0 FLIGHTBOOK_BOOKING_HTTP_ADDR=127.0.0.1:0 \
		exec ./flightbook dev --data "$tmp/data" >"$tmp/dev.out" 2>"$tmp/dev.log"
) &
dev_pid=$!

# dev prints both services' URLs once it has seeded the catalogue.
for _ in $(seq 300); do
	grep -q 'booking service' "$tmp/dev.out" 2>/dev/null && break
	kill -0 "$dev_pid" 2>/dev/null || { cat "$tmp/dev.log" >&2; echo "bench: flightbook dev stopped" >&2; exit 1; }
	sleep 0.1
done
flight_url=$(grep -o 'http://[0-9.:]*' <(grep 'flight service' "$tmp/dev.out") | head -1)
booking_url=$(grep -o 'http://[0-9.:]*' <(grep 'booking service' "$tmp/dev.out") | head -1)
[ -n "$flight_url" ] && [ -n "$booking_url" ] || { cat "$tmp/dev.log" >&2; echo "bench: no service URLs" >&2; exit 1; }
for url in "$flight_url" "$booking_url"; do
	for _ in $(seq 300); do
		curl -sf "$url/readyz" >/dev/null && break
		sleep 0.1
	done
done

loadtest() {
	say "### flightbook loadtest $*"
	loadavg
	local s=$SECONDS
	"$tmp/flightbook" loadtest --flight-url "$flight_url" --booking-url "$booking_url" \
		--cpu flightbook,mariadbd,mysqld,postgres "$@" 2>&1 | tee -a "$out"
	say "(load plus drain until quiet: $((SECONDS - s)) s)"
	say
}
loadtest --scenario hot --clients "$clients" --duration "$duration"
loadtest --scenario burst
loadtest --scenario saga --clients 16 --duration 10s

echo "bench: results in $out"

#!/usr/bin/env bash
# Times `dbfixtures load` against `psql \copy` for a table of N rows (default 200,000) with
# integer[], text[], a composite and an hstore column, both into an empty table, in one run,
# and checks both loads hold the same rows (md5 of the table's text).
#
#   tests/bench/typed_load.sh [N] [BIN]      (server: $BENCH_URL, default the local PostgreSQL)
#
# Prints each time and the ratio load / psql COPY. Run it a few times: one run on a 2-core
# machine varies by ±15%.
set -euo pipefail
N=${1:-200000}
BIN=${2:-target/release/dbfixtures}
BASE=${BENCH_URL:-postgres://postgres@127.0.0.1:5432}
BASE=${BASE%/}
WORK=$(mktemp -d)
cleanup() {
  rm -rf "$WORK"
  for db in tsrc tcopy tload; do psql -qX "$BASE/postgres" -c "DROP DATABASE IF EXISTS $db" 2>/dev/null; done
}
trap cleanup EXIT

schema() {
  psql -qX -v ON_ERROR_STOP=1 "$BASE/$1" <<'SQL'
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TYPE address AS (street text, zip integer, verified boolean);
CREATE TABLE typed (
  id bigint PRIMARY KEY,
  ints integer[] NOT NULL,
  tags text[],
  addr address,
  attrs hstore
);
SQL
}
for db in tsrc tcopy tload; do
  psql -qX "$BASE/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" 2>/dev/null
  schema $db
done
psql -qX -v ON_ERROR_STOP=1 "$BASE/tsrc" -c "
INSERT INTO typed
SELECT g,
       ARRAY[g, g * 2, -g, g % 97],
       ARRAY['tag-' || g, 'with \"quote\"', 'comma,' || (g % 13), 'brace{}', CASE WHEN g % 5 = 0 THEN NULL ELSE 'x' END],
       ROW(g || ' Main St, Apt \"' || (g % 50) || '\"', 10000 + g % 89999, g % 2 = 0)::address,
       hstore(ARRAY['k' || (g % 7), 'color', 'note'], ARRAY[g::text, 'blue', 'a=>b, \"c\"'])
FROM generate_series(1, $N) g;"
psql -qX "$BASE/tsrc" -c "VACUUM ANALYZE typed"

"$BIN" --quiet --database-url "$BASE/tsrc" dump --table typed -o "$WORK/typed.json"
psql -qX "$BASE/tsrc" -c "\\copy typed TO '$WORK/typed.copy'"
sync

now() { date +%s.%N; }
# Each load starts with no dirty buffers left by the one before (or by filling tsrc).
checkpoint() { psql -qX "$BASE/postgres" -c CHECKPOINT; }
checkpoint
t0=$(now)
psql -qX -v ON_ERROR_STOP=1 "$BASE/tcopy" -c "\\copy typed FROM '$WORK/typed.copy'"
t1=$(now)
checkpoint
t1=$(now)
/usr/bin/time -f '%U %S %M' -o "$WORK/rusage" "$BIN" --quiet --database-url "$BASE/tload" load "$WORK/typed.json"
t2=$(now)

sum() { psql -qXAt "$BASE/$1" -c "SELECT md5(string_agg(t::text, E'\n' ORDER BY id)) FROM typed t"; }
same=no
[ "$(sum tcopy)" = "$(sum tload)" ] && [ "$(sum tsrc)" = "$(sum tload)" ] && same=yes
read -r user sys rss < "$WORK/rusage"
awk -v c="$t1" -v c0="$t0" -v l="$t2" -v u="$user" -v s="$sys" -v r="$rss" -v same="$same" -v n="$N" 'BEGIN {
  printf "rows %d  psql COPY %.3f s  dbfixtures load %.3f s (user %.2f s, sys %.2f s, peak RSS %.1f MB)  load/COPY %.2f  identical: %s\n",
    n, c - c0, l - c, u, s, r / 1024, (l - c) / (c - c0), same }'
[ "$same" = yes ]

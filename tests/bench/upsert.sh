#!/usr/bin/env bash
# Upsert timings on the peer benchmark's schema (issue 12): 23 N rows in 4 tables with foreign
# keys, loaded three times into one database in one run:
#   first   into the empty migrated database (COPY, constraints built after the data)
#   same    the same file again: every row exists and nothing changes
#   third   a dump in which a third of the rows of every table changed
# and checks after each that the database holds exactly the file's rows.
#
#   tests/bench/upsert.sh [N] [BIN]       (default N=20000: 460,000 rows)
#
# Uses ../shared/peers (setup.sh starts its PostgreSQL on 55440 and the Django venv that
# builds the schema).
set -euo pipefail
N=${1:-20000}
BIN=$(realpath "${2:-target/release/dbfixtures}")
PEERS=$(cd "$(dirname "$0")/../../../shared/peers" && pwd)
source "$PEERS/setup.sh" >/dev/null
PY="$PEER_VENV/bin/python"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
TABLES="clients_client properties_property cleaning_jobs_cleaningjob payments_payment"
url() { echo "postgres://postgres@127.0.0.1:$PGPORT/$1"; }
fresh() { dropdb --if-exists "$1" 2>/dev/null; createdb "$1"; (cd "$PEERS/django_peer" && PEER_DB="$1" "$PY" manage.py migrate -v0); }
tables() { printf -- '--table %s ' $TABLES; }
digest() { # one md5 over every table's rows in key order
  for t in $TABLES; do psql -qXAt -d "$1" -c "SELECT md5(coalesce(string_agg(x::text, E'\n' ORDER BY x.id), '')) FROM $t x"; done | md5sum | cut -c1-32
}
timed() { # label db file
  local s e
  s=$(date +%s.%N)
  "$BIN" --database-url "$(url "$2")" load "$3" 2>"$W/err" || { cat "$W/err"; exit 2; }
  e=$(date +%s.%N)
  printf '%-7s %6.2f s   %s\n' "$1" "$(echo "$e - $s" | bc)" "$(grep -o '[0-9]* inserted.*' "$W/err" | tr '\n' ' ')"
}

fresh up_src
psql -q -v n="$N" -d up_src -f "$PEERS/gen.sql"
fresh up_dst
"$BIN" --quiet --database-url "$(url up_src)" dump $(tables) -o "$W/a.json"
rows=$(grep -c '^    {' "$W/a.json")
echo "rows: $rows"
timed first up_dst "$W/a.json"
[ "$(digest up_src)" = "$(digest up_dst)" ] || { echo "first load differs"; exit 1; }
timed same up_dst "$W/a.json"
[ "$(digest up_src)" = "$(digest up_dst)" ] || { echo "unchanged reload differs"; exit 1; }
# A third of every table's rows change (a column each that has no constraint on it).
psql -qX -d up_src -v ON_ERROR_STOP=1 <<'SQL'
UPDATE clients_client SET name = name || ' (moved)', vip = NOT vip WHERE id % 3 = 0;
UPDATE properties_property SET address = address || ' B' WHERE id % 3 = 0;
UPDATE cleaning_jobs_cleaningjob SET status = 'redone' WHERE id % 3 = 0;
UPDATE payments_payment SET amount = amount + 1 WHERE id % 3 = 0;
SQL
"$BIN" --quiet --database-url "$(url up_src)" dump $(tables) -o "$W/b.json"
timed third up_dst "$W/b.json"
[ "$(digest up_src)" = "$(digest up_dst)" ] || { echo "changed reload differs"; exit 1; }
echo "identical after each: yes"

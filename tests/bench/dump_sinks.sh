#!/usr/bin/env bash
# Where a parallel dump's time goes (issue 12): on the peer benchmark's data (23 N rows in 4
# tables), alternating runs of
#   pg_dump        plain pg_dump --data-only to a file (the reference)
#   file           dump -j 2 -o FILE (what bench.sh times)
#   devnull        dump -j 2 to stdout, sent to /dev/null: the same reads and rendering, no disk
# each with the CPU the whole machine spent meanwhile (/proc/stat: busy, iowait, and steal,
# the time the hypervisor gave our virtual CPUs to someone else), then each one's median and
# its ratio to pg_dump's median.
#
#   tests/bench/dump_sinks.sh [N] [RUNS] [BIN]     (default N=100000: 2.3 M rows; RUNS=5)
#
# Uses ../shared/peers (setup.sh starts its PostgreSQL on 55440 and the Django venv that builds
# the schema). The data is generated once and vacuumed, so every run reads the same pages.
set -euo pipefail
N=${1:-100000}
RUNS=${2:-5}
BIN=$(realpath "${3:-target/release/dbfixtures}")
PEERS=$(cd "$(dirname "$0")/../../../shared/peers" && pwd)
source "$PEERS/setup.sh" >/dev/null
W=$(mktemp -d)
DB=dbf_dump_sinks
trap 'rm -rf "$W"; dropdb --if-exists "$DB" 2>/dev/null || true' EXIT
TABLES="clients_client properties_property cleaning_jobs_cleaningjob payments_payment"
URL="postgres://postgres@127.0.0.1:$PGPORT/$DB"
dropdb --if-exists "$DB" 2>/dev/null
createdb "$DB"
(cd "$PEERS/django_peer" && PEER_DB="$DB" "$PEER_VENV/bin/python" manage.py migrate -v0)
psql -q -v n="$N" -d "$DB" -f "$PEERS/gen.sql"
psql -q -d "$DB" -c "VACUUM ANALYZE"

stat() { awk '/^cpu /{print $2+$3+$4+$7+$8, $6, $9}' /proc/stat; }
measure() { # label command...: appends "label wall busy iowait steal" (seconds) to $W/runs
  local label=$1 s e b0 w0 st0 b1 w1 st1
  shift
  read -r b0 w0 st0 < <(stat)
  s=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  e=$(date +%s.%N)
  read -r b1 w1 st1 < <(stat)
  python3 -c "print('$label', round($e - $s, 3), ($b1 - $b0) / 100, ($w1 - $w0) / 100, ($st1 - $st0) / 100)" |
    tee -a "$W/runs"
}
tables() { printf -- '--table %s ' $TABLES; }
for _ in $(seq "$RUNS"); do
  measure pg_dump pg_dump --data-only $(printf -- '-t %s ' $TABLES) -d "$DB" -f "$W/dump.sql"
  measure file "$BIN" dump -j 2 --database-url "$URL" -o "$W/dump.json" $(tables)
  measure devnull sh -c "'$BIN' dump -j 2 --database-url '$URL' $(tables) > /dev/null"
done
python3 - "$W/runs" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, *nums = line.split()
    runs.setdefault(label, []).append([float(x) for x in nums])
ref = statistics.median(r[0] for r in runs["pg_dump"])
print(f"{'':8} {'median wall':>11} {'/ pg_dump':>9} {'busy':>6} {'iowait':>6} {'steal':>6}  (medians, s)")
for label, rs in runs.items():
    med = [statistics.median(r[i] for r in rs) for i in range(4)]
    print(f"{label:8} {med[0]:11.2f} {med[0] / ref:9.2f} {med[1]:6.2f} {med[2]:6.2f} {med[3]:6.2f}")
EOF

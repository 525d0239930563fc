#!/usr/bin/env bash
# Where a write run's CPU goes, per verified submission, on this machine:
#
#   bench/write-cpu.sh sqlite|pg1|pg2 [ENTRIES=20000]
#
# pgK: K frontends on a fresh PostgreSQL database (127.0.0.1, port 5432 or
# PGPORT; dropped after) and a SeaweedFS bucket (`weed mini` on loopback,
# removed after).
# Prints the one-core P-384 ceiling (as scripts/bench.sh), the load
# generator's figures (rate, p50/p99, the servers' and its
# own CPU µs per submission), then PostgreSQL's backends' CPU µs per
# submission (sampled from /proc while the run lasts), SeaweedFS's, and
# pg_stat_database's transactions and tuples per submission. BIN (default
# target/release) holds attestlog-server and attestlog-loadgen; LOGSTMT=1
# sets log_statement = all on the database (count statements in the server
# log afterwards), TABLES=1 prints pg_stat_user_tables at the end,
# SERVER_ARGS="--batch-max-age 5" adds arguments to every server,
# CONCURRENCY=128 changes the load generator's submitters (64),
# OBJECTS=file puts the pgK objects in a folder instead (SeaweedFS still
# runs, idle), SERVER_LOG=FILE keeps the servers' and the load generator's
# standard error there (the servers log at `warn`),
# STATEMENTS=1 prints pg_stat_statements' costliest statements (a PostgreSQL
# started with shared_preload_libraries=pg_stat_statements and the
# extension created in database postgres; PGPORT picks it). Not a
# test and not part of scripts/bench.sh: a tool for the write path's
# profile (docs/performance.md).
set -euo pipefail
[[ $# -ge 1 ]] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}; MODE=$1; N=${2:-20000}
case "$MODE" in sqlite|pg[1-9]) ;; *) echo "write-cpu: MODE is sqlite or pgK" >&2; exit 2 ;; esac
W=$(mktemp -d /tmp/write-cpu.XXXXXX); PIDS=(); DB=""
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n $DB ]] && psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { # pid... -> user+system CPU time in 1/100 s
    local f=(/dev/null); for p in "$@"; do [[ -r /proc/$p/stat ]] && f+=("/proc/$p/stat"); done
    awk '{ sub(/.*\) /, ""); t += $12 + $13 } END { print t + 0 }' "${f[@]}" 2>/dev/null
}
ARGS=(); FRONTENDS=1
if [[ $MODE == pg* ]]; then
    FRONTENDS=${MODE#pg}
    DB=write_cpu_$$
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $DB"
    [[ -n ${LOGSTMT:-} ]] && psql -q -h 127.0.0.1 -U postgres -d postgres -c "ALTER DATABASE $DB SET log_statement = 'all'"
    S3=$(free_port); mkdir -p "$W/weed"
    weed mini -dir="$W/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$S3" -master.port="$(free_port)" \
        -volume.port="$(free_port)" -filer.port="$(free_port)" -admin.port="$(free_port)" \
        -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false >"$W/weed.log" 2>&1 &
    WEED=$!; PIDS+=("$WEED")
    for _ in $(seq 100); do curl -s "http://127.0.0.1:$S3/" >/dev/null && break; sleep 0.2; done
    sleep 1; curl -sf -X PUT "http://127.0.0.1:$S3/write-cpu" >/dev/null
    export AWS_ENDPOINT_URL=http://127.0.0.1:$S3 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
        AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
    OBJ=s3://write-cpu
    [[ ${OBJECTS:-s3} == file ]] && { OBJ=file://$W/objects; mkdir -p "$W/objects"; }
    ARGS=(--server-arg=--storage "--server-arg=postgres://postgres@127.0.0.1:${PGPORT:-5432}/$DB"
          --server-arg=--objects "--server-arg=$OBJ")
fi
# The server binary, not Debian's Perl wrapper: this samples while the run
# lasts, and the wrapper cost ~8% of the machine at two calls a second.
PSQL=$(ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | tail -1 || true); PSQL=${PSQL:-psql}
backends() { "$PSQL" -At -h 127.0.0.1 -U postgres -d postgres -c "SELECT pid FROM pg_stat_activity WHERE datname = '$DB'" 2>/dev/null; }
# PostgreSQL backends come and go with the servers: keep each one's latest
# CPU time (backends listed every 2 s, their CPU read every 0.5 s).
if [[ -n $DB ]]; then
    (
        declare -A last; pids=(); n=0
        while true; do
            (( n++ % 4 == 0 )) && pids=($(backends))
            files=(); for p in "${pids[@]}"; do [[ -r /proc/$p/stat ]] && files+=("/proc/$p/stat"); done
            if [[ ${#files[@]} -gt 0 ]]; then
                while read -r p t; do last[$p]=$t; done < <(awk '{ split(FILENAME, f, "/"); sub(/.*\) /, ""); print f[3], $12 + $13 }' "${files[@]}" 2>/dev/null)
            fi
            for p in "${!last[@]}"; do echo "${last[$p]}"; done >"$W/pg-ticks.tmp"
            mv "$W/pg-ticks.tmp" "$W/pg-ticks"
            sleep 0.5
        done
    ) &
    PIDS+=($!)
    WEED0=$(ticks "$WEED")
fi
# The ceiling of the same run, as scripts/bench.sh measures it: one core's
# P-384 verifies (rate by the wall clock, and CPU per verify).
taskset -c 0 "$BIN/attestlog-loadgen" p384 --seconds 3 | grep -E "p384_verify_per_s|p384_cpu_us_per_verify"
for a in ${SERVER_ARGS:-}; do ARGS+=("--server-arg=$a"); done
"$BIN/attestlog-loadgen" --dir "$W/log" "${ARGS[@]}" write --entries "$N" --concurrency "${CONCURRENCY:-64}" \
    --frontends "$FRONTENDS" >"$W/out.txt" 2>"$W/err.txt" || { cat "$W/err.txt" >&2; exit 1; }
grep -E "submissions_per_s|p50|p99|cpu_us" "$W/out.txt"
[[ -n ${SERVER_LOG:-} ]] && cp "$W/err.txt" "$SERVER_LOG"
if [[ -n $DB ]]; then
    sleep 0.6 # one more sample
    awk -v n="$N" '{ t += $1 } END { printf "postgres_cpu_us_per_submission=%.0f\n", t * 10000 / n }' "$W/pg-ticks"
    awk -v t=$(( $(ticks "$WEED") - WEED0 )) -v n="$N" 'BEGIN { printf "seaweedfs_cpu_us_per_submission=%.0f\n", t * 10000 / n }'
    psql -At -h 127.0.0.1 -U postgres -d postgres -c "SELECT 'xact_per_submission=' || round(xact_commit::numeric / $N, 3) \
        || ' tup_fetched_per_submission=' || round(tup_fetched::numeric / $N, 1) FROM pg_stat_database WHERE datname = '$DB'"
    if [[ -n ${STATEMENTS:-} ]]; then
        psql -h 127.0.0.1 -U postgres -d postgres -c "SELECT calls, round(total_exec_time) AS total_ms, \
            round((total_exec_time * 1000 / $N)::numeric, 1) AS us_per_submission, rows, \
            round(wal_bytes / $N) AS wal_b_per_sub, left(regexp_replace(query, '\s+', ' ', 'g'), 80) AS query \
            FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
            WHERE d.datname = '$DB' ORDER BY total_exec_time DESC LIMIT 20"
    fi
    if [[ -n ${TABLES:-} ]]; then
        psql -h 127.0.0.1 -U postgres -d "$DB" -c "SELECT relname, seq_scan, idx_scan, idx_tup_fetch, n_tup_ins, \
            n_tup_upd, n_tup_del FROM pg_stat_user_tables ORDER BY relname"
    fi
fi

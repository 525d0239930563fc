#!/usr/bin/env bash
# Before/after comparison of two attestlog-server binaries on this machine,
# alternated so that load from other processes hits both alike:
#
#   bench/ab.sh BIN_A BIN_B [ROUNDS=3] [WRITE_ENTRIES=10000]
#
# Each round and binary: `attestlog-loadgen write` (submissions/s and the
# server's CPU µs per submission), then wrk for 3 s each on /healthz,
# /checkpoint, a full tile and inclusion proofs against that binary serving
# one 20,000-entry log (requests/s and the server's CPU µs per request).
# CPU per request is the steadier figure on a shared machine. Build
# attestlog-loadgen first (cargo build --release -p attestlog-server --bins).
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
A=$(realpath "$1"); B=$(realpath "$2"); ROUNDS=${3:-3}; WRITES=${4:-10000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOADGEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/attestlog-loadgen
WORK=$(mktemp -d /tmp/attestlog-ab.XXXXXX)
SERVER_PID=""
trap '[[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
ENTRIES=20000
"$LOADGEN" --dir "$WORK/read" fill --entries $ENTRIES --entry-bytes 5100 >/dev/null

ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
cat >"$WORK/inclusion.lua" <<EOF
request = function()
    return wrk.format("GET", "/v1/proof/inclusion?index=" .. math.random(0, $ENTRIES - 1) .. "&tree_size=$ENTRIES")
end
EOF
printf '%-2s %-5s %9s %7s %9s %6s %9s %6s %9s %6s %9s %6s\n' bin round "submit/s" "µs" \
    "healthz/s" "µs" "ckpt/s" "µs" "tile/s" "µs" "incl/s" "µs"
for round in $(seq "$ROUNDS"); do
    for side in A B; do
        bin=$A; [[ $side == B ]] && bin=$B
        rm -rf "$WORK/write"
        out=$("$LOADGEN" --server-bin "$bin" --dir "$WORK/write" write --entries "$WRITES" 2>/dev/null)
        row=$(printf '%-2s %-5s %9s %7s' "$side" "$round" \
            "$(sed -n 's/^bench: submissions_per_s=//p' <<<"$out")" \
            "$(sed -n 's/^bench: server_cpu_us_per_submission=//p' <<<"$out")")
        "$bin" --data-dir "$WORK/read/log" --listen 127.0.0.1:0 --origin loadgen.attestlog/log \
            >"$WORK/server.log" 2>&1 &
        SERVER_PID=$!
        url=""
        for _ in $(seq 100); do
            url=$(sed -n 's/^listening on //p' "$WORK/server.log"); [[ -n $url ]] && break; sleep 0.1
        done
        for path in healthz checkpoint tile/0/010 inclusion; do
            args=(-t2 -c64 -d3s "$url/$path")
            [[ $path == inclusion ]] && args=(-t2 -c64 -d3s -s "$WORK/inclusion.lua" "$url/")
            before=$(ticks "$SERVER_PID")
            res=$(wrk "${args[@]}")
            grep -qE 'Non-2xx|Socket errors' <<<"$res" && { echo "$res" >&2; exit 1; }
            used=$(( $(ticks "$SERVER_PID") - before ))
            row+=$(awk -v t="$used" '/ requests in / { n = $1 } /^Requests\/sec:/ { r = $2 }
                END { printf " %9.0f %6.0f", r, t * 10000 / n }' <<<"$res")
        done
        kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
        echo "$row"
    done
done

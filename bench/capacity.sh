#!/usr/bin/env bash
# Write capacity under a latency bound, for issue 10's comparison of SQLite
# and PostgreSQL + S3 with several frontends, on this machine:
#
#   bench/capacity.sh [ROUNDS=3]
#
# Each round runs bench/write-cpu.sh (fresh log, fresh database and bucket,
# its own one-core P-384 ceiling) for every mode in MODES ("sqlite pg2")
# at every number of concurrent submitters in LEVELS ("64 256 384 512"),
# ENTRIES (30000) verified submissions each; the order of the runs is
# reversed every other round so that a drift of the machine falls on both
# modes alike; a run that fails (a refused submission) is printed and
# left out. A mode's capacity in a round is its highest rate among the
# runs whose p99 time to a signed checkpoint stayed within P99_MS (500,
# issue 10's bound). It prints every run, then each round's capacities and
# their ratio to the first mode's, with the CPU model. BIN as in
# write-cpu.sh. Not a test and not part of scripts/bench.sh: a run takes
# about 40 s, a round of the defaults about 5 minutes.
set -euo pipefail
ROUNDS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
read -r -a MODES <<<"${MODES:-sqlite pg2}"
read -r -a LEVELS <<<"${LEVELS:-64 256 384 512}"
ENTRIES=${ENTRIES:-30000}; P99_MS=${P99_MS:-500}
OUT=$(mktemp /tmp/capacity.XXXXXX); trap 'rm -f "$OUT"' EXIT
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs"
printf '%-5s %-7s %6s %12s %9s %9s %15s\n' round mode conc "subm/s" "p50 ms" "p99 ms" "P-384 verify/s"
RUNS=()
for c in "${LEVELS[@]}"; do for m in "${MODES[@]}"; do RUNS+=("$m $c"); done; done
for r in $(seq "$ROUNDS"); do
    order=("${RUNS[@]}")
    if (( r % 2 == 0 )); then
        order=(); for (( i = ${#RUNS[@]} - 1; i >= 0; i-- )); do order+=("${RUNS[i]}"); done
    fi
    for run in "${order[@]}"; do
        read -r m c <<<"$run"
        if ! res=$(CONCURRENCY=$c "$ROOT/bench/write-cpu.sh" "$m" "$ENTRIES" 2>&1); then
            printf '%-5s %-7s %6s  failed: %s\n' "$r" "$m" "$c" "$(grep -m1 '^Error' <<<"$res")"
            continue
        fi
        get() { sed -n "s/^bench: $1=//p" <<<"$res" | head -1; }
        rate=$(get submissions_per_s); p50=$(get submit_p50_ms); p99=$(get submit_p99_ms)
        p384=$(get p384_cpu_us_per_verify)
        ceiling=$(awk -v u="$p384" 'BEGIN { printf "%.0f", 1e6 / u }')
        printf '%-5s %-7s %6s %12s %9s %9s %15s\n' "$r" "$m" "$c" "$rate" "$p50" "$p99" "$ceiling"
        echo "$r $m $c $rate $p99 $ceiling" >>"$OUT"
    done
done
echo
echo "capacity: the highest rate with p99 <= $P99_MS ms, per round (ratio to ${MODES[0]})"
awk -v bound="$P99_MS" -v first="${MODES[0]}" '
    $5 <= bound && $4 > best[$1 " " $2] { best[$1 " " $2] = $4; at[$1 " " $2] = $3 }
    { rounds[$1] = 1; modes[$2] = 1 }
    END {
        for (r in rounds) {
            line = "round " r ":"
            for (m in modes) {
                k = r " " m; b = best[k] + 0
                ratio = (best[r " " first] > 0) ? sprintf("%.2f", b / best[r " " first]) : "-"
                line = line sprintf("  %s %d/s (c=%s, %s)", m, b, at[k], ratio)
            }
            print line
        }
    }' "$OUT" | sort

#!/usr/bin/env bash
# Measures the regression gate on this machine: how often `meshbench compare
# --gate` fails when nothing changed (A/A: two runs of the same
# configuration), and how often it catches a known regression (A/B: B adds
# service time in the server, a tenth of the sidecar row's p99 in the first
# A run, which raises that row's p99 by 10%). Runs alternate A, B, A, B...
# so that machine drift hits both alike. It also estimates the power of
# the p99, p50 and cpu rules at other regression sizes from the A runs
# (gatestats -scale). Every gate in GATES is measured on the same runs.
#
#   RUNS=8 scripts/gate-validity.sh          # DELAY=160us to fix the delay
#   RUNS=12 SIDES=a scripts/gate-validity.sh # A runs only (the history figures)
#   SIDES=a CANDIDATE=/tmp/copy/meshbench-proxy ...  # A runs with a candidate build (a copy
#                                            # of bin/meshbench-proxy: the same build) beside the
#                                            # proxy (run --candidate-binary): the paired figures
#
# The auto gate's summary also measures the history tools (compare
# --history, meshbench history) on the A runs taken as a series
# (gatestats -history).
#
# Each run is the built-in `gate` scenario (8 trials of 3 s for the
# baseline and the own sidecar, about 75 s). The results stay in OUT; the
# summary (scripts/gatestats) is printed and saved as OUT/gatestats.txt.
set -euo pipefail
RUNS=${RUNS:-8}
DELAY=${DELAY:-}
# The gates measured, each on the same runs: the fixed default and auto.
GATES=${GATES:-default auto}
SIDES=${SIDES:-a b}
CANDIDATE=${CANDIDATE:-}
# The candidate rows are the A runs' only: with B runs beside them, every
# A/B comparison would have rows missing on one side.
if [ -n "$CANDIDATE" ] && [ "$SIDES" != a ]; then
  echo "CANDIDATE= needs SIDES=a" >&2; exit 2
fi
SCALES=${SCALES:-1.05,1.1,1.2,1.25,1.3,1.5,2}
ROW=meshbench/sidecar@1000
BIN=${BIN:-bin/meshbench}
OUT=${OUT:-gate-validity-$(date -u +%Y%m%dT%H%M%SZ)}

mkdir -p "$OUT"
go build -o "$OUT/gatestats" ./scripts/gatestats # not `go run` between runs: no compiler beside them
"$BIN" scenarios show gate > "$OUT/a.yaml"
run() { # side i
  [ -e "$OUT/$1-$2/summary.txt" ] && return 0 # finished earlier: resume
  rm -rf "${OUT:?}/$1-$2"
  echo "run $1-$2 of $RUNS" >&2
  extra=()
  [ "$1" = a ] && [ -n "$CANDIDATE" ] && extra=(--candidate-binary "$CANDIDATE")
  "$BIN" run "$OUT/$1.yaml" --out "$OUT/$1-$2" ${extra[@]+"${extra[@]}"} > "$OUT/$1-$2.log" 2>&1 || { echo "run $1-$2 failed: see $OUT/$1-$2.log" >&2; exit 1; }
}
run a 1
# The delay is fixed once per OUT: resumed runs must not mix two of them.
saved=$(cat "$OUT/delay" 2>/dev/null || true)
if [ -n "$saved" ] && [ -n "$DELAY" ] && [ "$saved" != "$DELAY" ]; then
  echo "DELAY=$DELAY, but $OUT was started with $saved: use another OUT" >&2; exit 1
fi
DELAY=${DELAY:-$saved}
if [ -z "$DELAY" ]; then
  DELAY=$("$OUT/gatestats" -row "$ROW" -delay-for "$OUT/a-1")
fi
[ -n "$DELAY" ] || { echo "no delay to inject" >&2; exit 1; }
echo "$DELAY" > "$OUT/delay.tmp" && mv "$OUT/delay.tmp" "$OUT/delay"
echo "B adds $DELAY of service time per request" >&2
sed -e "s/serviceTime: 0s\$/serviceTime: $DELAY/" -e 's/^name: gate$/name: gate-regressed/' "$OUT/a.yaml" > "$OUT/b.yaml"
grep -q "serviceTime: $DELAY\$" "$OUT/b.yaml" && ! cmp -s "$OUT/a.yaml" "$OUT/b.yaml" ||
  { echo "could not inject the service time into $OUT/b.yaml" >&2; exit 1; }
for i in $(seq 1 "$RUNS"); do
  for side in $SIDES; do run "$side" "$i"; done
done
{
  echo "B: +$DELAY service time"
  for gate in $GATES; do
    echo "== gate $gate"
    history=""
    [ "$gate" = auto ] && history=-history
    [ "$gate" = auto ] && [ -n "$CANDIDATE" ] && history="$history -paired"
    "$OUT/gatestats" -gate "$gate" -row "$ROW" -scale "$SCALES" -scale-metric p99,p50,cpu $history "$OUT"
  done
} | tee "$OUT/gatestats.txt"

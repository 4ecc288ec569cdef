#!/usr/bin/env bash
# One lease of the lent GPU machine (the device tool), in the stages named on the command line:
#   build     compile pyclr._C in place for the visible GPU (MAX_JOBS=16)
#   test      the test suite's CUDA cases
#   sanitize  compute-sanitizer memcheck and racecheck on benchmarks/sanitize_case.py
#   bench     device ceilings + every benchmark, JSON and a summary table
#   examples  the examples' full modes that need no data beyond the embedded sets (or those named
#             in EXAMPLES), each under EXAMPLE_TIMEOUT seconds (480), with EXAMPLE_ARGS (none)
#             added; outputs in $OUT/examples.tar.gz (one file: the device returns at most 8)
# e.g. (device tool, carrying .whl with the POT wheel the SWD benchmark compares with):
#   bash benchmarks/gpu_session.sh build test sanitize bench
# Everything lands in $OUT (at most 8 files come back); commit the JSON under benchmarks/results/.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/pyclr-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS=16 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi

status=0
for stage in "$@"; do
  echo "=== $stage"
  case $stage in
    build)
      { time python3 setup.py -q build_ext --inplace; } >"$OUT/build.log" 2>&1 || status=1
      tail -5 "$OUT/build.log"
      python3 -m pyclr info | tee -a "$OUT/build.log" ;;
    test)
      python3 -m pytest tests -q -m "not slow" -k "cuda" -p no:cacheprovider 2>&1 | tee "$OUT/tests.log" | tail -15
      status=$((status | PIPESTATUS[0])) ;;
    sanitize)
      for tool in memcheck racecheck; do
        compute-sanitizer --tool $tool --error-exitcode 1 python3 benchmarks/sanitize_case.py \
          >"$OUT/sanitize_$tool.log" 2>&1 || status=1
        tail -3 "$OUT/sanitize_$tool.log"
      done ;;
    bench)
      python3 benchmarks/device_ceilings.py >"$OUT/ceilings.json" && cat "$OUT/ceilings.json"
      python3 -m pytest benchmarks/bench_*.py -q -p no:cacheprovider --benchmark-json="$OUT/bench.json" \
        >"$OUT/bench.log" 2>&1 || status=1
      tail -3 "$OUT/bench.log"
      python3 benchmarks/summarize.py "$OUT/bench.json" --ceilings "$OUT/ceilings.json" ;;
    examples)
      results=/tmp/pyclr-examples-out
      mkdir -p "$results"
      for name in ${EXAMPLES:-hierarchy_similarity sprites_decodability multidigit feature_suppression_sizes \
                   feature_suppression_bits local_features cross_image_clustering}; do
        echo "--- $name" | tee -a "$OUT/examples.log"
        (cd examples && timeout "${EXAMPLE_TIMEOUT:-480}" python3 "$name.py" --out "$results" ${EXAMPLE_ARGS:-}) \
          >>"$OUT/examples.log" 2>&1 || { echo "$name: failed or timed out" | tee -a "$OUT/examples.log"; status=1; }
      done
      tar czf "$OUT/examples.tar.gz" -C "$(dirname "$results")" "$(basename "$results")"
      tar tzf "$OUT/examples.tar.gz" ;;
    *) echo "unknown stage $stage"; status=1 ;;
  esac
done
exit $status

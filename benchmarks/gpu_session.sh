#!/usr/bin/env bash
# One lease of the lent GPU machine (the device tool), in the stages named on the command line:
#   build     compile pyclr._C in place for the visible GPU (MAX_JOBS=16)
#   test      the test suite's CUDA cases
#   sanitize  compute-sanitizer memcheck and racecheck (pyclr's kernels) on benchmarks/sanitize_case.py,
#             without PyTorch's caching allocator (it hides out-of-bounds accesses from memcheck)
#   bench     device ceilings + the GPU cases of every benchmark (BENCHES; BENCH_K selects cases,
#             default "not cpu"), one JSON per file so that a stopped call keeps the finished ones
#   examples  the examples' full modes that need no data beyond the embedded sets and fit a call
#             (or those named in EXAMPLES), each under EXAMPLE_TIMEOUT seconds (480), with EXAMPLE_ARGS (none)
#             added; outputs in $OUT/examples.tar.gz, rewritten after each script
# The device stops a command after 10 minutes and returns at most 8 files: run one or two stages
# per call, e.g. (device tool; carry .whl with the POT wheel the SWD benchmark compares with)
#   bash benchmarks/gpu_session.sh build test        then   bash benchmarks/gpu_session.sh build sanitize
#   bash benchmarks/gpu_session.sh build bench       (build is a no-op when the machine is still warm)
# and commit the JSON under benchmarks/results/. On the CPU: BENCHES="... render" BENCH_K=cpu.
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
      # the log comes back only when the build fails: a call returns at most 8 files
      { time python3 setup.py -q build_ext --inplace; } >/tmp/pyclr-build.log 2>&1 \
        || { status=1; cp /tmp/pyclr-build.log "$OUT/build.log"; }
      tail -5 /tmp/pyclr-build.log
      python3 -m pyclr info ;;
    test)
      python3 -m pytest tests -q -m "not slow" -k "cuda" -p no:cacheprovider 2>&1 | tee "$OUT/tests.log" | tail -15
      status=$((status | PIPESTATUS[0])) ;;
    sanitize)
      # racecheck on pyclr's kernels only: PyTorch's and CUB's own are not ours to fix
      filter=""
      compute-sanitizer --help 2>&1 | grep -q -- "--kernel-name" && filter="--kernel-name kns=pyclr"
      for tool in memcheck racecheck; do
        PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool $tool $([ $tool = racecheck ] && echo "$filter") \
          --error-exitcode 1 python3 benchmarks/sanitize_case.py >"$OUT/sanitize_$tool.log" 2>&1 || status=1
        tail -3 "$OUT/sanitize_$tool.log"
      done ;;
    bench)
      python3 benchmarks/device_ceilings.py >"$OUT/ceilings.json" && cat "$OUT/ceilings.json"
      for name in ${BENCHES:-ntxent swd generalized kmeans augment train}; do
        echo "--- bench_$name" | tee -a "$OUT/bench.log"
        python3 -m pytest "benchmarks/bench_$name.py" -q -p no:cacheprovider -k "${BENCH_K:-not cpu}" \
          --benchmark-json="$OUT/bench_$name.json" >>"$OUT/bench.log" 2>&1 || status=1
        python3 benchmarks/summarize.py "$OUT/bench_$name.json" --ceilings "$OUT/ceilings.json" | tee -a "$OUT/bench.log"
      done ;;
    examples)
      results=/tmp/pyclr-examples-out
      mkdir -p "$results"
      # Resuming: the scripts that train several models write each finished one at once to
      # $results/NAME.partial.json (and delete it once NAME.json is written); a rerun reuses it.
      # EXAMPLES_RESUME names a folder (e.g. examples/results/partial) whose NAME.partial.json,
      # from calls or sessions before, are copied in first; one already here (an earlier call on
      # this warm machine) is newer and is kept.
      for log in ${EXAMPLES_RESUME:+"$EXAMPLES_RESUME"/*.partial.json}; do
        [ -e "$log" ] || continue
        if [ -e "$results/$(basename "$log")" ]; then
          echo "resume: $(basename "$log") already in $results (kept)" | tee -a "$OUT/examples.log"
        else
          cp "$log" "$results/" && echo "resume: $log" | tee -a "$OUT/examples.log"
        fi
      done
      # the tarball (results, figures and run logs) is replaced whole, after each script and every
      # 30 s while one runs, so that a call the device stops still brings back the finished units
      pack() {
        tar czf "$OUT/.examples.tar.gz" -C "$(dirname "$results")" "$(basename "$results")" 2>/dev/null
        [ $? -le 1 ] && mv -f "$OUT/.examples.tar.gz" "$OUT/examples.tar.gz"  # 1: a file changed while read
      }
      # default: the full modes estimated to fit a call (a CPU smoke run of every full mode,
      # shrunk, ran to the end); multidigit, feature_suppression_sizes and sprites_decodability
      # train 20+ models: they need more than one call, resumed as above
      for name in ${EXAMPLES:-hierarchy_similarity feature_suppression_bits local_features cross_image_clustering}; do
        echo "--- $name" | tee -a "$OUT/examples.log"
        (cd examples && exec timeout "${EXAMPLE_TIMEOUT:-480}" python3 "$name.py" --out "$results" ${EXAMPLE_ARGS:-}) \
          >>"$OUT/examples.log" 2>&1 &
        pid=$! packed=$SECONDS
        while kill -0 "$pid" 2>/dev/null; do
          sleep 1
          if ((SECONDS - packed >= 30)); then pack; packed=$SECONDS; fi
        done
        wait "$pid" || { echo "$name: failed or timed out" | tee -a "$OUT/examples.log"; status=1; }
        pack
      done
      tar tzf "$OUT/examples.tar.gz" ;;
    *) echo "unknown stage $stage"; status=1 ;;
  esac
done
exit $status

#!/usr/bin/env bash
# One lease of the lent GPU machine (the device tool), in the stages named on the command line:
#   build     compile pyclr._C in place for the visible GPU (MAX_JOBS=16)
#   test      the test suite's CUDA cases
#   sanitize  compute-sanitizer memcheck and racecheck (SANITIZE_TOOLS; racecheck on pyclr's kernels)
#             on benchmarks/sanitize_case.py, without PyTorch's caching allocator (it hides
#             out-of-bounds accesses from memcheck)
#   bench     device ceilings + the GPU cases of every benchmark (BENCHES; BENCH_K selects cases,
#             default "not cpu"), one JSON per file so that a stopped call keeps the finished ones
#   examples  the examples' full modes that need no data beyond the embedded sets and fit a call
#             (or those named in EXAMPLES), each under EXAMPLE_TIMEOUT seconds (480), with EXAMPLE_ARGS (none)
#             added, resuming from EXAMPLES_RESUME (see examples/README.md); outputs in
#             $OUT/examples.tar.gz, rewritten after each script and every 30 s
#   plan      the whole lease in ONE call: the steps of PLAN_STEPS (default below) in priority
#             order, each stopped at what is left of PLAN_SECONDS (540: a call may run 600 s) or
#             after PLAN_STEP_MAX seconds (300: a hung step leaves time for the rest),
#             everything they write packed into $OUT/session.tar.gz after each step and a line
#             per step (status, seconds) in $OUT/plan.txt
# A session has 15 minutes of device time in all (a machine's start included) and a call at most
# 10 and 8 returned files, so the first GPU session should spend its lease on one call:
#   bash benchmarks/fetch_wheels.sh          (here: POT, faiss-cpu, hsluv, mlxtend into .whl/)
#   bash benchmarks/gpu_session.sh plan      (device tool, timeout_s 600, carry [".whl"])
# then unpack session.tar.gz and commit its JSON under benchmarks/results/. Stages one by one
# (build is a no-op on a warm machine): bash benchmarks/gpu_session.sh build bench.
# On the CPU: BENCH_K=cpu (bench_render.py's cases carry no "cpu" in their ids: run it with pytest).
set -uo pipefail
if (($# == 0)) || [[ "$1" == -h || "$1" == --help ]]; then  # the comment above is the usage
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0
fi
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/pyclr-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS=16 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -z "${PYCLR_WHEELS_IN:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then  # once, not per plan step
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site PYCLR_WHEELS_IN=1
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
      # not tests/emulation (the CPU emulator runs all of tests/losses and tests/cluster again,
      # minutes) nor tests/test_setup.py (C++ rebuilds): their names say cuda, their work is the CPU's
      python3 -m pytest tests -q -m "not slow" -k "cuda" --ignore=tests/emulation --ignore=tests/test_setup.py \
        -p no:cacheprovider 2>&1 | tee "$OUT/tests.log" | tail -15
      status=$((status | PIPESTATUS[0])) ;;
    sanitize)
      # racecheck on pyclr's kernels only: PyTorch's and CUB's own are not ours to fix
      filter=""
      compute-sanitizer --help 2>&1 | grep -q -- "--kernel-name" && filter="--kernel-name kns=pyclr"
      for tool in ${SANITIZE_TOOLS:-memcheck racecheck}; do
        PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool $tool $([ $tool = racecheck ] && echo "$filter") \
          --error-exitcode 1 python3 benchmarks/sanitize_case.py >"$OUT/sanitize_$tool.log" 2>&1 || status=1
        tail -3 "$OUT/sanitize_$tool.log"
      done ;;
    bench)
      [ -s "$OUT/ceilings.json" ] || python3 benchmarks/device_ceilings.py >"$OUT/ceilings.json"
      cat "$OUT/ceilings.json"
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
    plan)
      # Priority order: nothing else means anything if the build or the tests fail; memcheck
      # next (cheap, finds what tests miss), then the benchmarks each issue's targets name,
      # racecheck (slow) last. A step that outlives its limit is stopped (rc 124) and the
      # plan goes on while 30 s are left; a failed build ends it.
      real_out=$OUT work=/tmp/pyclr-session
      rm -rf "$work" && mkdir -p "$work"
      deadline=$((SECONDS + ${PLAN_SECONDS:-540}))
      for step in ${PLAN_STEPS:-build test sanitize:memcheck bench:ntxent bench:kmeans bench:swd \
                   bench:generalized bench:augment bench:train sanitize:racecheck}; do
        left=$((deadline - SECONDS)) name=${step%%:*} arg=""
        [ "$name" != "$step" ] && arg=${step#*:}
        if ((left < 30)); then
          echo "$step: skipped, ${left} s left" | tee -a "$real_out/plan.txt"; continue
        fi
        started=$SECONDS limit=$((left < ${PLAN_STEP_MAX:-300} ? left : ${PLAN_STEP_MAX:-300}))
        OUT=$work BENCHES=${arg:-${BENCHES:-ntxent swd generalized kmeans augment train}} \
          SANITIZE_TOOLS=${arg:-${SANITIZE_TOOLS:-memcheck racecheck}} EXAMPLES=${arg:-${EXAMPLES:-}} \
          timeout -k 10 "$limit" bash "$0" "$name"
        rc=$?
        echo "$step: rc $rc$( ((rc == 124 || rc == 137)) && echo " (stopped after $limit s)"), $((SECONDS - started)) s" \
          | tee -a "$real_out/plan.txt"
        ((rc == 0)) || status=1
        tar czf "$real_out/.session.tar.gz" -C "$work" . && mv -f "$real_out/.session.tar.gz" "$real_out/session.tar.gz"
        if [ "$name" = build ] && ((rc != 0)); then echo "build failed: plan ends" | tee -a "$real_out/plan.txt"; break; fi
      done
      OUT=$real_out ;;
    *) echo "unknown stage $stage"; status=1 ;;
  esac
done
exit $status

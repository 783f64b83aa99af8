#!/usr/bin/env bash
# Every GPU check of the performance issue in one run: the GPU tests, then the benchmark in float16 at 512×512 and
# 30 steps (eager, channels-last, torch.compile; memory per cell for the automatic batch bound), logs into $OUT.
# diffusers and transformers may come as wheels in .whl/ (for a machine without them or without a network).
#
#     OUT=/tmp/gpu bash benchmarks/gpu_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site || exit 1
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
} 2>&1 | tee "$OUT/env.txt"
timeout 80 python3 -m pytest -m gpu tests/test_comparison.py -q -s -p no:cacheprovider 2>&1 | tee "$OUT/pytest.txt"
timeout 45 python3 benchmarks/bench_compare.py --model embedded --size 256 --steps 20 --repeats 3 --calibrate \
    --json "$OUT/embedded.json" 2>&1 | tee "$OUT/embedded.md"
timeout 250 python3 benchmarks/bench_compare.py --model sd15-arch --size 512 --steps 30 --repeats 5 --dtype fp16 \
    --layouts eager,channels-last,compile --calibrate --json "$OUT/sd15.json" 2>&1 | tee "$OUT/sd15.md"

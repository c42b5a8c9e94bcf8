#!/usr/bin/env bash
# The speed issue's GPU check in one call on a lent NVIDIA machine (no network there; 15 minutes
# of device time in all). MLX's CUDA wheel travels in two halves, sent back to back:
#   here:    bash ../shared/gpu/prepare.sh
#   device:  run(carry=[".gpu/a"], command="mkdir -p /tmp/gpu && cp .gpu/a/cuda.part0 /tmp/gpu/")
#            run(carry=[".gpu/b"], timeout_s=600, command="source .gpu/b/install.sh && bash benchmarks/gpu.sh")
# It writes under $OUT (./gpu-out elsewhere): gpu.txt (the card), tests.log (the suite on MLX's
# CUDA backend; the machine's torch, the oracle, is its own build, not 2.13) and losses.md
# (python -m lossfn.bench losses, MLX CUDA against torch CUDA on the same card). Each step has
# its own time limit, so that one slow step leaves the others their time.
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; python3 -c "import mlx.core as mx, torch; print('mlx', mx.__version__, mx.default_device(), '| torch', torch.__version__)"; } 2>&1 | tee "$out/gpu.txt"
# The notebooks need a Jupyter kernel and the distributed tests mlx.launch: neither is there.
timeout "${GPU_TESTS_S:-270}" python3 -m pytest -q -rfE -p no:cacheprovider \
    --ignore=tests/test_notebooks.py --ignore=tests/test_distributed.py tests > "$out/tests.log" 2>&1
echo "tests: exit $?"; tail -n 25 "$out/tests.log"
timeout "${GPU_BENCH_S:-240}" python3 -m lossfn.bench losses --budget 2 --repeats 9 --no-sum > "$out/losses.md" 2>&1
echo "losses: exit $?"; grep -E "^(mlx|values|median|\| case|\| [a-z])" "$out/losses.md" | head -n 80

#!/bin/bash
# One lent-GPU session in one command: the CUDA benchmark and the CUDA checks, results in $OUT.
#
# The device machine has PyTorch but not PyAV, kornia, Hydra or scikit-video: bring them as
# wheels for its Python (3.12) in .whl/ (ignored by git), prepared here once with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#     av==18.1.0 kornia==0.9.0 kornia_rs==0.2.0 hydra-core==1.3.8 omegaconf==2.3.1
#   python3 -m pip download --no-deps -d .whl scikit-video==1.1.11
#   python3 -m pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3   # sdist only: built here
# then call the device tool with carry [".whl"] and the command `bash tools/gpu_session.sh`
# (its two steps time out after 150 and 330 s).  Back in $OUT: nvidia-smi.txt, bench_cuda.json,
# gpu_check.json, session.log and logs.tar.gz (every command's own log).
set -u -o pipefail
OUT=${OUT:-runs/gpu_session}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
{
  nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
} > "$OUT/nvidia-smi.txt" 2>&1
{
  echo "== benchmark --cuda"
  timeout 150 python3 tools/benchmark.py --cuda --out "$OUT/bench_cuda.json"
  echo "== gpu_check"
  timeout 330 python3 tools/gpu_check.py --out "$OUT/gpu_check.json" --work /tmp/v2v_gpu_check
} 2>&1 | tee "$OUT/session.log"
tar -czf "$OUT/logs.tar.gz" -C /tmp/v2v_gpu_check logs train/framewise/train.log train/temporal/train.log 2>/dev/null
exit 0

#!/usr/bin/env bash
# The GPU run, in one device session (~6-8 min; budget 10): the CUDA tests, the PyTorch MLP batching
# benchmark and the transformers classifier on the GPU. Results land in $OUT (the device tool brings
# them back); a summary line per step is in $OUT/summary.txt.
#
# Prepare HERE first:   echo /.whl/ >> .git/info/exclude && bash benchmarks/gpu_wheels.sh
# Then, with the device tool:   run(command="bash benchmarks/gpu_run.sh", carry=[".whl"], timeout_s=600)
# Not run yet: no task so far was lent a GPU. Record what it prints in README ("GPU run").
set -u
OUT=${OUT:-$PWD/gpu-results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=python3  # the device image's Python, the one with CUDA PyTorch
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    > "$OUT/pip.log" 2>&1 || { echo "wheel install failed, see pip.log" | tee -a "$OUT/summary.txt"; exit 1; }
  export PATH="/tmp/site/bin:$PATH"
fi
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"  # this tree first: the workers inherit it

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, note the outcome
  local name=$1 limit=$2; shift 2
  local started=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: rc=$rc in $((SECONDS - started)) s" | tee -a "$OUT/summary.txt"
}

{ nvidia-smi; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
  > "$OUT/device.txt" 2>&1
step pytest-gpu 150 $PY -m pytest -p no:cacheprovider -m gpu -q tests/integration/test_gpu_cuda.py
step bench-gpu-mlp 170 $PY -m benchmarks.gpu --out "$OUT/gpu-mlp.json"
step bench-gpu-transformers 170 $PY -m benchmarks.flavors_bench --gpu --out "$OUT/gpu-transformers.json"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv >> "$OUT/device.txt" 2>&1
tail -n 15 "$OUT"/bench-gpu-*.log

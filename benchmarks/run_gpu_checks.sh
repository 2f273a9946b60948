#!/usr/bin/env bash
# What was run on a lent GPU machine (see benchmarks/RESULTS.md): the CUDA tests, then the CUDA benchmark.
# Expects the libraries built beside the package (pip install -e . --no-build-isolation, or carried in) and
# writes logs under ${OUT:-benchmarks/out}.
set -uo pipefail
out=${OUT:-benchmarks/out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, qsparse; print(torch.__version__, torch.cuda.get_device_name(0), qsparse._lib.cuda())"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py "$@" 2>&1 | tee "$out/test_cuda.log"
python3 benchmarks/bench_cuda.py --json "$out/bench_cuda.json" 2>&1 | tee "$out/bench_cuda.log"

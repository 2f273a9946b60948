#!/usr/bin/env bash
# Nsight Compute reports of the main CUDA kernel shapes (what was run on a lent GPU; see benchmarks/RESULTS.md).
set -uo pipefail
out=${OUT:-benchmarks/out}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
sections="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section InstructionStats --section MemoryWorkloadAnalysis"
while read -r name fmt group dtype; do
  [ -z "$name" ] && continue
  "$ncu_bin" --kernel-name regex:"qs_" --launch-skip 2 --launch-count 1 $sections \
    python3 benchmarks/profile_cuda.py "$fmt" "$group" "$dtype" > "$out/ncu_$name.txt" 2>&1
  echo "== $name"; grep -E "qs_|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Achieved Occupancy|Theoretical Occupancy|Registers Per|Executed Ipc A|Issue Slots Busy|Block Limit Reg|One or More|No Eligible|Warp Cycles Per Issued|Executed Instructions  " "$out/ncu_$name.txt" | head -20
done <<'CASES'
asym_g32 int4_asym 32 bfloat16
int4_g128 int4 128 float32
int4_row int4 row float32
fp16_bf16 fp16 none bfloat16
bfp8 bfp8 none float32
nm24 nm 2:4 float32
mag_row magnitude row float32
CASES

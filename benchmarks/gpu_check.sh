#!/usr/bin/env bash
# Benchmark (s): what needs a CUDA GPU (CI has none): the loss tests on CUDA, issue 14's goal of one
# `standard` step on both real CTs in <= 60 s (real_ct_base.py with its step strategies), same-seed
# repeatability on CUDA, a torchrun (NCCL) training, the step-cost ratios on CUDA, and the wider network
# that the README suggests for GPUs. Parts run in the order given, each under its own time limit; one
# that fails or runs out of time is logged and the next runs. One log per part lands in LOGS (tables,
# the seconds and per-iteration metrics of each run); bundles and predictions in WORK.
# Sizes on an H200 (RESULTS.md (s)): environment 27 s, cuda_tests 24 s, same_seed 88 s, torchrun_nccl
# 28 s; real_ct_step about 7 min (base 61 s, each step 52-55 s, each scoring `ciss segment` about 20 s);
# step_cost about 3 min at 100 iterations for five rows (seven since the uniform rows). Fifteen minutes
# of device time hold about half of the parts: pick with PARTS.
# Usage: [PARTS=environment,cuda_tests,…] bash benchmarks/gpu_check.sh LOGS [WORK]
#        (CISS_DATA: a folder with ct/ts_abdpelvis and ct/chest_4x)
set -uo pipefail
cd "$(dirname "$0")/.."
logs="${1:?usage: gpu_check.sh LOGS [WORK]}"
work="${2:-$logs/work}"
data="${CISS_DATA:-../shared/data}"
parts="${PARTS:-environment,cuda_tests,real_ct_step,same_seed,torchrun_nccl,step_cost,wide_network}"
mkdir -p "$logs" "$work"
py="${PYTHON:-python3}"

part() {
  local name=$1 limit=$2 began=$SECONDS
  shift 2
  [[ ",$parts," == *",$name,"* ]] || return 0
  echo "== $name (limit ${limit} s)"
  timeout "$limit" "$@" >"$logs/$name.log" 2>&1
  echo "== $name: exit $? after $((SECONDS - began)) s"
  tail -n 30 "$logs/$name.log"
}

# Wall-clock seconds of every run of a real_ct_base.py folder, the metrics its history recorded, its scores so far.
run_costs="grep -H . \$0/*.seconds; for h in \$0/*/versions/*/docs/history.json; do echo \$h; $py -c 'import json, sys; print(json.load(open(sys.argv[1]))[-1][\"metrics\"])' \$h; done; cat \$0/real_ct_base.json"

part environment 60 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; $py -c 'import torch, monai; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), monai.__version__)'"
part cuda_tests 150 "$py" -m pytest -q -p no:cacheprovider -rs Testing/engine/losses/test_autocast_and_devices.py Testing/engine/test_precision.py
part same_seed 150 "$py" benchmarks/same_seed.py --output "$work/same_seed" --iterations 50
part real_ct_step 540 bash -c "$py benchmarks/real_ct_base.py -o $work/real_ct --runs both --step --step-strategies pcdd,mib; $run_costs" "$work/real_ct"
part torchrun_nccl 120 bash -c "OMP_NUM_THREADS=8 $py -m torch.distributed.run --standalone --nproc_per_node 1 -m ciss_engine train \
  -i $data/ct/ts_abdpelvis/image.nii.gz -l $data/ct/ts_abdpelvis/label_seg8.nii.gz --organs spleen=1,kidney_right=2,kidney_left=3,gallbladder=4 \
  --other-labels background -o $work/torchrun --iterations 100 --progress jsonl | tail -n 3 && $py -m ciss_engine verify -b $work/torchrun"
part step_cost 240 "$py" benchmarks/step_cost.py --iterations 100 --output "$work/step_cost"
part wide_network 540 bash -c "$py benchmarks/real_ct_base.py -o $work/wide --runs both,ts_abdpelvis,chest_4x -- --init-filters 16 --patch-size 64; $run_costs" "$work/wide"

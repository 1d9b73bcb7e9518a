#!/usr/bin/env bash
# The GPU and many-core check of dessim's step-time model (docs/VALIDATION.md), as one run:
#   1. GPU, NCCL, one rank on one GPU (NCCL refuses two ranks on one GPU, so PS, which needs a server rank,
#      is left out): calibrate the h200 preset, then validate every model with des, des-rs, des-a2a and dp,
#      and the extreme classifier with mp-fc and mp-fc-knn, uncalibrated and calibrated, with the breakdown;
#   2. CPU, gloo, ranks <= cores: calibrate at 1, 2, 4 and 8 ranks, then the default grid at 1, 2, 4 and 8
#      workers (PS adds half as many servers: at most 12 ranks), and the same grid's per-op data at the
#      held-out batch sizes 256 and 4096 (what a later fit can use).
# Every step has its own time limit, so the whole run ends within about 8 minutes; each writes its output
# under OUT as it ends. Without a GPU (nvidia-smi absent) part 1 is skipped.
#
#   bash benchmarks/device_check.sh OUT          (QUICK=1: a small grid, to try the script anywhere)
set -u
out=${1:?usage: device_check.sh OUT}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
dessim=("$python" -c 'import sys; from simulator.cli import main; main(sys.argv[1:])')
if [ "${QUICK:-0}" = 1 ]; then models=lr,dlrm; worlds=1,2; heldout=1; cpu_steps=3; else
  models=lr,fm,widedeep,deepfm,dlrm; worlds=1,2,4,8; heldout=1,2,4; cpu_steps=6; fi

step() {  # step NAME LIMIT_S ARGS...: one dessim command, its output in OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS
  timeout "$limit" "${dessim[@]}" "$@" > "$out/$name.log" 2>&1
  echo "== $name: exit $? in $((SECONDS - started)) s"
  grep -E "error|bytes error|wrote|ranks:" "$out/$name.log" | tail -6
}

{ uname -a; nproc; "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
  nvidia-smi -L 2>/dev/null; } > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

if command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
  step gpu_calibrate 120 calibrate --backend nccl --worlds 1 --device h200 --out "$out/gpu_profile.json"
  step gpu_validate_preset 90 validate --backend nccl --device h200 --worlds 1 --models "$models" \
    --strategies des,des-rs,des-a2a,dp --out "$out/gpu_val_preset.csv"
  step gpu_validate 90 validate --backend nccl --device h200 --worlds 1 --profile "$out/gpu_profile.json" \
    --models "$models" --strategies des,des-rs,des-a2a,dp --breakdown --out "$out/gpu_val.csv"
  step gpu_validate_xc 60 validate --backend nccl --device h200 --worlds 1 --profile "$out/gpu_profile.json" \
    --models xc --strategies mp-fc,mp-fc-knn --breakdown --out "$out/gpu_val_xc.csv"
fi

step cpu_calibrate 120 calibrate --worlds "$worlds" --out "$out/cpu_profile.json"
step cpu_validate 150 validate --profile "$out/cpu_profile.json" --worlds "$worlds" --models "$models" \
  --steps "$cpu_steps" --breakdown --out "$out/cpu_val.csv"
for batch in 256 4096; do
  step "cpu_validate_b$batch" 60 validate --profile "$out/cpu_profile.json" --worlds "$heldout" --models "$models" \
    --steps "$cpu_steps" --batch "$batch" --out "$out/cpu_val_b$batch.csv"
done

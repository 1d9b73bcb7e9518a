#!/usr/bin/env bash
# The GPU and many-core check of dessim's step-time model (docs/VALIDATION.md), as one run (~5 minutes):
#   1. GPU, NCCL, one rank on one GPU (NCCL refuses two ranks on one GPU, so PS, which needs a server rank,
#      is left out): calibrate the h200 preset (microbenchmarks, then executor steps at batch 256 and 4096),
#      then validate every model with des, des-rs, des-a2a and dp at batch 1024 (held out), uncalibrated and
#      calibrated, and the extreme classifier with mp-fc and mp-fc-knn, with the breakdown;
#   2. CPU, gloo, ranks <= cores: the same calibration and validation at 8 workers (PS: 12 ranks).
# Every step has its own time limit; each writes its output under OUT as it ends, and OUT/all.tgz packs
# them (a device run brings back few files). Without a GPU (nvidia-smi absent) part 1 is skipped.
#
#   bash benchmarks/device_check.sh OUT          (QUICK=1: a small grid, to try the script anywhere)
set -u
out=${1:?usage: device_check.sh OUT}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
dessim=("$python" -c 'import sys; from simulator.cli import main; main(sys.argv[1:])')
if [ "${QUICK:-0}" = 1 ]; then models=lr,dlrm; cpu_worlds=2; fit_models=lr,dlrm; steps=3; else
  models=lr,fm,widedeep,deepfm,dlrm; cpu_worlds=8; fit_models=lr,dlrm,deepfm; steps=6; fi
repeats=${REPEATS:-2}  # passes per executor run (an idle machine needs fewer than the default 5 of a shared one)

step() {  # step NAME LIMIT_S ARGS...: one dessim command, its output in OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS
  timeout "$limit" "${dessim[@]}" "$@" > "$out/$name.log" 2>&1
  echo "== $name: exit $? in $((SECONDS - started)) s"
  grep -E "bytes error|error:|wrote|workers:" "$out/$name.log" | cut -c1-200 | tail -4
}

{ uname -a; nproc; "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
  nvidia-smi -L 2>/dev/null; } > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

if command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
  step gpu_calibrate 150 calibrate --backend nccl --repeats "$repeats" --worlds 1 --device h200 --models "$fit_models" \
    --out "$out/gpu_profile.json"
  step gpu_validate_preset 60 validate --backend nccl --repeats "$repeats" --device h200 --worlds 1 --models "$models" \
    --strategies des,des-rs,des-a2a,dp --out "$out/gpu_val_preset.csv"
  step gpu_validate 60 validate --backend nccl --repeats "$repeats" --device h200 --worlds 1 --profile "$out/gpu_profile.json" \
    --models "$models" --strategies des,des-rs,des-a2a,dp --breakdown --out "$out/gpu_val.csv"
  step gpu_validate_xc 45 validate --backend nccl --repeats "$repeats" --device h200 --worlds 1 --profile "$out/gpu_profile.json" \
    --models xc --strategies mp-fc,mp-fc-knn --breakdown --out "$out/gpu_val_xc.csv"
fi

step cpu_calibrate 150 calibrate --repeats "$repeats" --worlds "$cpu_worlds" --models "$fit_models" --out "$out/cpu_profile.json"
step cpu_validate 120 validate --repeats "$repeats" --profile "$out/cpu_profile.json" --worlds "$cpu_worlds" --models "$models" \
  --steps "$steps" --breakdown --out "$out/cpu_val.csv"
(cd "$out" && tar czf all.tgz --exclude all.tgz .)

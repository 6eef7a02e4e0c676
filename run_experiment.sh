#!/usr/bin/env bash
# Run a command once per fold (1..4), appending --fold K.
#   ./run_experiment.sh NAME "python train.py --model models/vgg_gap_spec1_1.py --spec_dir specs_train_v1" [N_GPUS]
# With GPUs, fold K runs on GPU (K-1) mod N_GPUS (CUDA_VISIBLE_DEVICES), all folds at once; without GPUs
# (N_GPUS=0, the default when nvidia-smi finds none) the folds run one after another on the CPU.
# Each fold logs to <exp_root>/logs/NAME_fold<K>.log. Exits non-zero naming the folds that failed.
set -euo pipefail

if [ $# -lt 2 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
name=$1
cmd=$2
if [ $# -ge 3 ]; then
    n_gpus=$3
elif command -v nvidia-smi >/dev/null 2>&1; then
    n_gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
else
    n_gpus=0
fi
folds=${FSDTAG_FOLDS:-1 2 3 4}
log_dir=${FSDTAG_EXP_ROOT:-experiments}/logs
mkdir -p "$log_dir"

declare -A pids
failed=()
for k in $folds; do
    log="$log_dir/${name}_fold${k}.log"
    if [ "$n_gpus" -gt 0 ]; then
        gpu=$(( (k - 1) % n_gpus ))
        echo "CUDA_VISIBLE_DEVICES=$gpu $cmd --fold $k  (log: $log)"
        CUDA_VISIBLE_DEVICES=$gpu bash -c "$cmd --fold $k" >"$log" 2>&1 &
        pids[$k]=$!
    else
        echo "$cmd --fold $k  (cpu; log: $log)"
        if ! CUDA_VISIBLE_DEVICES="" bash -c "$cmd --fold $k" >"$log" 2>&1; then
            failed+=("$k")
            tail -n 3 "$log" >&2
        fi
    fi
done
for k in "${!pids[@]}"; do
    if ! wait "${pids[$k]}"; then
        failed+=("$k")
        tail -n 3 "$log_dir/${name}_fold${k}.log" >&2
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "run_experiment.sh $name: fold(s) ${failed[*]} failed; see $log_dir/${name}_fold<K>.log" >&2
    exit 1
fi
echo "run_experiment.sh $name: all folds finished"

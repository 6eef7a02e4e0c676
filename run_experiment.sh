#!/usr/bin/env bash
# Run a training command for each fold of the data root (1..K, K from its folds.csv), appending --fold K.
#   ./run_experiment.sh NAME "python train.py --model models/vgg_gap_spec1_1.py --spec_dir specs_train_v1" [N_GPUS]
# With one GPU, one process trains all folds together (--fold 1 2 3 4: one CUDA context, one store of the
# spectrograms, no time-slicing between processes; a fold that fails fails them all); FSDTAG_FOLD_SHARING=0 runs
# them one after another instead.
# With N > 1 GPUs, fold K runs on GPU (K-1) mod N (CUDA_VISIBLE_DEVICES): the GPUs work in parallel, folds sharing
# a GPU one after another. Without GPUs (N_GPUS=0, the default when nvidia-smi finds none) the folds share the CPU:
# FSDTAG_CPU_JOBS folds at a time (default: one per core, at most 4), each told --threads <cores / jobs>, which
# beats one fold at a time on every core (2 cores, 2 demo folds: 32 s side by side on one thread each, 50 s one
# after another on two: torch's import and the single-threaded parts overlap); FSDTAG_FOLD_SHARING=1 makes it one
# process on every core. Each fold logs to ${FSDTAG_EXP_ROOT:-experiments}/logs/NAME_fold<K>.log (folds trained
# together write their shared output to each); FSDTAG_FOLDS picks other folds ("1 3"). A resumed fold appends to
# its log. Exits non-zero naming the folds that failed; Ctrl-C or SIGTERM stops every running fold at once.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
if [ $# -ge 1 ] && { [ "$1" = "-h" ] || [ "$1" = "--help" ]; }; then usage; exit 0; fi
if [ $# -lt 2 ]; then usage >&2; exit 2; fi
name=$1
cmd=$2
if [ $# -ge 3 ]; then
    n_gpus=$3
elif command -v nvidia-smi >/dev/null 2>&1; then
    n_gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
else
    n_gpus=0
fi
if [ -z "${FSDTAG_FOLDS:-}" ]; then  # the command names its data root (flag, env or default): it lists the folds
    FSDTAG_FOLDS=$(bash -c "$cmd --list_folds") || { echo "run_experiment.sh $name: cannot list the folds" >&2; exit 2; }
fi
folds=$FSDTAG_FOLDS
log_dir=${FSDTAG_EXP_ROOT:-experiments}/logs
mkdir -p "$log_dir"
status_dir=$(mktemp -d)
trap 'rm -rf "$status_dir"' EXIT
# Folds run in the background and the script waits for them, because bash runs a trap only once the foreground
# command has ended: a fold in the foreground would finish (and the next start) before the signal is acted on.
stop() {
    trap '' INT TERM  # the kill below reaches this shell too
    echo "run_experiment.sh $name: $1, stopping all folds" >&2
    kill -TERM 0 2>/dev/null || true
    wait || true
    exit "$2"
}
trap 'stop interrupted 130' INT
trap 'stop terminated 143' TERM

run_fold() {  # run_fold K GPU ('' for the CPU) [EXTRA ARGS]; records the exit status of fold K
    local k=$1 gpu=$2 args="--fold $1${3:+ $3}" log="$log_dir/${name}_fold$1.log" rc=0
    echo "CUDA_VISIBLE_DEVICES=$gpu $cmd $args  (log: $log)"
    echo "=== $(date '+%Y-%m-%d %H:%M:%S') $name fold $k: $cmd $args" >>"$log"
    CUDA_VISIBLE_DEVICES=$gpu bash -c "$cmd $args" >>"$log" 2>&1 || rc=$?
    echo "$rc" >"$status_dir/$k"
    if [ "$rc" -ne 0 ]; then tail -n 3 "$log" >&2; fi
}

run_together() {  # run_together GPU ('' for the CPU) [EXTRA ARGS]: every fold in one process
    local args="--fold $folds${2:+ $2}" logs=() k rc=0
    for k in $folds; do
        logs+=("$log_dir/${name}_fold$k.log")
        echo "=== $(date '+%Y-%m-%d %H:%M:%S') $name fold $k (folds $folds in one process): $cmd $args" >>"${logs[-1]}"
    done
    echo "CUDA_VISIBLE_DEVICES=$1 $cmd $args  (logs: ${logs[*]})"
    CUDA_VISIBLE_DEVICES=$1 bash -c "$cmd $args" 2>&1 | tee -a "${logs[@]}" >/dev/null || rc=$?
    for k in $folds; do echo "$rc" >"$status_dir/$k"; done
    if [ "$rc" -ne 0 ]; then tail -n 3 "${logs[0]}" >&2; fi
}

sharing=${FSDTAG_FOLD_SHARING:-$((n_gpus == 1 ? 1 : 0))}
if ! [[ $sharing =~ ^[01]$ ]]; then
    echo "run_experiment.sh: FSDTAG_FOLD_SHARING must be 0 or 1, got '$sharing'" >&2
    exit 2
fi
if [ "$sharing" -eq 1 ] && [ "$n_gpus" -gt 1 ]; then
    echo "run_experiment.sh: FSDTAG_FOLD_SHARING=1 is for one GPU or none; with $n_gpus GPUs each fold takes one" >&2
    exit 2
fi
if [ "$sharing" -eq 1 ]; then
    if [ "$n_gpus" -gt 0 ]; then run_together 0 & else run_together "" "--threads $(nproc)" & fi
    wait
elif [ "$n_gpus" -gt 0 ]; then
    for ((gpu = 0; gpu < n_gpus; gpu++)); do
        (for k in $folds; do
            if [ $(((k - 1) % n_gpus)) -eq "$gpu" ]; then run_fold "$k" "$gpu"; fi
        done) &
    done
    wait
else
    cores=$(nproc)
    n_folds=$(wc -w <<<"$folds")
    default_jobs=$((cores < n_folds ? cores : n_folds))
    jobs=${FSDTAG_CPU_JOBS:-$((default_jobs < 4 ? default_jobs : 4))}
    if ! [[ $jobs =~ ^[1-9][0-9]*$ ]]; then
        echo "run_experiment.sh: FSDTAG_CPU_JOBS must be a positive number, got '$jobs'" >&2
        exit 2
    fi
    threads=$((cores / jobs > 1 ? cores / jobs : 1))
    running=0
    for k in $folds; do
        if [ "$running" -ge "$jobs" ]; then
            wait -n || true
            running=$((running - 1))
        fi
        run_fold "$k" "" "--threads $threads" &
        running=$((running + 1))
    done
    wait
fi

failed=()
for k in $folds; do
    if [ "$(cat "$status_dir/$k" 2>/dev/null || echo 1)" -ne 0 ]; then failed+=("$k"); fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "run_experiment.sh $name: fold(s) ${failed[*]} failed; see $log_dir/${name}_fold<K>.log" >&2
    exit 1
fi
echo "run_experiment.sh $name: all folds finished"

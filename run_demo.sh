#!/usr/bin/env bash
# The whole pipeline on the embedded default dataset, on the CPU (README command 1 runs it after installing):
# dataset -> spectrograms v1/v2 -> pretraining, self-verification, fine-tuning (demo schedule) -> evaluation,
# fusion, submission, leaderboard scores -> a live-tagger model, tagging a test clip streamed from its file.
#   ./run_demo.sh [DATA_ROOT] [EXP_ROOT]      (defaults: $FSDTAG_DATA_ROOT or data, $FSDTAG_EXP_ROOT or experiments)
# Every step skips what is already done, so the same command resumes an interrupted run.
set -euo pipefail
cd "$(dirname "$0")"
py=${PYTHON:-.venv/bin/python}
data=${1:-${FSDTAG_DATA_ROOT:-data}}
exp=${2:-${FSDTAG_EXP_ROOT:-experiments}}
step() { echo; echo "=== $* ==="; }

step "1/7 the embedded default dataset"
$py make_demo_dataset.py --data_root "$data"

step "2/7 spectrograms (v1, v2; v2 without SoX for the live tagger)"
# Like Kaggle's test download, the test set holds a few broken wavs (0 samples, or not audio): they get no
# spectrogram and are listed in failed.txt (exit status 1), which is expected there. Anything else (status 2,
# or a failure in the train split) stops the pipeline.
for split in train test; do
    for version in 1 2; do
        specs="$data/specs_${split}_v$version"
        rc=0
        $py prepare_spectrograms.py --audio_path "$data/audio_$split" --out_dir "$specs" \
            --spec_version $version --dump || rc=$?
        if [ "$rc" -ne 0 ]; then
            if [ "$split" = test ] && [ "$rc" -eq 1 ] && [ -s "$specs/failed.txt" ]; then
                echo "note: $(wc -l < "$specs/failed.txt") broken test clip(s) without a spectrogram, as expected" \
                    "(listed in $specs/failed.txt)"
            else
                echo "error: spectrograms for the $split split failed (exit status $rc)" >&2
                exit 1
            fi
        fi
    done
done
$py prepare_spectrograms.py --audio_path "$data/audio_train" --out_dir "$data/specs_train_v2_no_pp" \
    --spec_version 2 --no_preprocessing --dump

step "3/7 pretraining, self-verification and fine-tuning (demo schedule)"
$py run_experiment_set.py --experiment_set all --preset demo --data_root "$data" --exp_root "$exp"
$py plot_log.py "$exp"/vgg_gap_demo/results_[1234]_it0.json --acc --folds_avg --out "$exp/curves_vgg_gap_demo_it0.png"

step "4/7 evaluation, fusion, submission, leaderboard"
$py evaluate_experiment_set.py --data_root "$data" --exp_root "$exp"

step "5/7 a live-tagger model (v2 without SoX, fold 1)"
$py train.py --model models/vgg_gap_demo_no_pp.py --spec_dir specs_train_v2_no_pp --fold 1 --max_len 1500 \
    --channels_last --data_root "$data" --exp_root "$exp"

step "6/7 live tagging of a test clip played as a stream"
clips=("$data"/audio_test/*.wav)
clip=${clips[0]}
$py audio_tagger.py --model models/vgg_gap_demo_no_pp.py --params "$exp/vgg_gap_demo_no_pp/params_1_it0.pt" \
    --input "$clip" --speed 0 --headless --save_view "$exp/audio_tagger_view.png"
echo "clip $(basename "$clip"): true label $(grep "^$(basename "$clip")," "$data/test_post_competition.csv" | cut -d, -f2)"
step "7/7 tagging new recordings: the ensemble as one bundle, a few test clips and one long recording"
$py export_bundle.py --exp_root "$exp" --out "$exp/bundle.pt"
# five scored test clips, and a 'long recording': eight of them one after another (32 kHz mono, 0.5 s apart)
tagdir="$exp/tagging"
mkdir -p "$tagdir"
$py - "$data" "$tagdir" <<'PY'
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from utils.audio import AudioError, read_audio, resample, to_mono

data, out = Path(sys.argv[1]), Path(sys.argv[2])
test = pd.read_csv(data / "test_post_competition.csv")
clips, pieces = [], []
for fname in test.loc[test["usage"] != "Ignored", "fname"]:
    try:
        signal, sr = read_audio(data / "audio_test" / fname)
    except AudioError:  # the broken scored clip
        continue
    clips.append(str((data / "audio_test" / fname).resolve()))  # a file list resolves relative lines against its folder
    pieces += [resample(to_mono(signal), sr), np.zeros(16000, np.float32)]
    if len(clips) == 8:
        break
(out / "clips.txt").write_text("\n".join(clips[:5]) + "\n")
sf.write(out / "long_recording.wav", np.concatenate(pieces), 32000, subtype="PCM_16")
PY
$py tag_files.py --bundle "$exp/bundle.pt" "$tagdir/clips.txt" --out "$tagdir/tags.csv"
$py tag_files.py --bundle "$exp/bundle.pt" "$tagdir/long_recording.wav" --segment 3 --plot \
    --out "$tagdir/long_recording.csv"
grep -F -f <(xargs -n1 basename < "$tagdir/clips.txt") "$data/test_post_competition.csv" | cut -d, -f1,2 \
    | sed 's/^/true label: /'

echo
echo "done: submission $exp/submission.csv, tags in $tagdir/, figures in $exp/"

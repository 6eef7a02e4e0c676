#!/usr/bin/env bash
# The live tagger's window on a virtual X display, saved as a screenshot (docs/live_view.png), after make demo:
#   xvfb-run -a -s "-screen 0 729x675x24" docs/live_view_screenshot.sh [PARAMS] [CLIP] [OUT]
# Needs Debian's xvfb, x11-utils (xwininfo), x11-apps (xwd) and netpbm. The clip plays at its own speed; the
# shot is taken 3 s after the "Figure 1" window is mapped.
set -euo pipefail
cd "$(dirname "$0")/.."
params=${1:-experiments/vgg_gap_demo_no_pp/params_1_it0.pt}
clips=(data/audio_test/*.wav)
clip=${2:-${clips[0]}}
out=${3:-docs/live_view.png}
py=${PYTHON:-.venv/bin/python}
$py audio_tagger.py --model models/vgg_gap_demo_no_pp.py --params "$params" --input "$clip" --speed 1 &
pid=$!
for _ in $(seq 1 600); do
    if xwininfo -root -tree | grep -q '"Figure 1"'; then break; fi
    sleep 0.1
done
sleep 3
xwd -root -silent | xwdtopnm 2>/dev/null | pnmtopng > "$out.tmp"
mv "$out.tmp" "$out"
wait "$pid"
echo "saved $out"

#!/usr/bin/env bash
# The main job on a fresh Debian machine, about ten minutes on 2 cores:
#   1. install the build dependencies (Debian packages), build tqtrain, tqinfer and tqplot;
#   2. fetch the corpora (scripts/fetch-corpora.sh → data-cache/corpora/<name>/{train,valid}/*.txt);
#   3. pretrain a tiny full-precision LLaMA with our own SentencePiece vocabulary
#      (configs/quickstart-pretrain.yaml → runs/quickstart/pretrain);
#   4. Tequila QAT from that checkpoint (configs/quickstart-qat.yaml → runs/quickstart/qat), with the
#      dead-zone diagnostics in its metrics;
#   5. evaluate: perplexity and bits per byte of the held-out text under the pretrained model, the
#      ternary model on the packed engine and the same model as the fake-quant training graph (--fp);
#      two multiple-choice tasks generated from the held-out text (scripts/make-tasks.py), scored like
#      lm-evaluation-harness;
#   6. convert the ternary model to a packed .tqpk file and generate text with it;
#   7. plot the QAT metrics (tqplot → runs/quickstart/plots/*.png).
# Re-running resumes or skips finished steps (tqtrain resumes from each run's `latest`).
#   scripts/quickstart.sh [--fresh]      # --fresh deletes runs/quickstart first
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--fresh" ]]; then rm -rf runs/quickstart; fi

scripts/install-deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" --target tqtrain tqinfer tqplot
scripts/fetch-corpora.sh data-cache/corpora >/dev/null
[[ -d data-cache/corpora/brown/train ]] || { echo "quickstart: the Brown corpus is missing (see scripts/fetch-corpora.sh)" >&2; exit 1; }

start=$(date +%s)
build/release/apps/tqtrain configs/quickstart-pretrain.yaml
build/release/apps/tqtrain configs/quickstart-qat.yaml

valid=data-cache/corpora/brown/valid/brown.txt
pre=runs/quickstart/pretrain/$(cat runs/quickstart/pretrain/latest)
qat=runs/quickstart/qat/$(cat runs/quickstart/qat/latest)
tqinfer=build/release/apps/tqinfer

echo "== perplexity of $valid (token level and bits per byte)"
printf '%-34s %s\n' "pretrained fp32 (engine, dense)" "$($tqinfer ppl --model "$pre" --text "$valid" --json)"
printf '%-34s %s\n' "Tequila ternary (packed engine)" "$($tqinfer ppl --model "$qat" --text "$valid" --json)"
printf '%-34s %s\n' "Tequila ternary (fake-quant, --fp)" "$($tqinfer ppl --model "$qat" --text "$valid" --json --fp)"

echo "== multiple-choice tasks generated from the held-out text"
mkdir -p runs/quickstart/tasks
/usr/bin/python3 scripts/make-tasks.py --kind cloze --n 200 --seed 1 --output runs/quickstart/tasks/brown_cloze.jsonl "$valid"
/usr/bin/python3 scripts/make-tasks.py --kind next --n 100 --seed 1 --output runs/quickstart/tasks/brown_next.jsonl "$valid"
for run in pre qat; do
  $tqinfer eval --model "${!run}" --tasks runs/quickstart/tasks/*.jsonl --output "runs/quickstart/eval_$run.json"
done

echo "== packed model and generation"
$tqinfer convert --model "$qat" --output runs/quickstart/qat.tqpk
$tqinfer generate --model runs/quickstart/qat.tqpk --tokenizer "$qat" --prompt "The jury said" \
  --max-tokens 48 --temperature 0.8 --top-p 0.95 --seed 1
echo

build/release/apps/tqplot runs/quickstart/qat/metrics.jsonl --out runs/quickstart/plots >/dev/null
echo "== $(ls runs/quickstart/plots/*.png | wc -l) plots of the QAT metrics in runs/quickstart/plots/"
echo "quickstart: done in $(( $(date +%s) - start )) s of training and evaluation"
echo "  metrics: runs/quickstart/*/metrics.jsonl; plots: runs/quickstart/plots/; eval: runs/quickstart/eval_*.json"

#!/usr/bin/env bash
# The main job on a fresh Debian machine, about ten minutes on 2 cores:
#   1. install the build dependencies (Debian packages), build tqtrain and tqinfer;
#   2. fetch the corpora (scripts/fetch-corpora.sh → data-cache/corpora/<name>/{train,valid}/*.txt);
#   3. pretrain a tiny full-precision LLaMA with our own SentencePiece vocabulary
#      (configs/quickstart-pretrain.yaml → runs/quickstart/pretrain);
#   4. Tequila QAT from that checkpoint (configs/quickstart-qat.yaml → runs/quickstart/qat);
#   5. perplexity of the held-out text under both checkpoints with `tqinfer ppl`.
# Re-running resumes or skips finished steps (tqtrain resumes from each run's `latest`).
#   scripts/quickstart.sh [--fresh]      # --fresh deletes runs/quickstart first
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--fresh" ]]; then rm -rf runs/quickstart; fi

scripts/install-deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" --target tqtrain tqinfer
scripts/fetch-corpora.sh data-cache/corpora >/dev/null
[[ -d data-cache/corpora/brown/train ]] || { echo "quickstart: the Brown corpus is missing (see scripts/fetch-corpora.sh)" >&2; exit 1; }

start=$(date +%s)
build/release/apps/tqtrain configs/quickstart-pretrain.yaml
build/release/apps/tqtrain configs/quickstart-qat.yaml

valid=data-cache/corpora/brown/valid/brown.txt
for run in pretrain qat; do
  ckpt=runs/quickstart/$run/$(cat runs/quickstart/$run/latest)
  echo "== tqinfer ppl $ckpt"
  build/release/apps/tqinfer ppl --model "$ckpt" --text "$valid"
done
echo "quickstart: done in $(( $(date +%s) - start )) s of training and evaluation; metrics in runs/quickstart/*/metrics.jsonl"

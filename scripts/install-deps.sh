#!/usr/bin/env bash
# Installs everything libtequila's build and tests need from Debian's packages. Idempotent: packages
# already present are skipped, and apt is only updated when something is missing.
#   scripts/install-deps.sh            build + test dependencies
#   scripts/install-deps.sh --torch    also python3-torch/numpy (only to regenerate test fixtures)
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config ccache
  libeigen3-dev libdnnl-dev opencl-headers ocl-icd-opencl-dev  # dnnl's CMake config needs OpenCL
  libyaml-cpp-dev libspdlog-dev libfmt-dev nlohmann-json3-dev doctest-dev
  libpcre2-dev libsentencepiece-dev sentencepiece  # tokenizers (data/)
  libcli11-dev  # command lines of the apps
  libopenmpi-dev openmpi-bin  # tqtrain data parallelism across processes (train/)
  libpng-dev  # tqplot writes metric plots as PNG
  bible-kjv diatheke sword-text-web  # training corpora (scripts/fetch-corpora.sh)
)
if [[ "${1:-}" == "--torch" ]]; then
  pkgs+=(python3-torch python3-numpy)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "[install-deps] all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "[install-deps] installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "[install-deps] done"

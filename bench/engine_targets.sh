#!/usr/bin/env bash
# The inference targets of the engine issue, measured in one go on the LLaMA-3.2-1B shape (random
# weights): prefill pp512 against the int8 dot-product peak, decode tg128 against the read-bandwidth
# probe, and packed ternary decode against the same engine's dense bf16 path. Every `tqinfer bench`
# run measures its own probes in the same process; figures are medians of -r repetitions. The
# ternary int8-head run is profiled (--profile): the last lines split its decode and prefill steps.
#
#   bench/engine_targets.sh [build/release] [reps=5]
#   TQ_KERNEL=avxvnni bench/engine_targets.sh ...   # a lower kernel ISA (the int8 peak follows it)
#
# Prints each run's table, then a summary. On a shared machine the probes themselves move by up to
# 2× between runs, so compare ratios within one run (the "%" columns) and repeat the script.
set -euo pipefail
build=${1:-build/release}
reps=${2:-5}
tq="$build/apps/tqinfer"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() {  # name, args...
  local name=$1
  shift
  echo "== $name: tqinfer bench --shape llama-3.2-1b $*" >&2
  "$tq" --log-level warn bench --shape llama-3.2-1b "$@" --json > "$out/$name.json"
}

run ternary_int8 -p 512 -n 128 -r "$reps" -t 1,2 --profile
run ternary_q4 --lm-head q4 -p 512 -n 128 -r "$reps" -t 1,2
run bf16_int8 --dense bf16 -p 0 -n 32 -r 3 -t 1,2
run bf16_bf16 --dense bf16 --lm-head bf16 -p 0 -n 32 -r 3 -t 1,2

python3 - "$out" <<'EOF'
import json, sys, os
d = sys.argv[1]
rows = {n[:-5]: json.load(open(os.path.join(d, n))) for n in os.listdir(d)}
def get(name, test, thr):
    for r in rows[name]:
        if r["test"].startswith(test) and r["threads"] == thr:
            return r
    return None
def pct(a, b):
    return float("nan") if not b else 100.0 * a / b
print("| run | threads | test | tokens/s | MB/token | GB/s | % of read probe | GOP/s | % of int8 peak |")
print("|---|---|---|---|---|---|---|---|---|")
for name in ["ternary_int8", "ternary_q4", "bf16_int8", "bf16_bf16"]:
    for r in rows[name]:
        # The targets: decode against the read probe, prefill against the int8 peak ("–" elsewhere).
        if r["test"].startswith("tg"):
            bw = (f"{r['bytes_per_token'] / 1e6:.1f} | {r['achieved_gbs']:.2f} | "
                  f"{pct(r['fraction_of_probe'] or float('nan'), 1.0):.1f} "
                  f"(probe {r['probe_read_gbs'] or float('nan'):.1f})")
            ops = "– | –"
        else:
            bw = "– | – | –"
            ops = f"{r['achieved_gops']:.1f} | {pct(r['achieved_gops'], r['int8_peak_gops']):.1f}"
        print(f"| {name} | {r['threads']} | {r['test']} | {r['median_tokens_per_s']:.2f} | {bw} | {ops} |")
print()
for thr in (1, 2):
    t8, tq4 = get("ternary_int8", "tg", thr), get("ternary_q4", "tg", thr)
    b8, bb = get("bf16_int8", "tg", thr), get("bf16_bf16", "tg", thr)
    print(f"{thr} thread(s): ternary/bf16 decode, both int8 head: "
          f"{t8['median_tokens_per_s'] / b8['median_tokens_per_s']:.2f}x; "
          f"ternary q4 head / bf16 with bf16 head: {tq4['median_tokens_per_s'] / bb['median_tokens_per_s']:.2f}x")
def profiled(test, thr):  # the ternary int8-head row (run with --profile) and its ms per token
    r = get("ternary_int8", test, thr)
    if not r or "profile" not in r:
        return None, 0.0
    return r, sum(p["ms_per_token"] for p in r["profile"])
# Where the ternary int8-head decode step goes (tqinfer bench --profile; docs/tqinfer.md).
for thr in (1, 2):
    r, total = profiled("tg", thr)
    if not r:
        continue
    ops = {p["op"]: p for p in r["profile"]}
    probe = r["probe_read_gbs"] or float("nan")
    def part(prefix):
        p = next(v for k, v in ops.items() if k.startswith(prefix))
        gbs = p["bytes_per_token"] / p["ms_per_token"] / 1e6 if p["ms_per_token"] > 0 else float("nan")
        return p, gbs
    lin, lin_gbs = part("linears")
    head, head_gbs = part("LM head")
    rest = total - lin["ms_per_token"] - head["ms_per_token"]
    print(f"{thr} thread(s) decode profile: linears {lin['ms_per_token']:.3f} ms "
          f"({pct(lin_gbs, probe):.1f}% of probe), LM head {head['ms_per_token']:.3f} ms "
          f"({pct(head_gbs, probe):.1f}%), ops without weights and waits {rest:.3f} ms "
          f"({pct(rest, total):.1f}% of the step)")
# Where the prefill time goes (ms per prompt token, each op's share of it).
for thr in (1, 2):
    r, total = profiled("pp", thr)
    if not r:
        continue
    parts = ", ".join(f"{p['op'].split(' (')[0]} {pct(p['ms_per_token'], total):.1f}%"
                      for p in r["profile"] if p["ms_per_token"] > 0)
    print(f"{thr} thread(s) prefill profile: {total:.3f} ms per prompt token: {parts}")
EOF

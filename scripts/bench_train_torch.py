#!/usr/bin/python3
"""The training step of bench/bench_train.cpp in PyTorch: the `small` LLaMA (6 layers, hidden 384,
FFN 1024, 6 heads / 2 KV heads, vocab 4096, seq 256, tied embeddings), forward + backward + clip +
AdamW, full precision and Tequila QAT (the spec's ternary linear from
tests/reference/gen_train_reference.py), float32, on the same number of threads.

    /usr/bin/python3 scripts/bench_train_torch.py [--threads N] [--batch 4] [--reps 5]

The model is the plain-PyTorch HF-semantics LLaMA of tests/reference/gen_reference.py (its attention
is written with matmul + softmax, as torch 1.13 has no fused attention on CPU).
"""
import argparse
import copy
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import gen_reference as ref  # noqa: E402
import gen_train_reference as tref  # noqa: E402
import torch  # noqa: E402


def config():
    c = copy.deepcopy(ref.TINY_LLAMA_CONFIG)
    c.update({"vocab_size": 4096, "hidden_size": 384, "intermediate_size": 1024, "num_hidden_layers": 6,
              "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 64,
              "max_position_embeddings": 256, "tie_word_embeddings": True})
    c["rope_scaling"]["original_max_position_embeddings"] = 256
    return c


def step_time(tequila, B, reps):
    T = 256
    c = config()
    torch.manual_seed(1)
    model = ref.LlamaForCausalLM(c)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    if tequila:
        tref.HP["group_size"], tref.HP["lambda"] = 128, 1e-3
        tref.quantize(model)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1)
    ids = torch.randint(0, 4096, (B, T))
    tgt = torch.randint(0, 4096, (B, T))
    ts = []
    for r in range(reps + 1):
        t0 = time.perf_counter()
        _, loss = ref.tiny_llama_loss(model, ids, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if r > 0:
            ts.append(time.perf_counter() - t0)
    s = statistics.median(ts)
    n = sum(p.numel() for p in params)
    print("%-8s %d params  B=%d T=%d  step %.3f s  %.0f tokens/s" % ("tequila" if tequila else "none", n, B, T, s,
                                                                       B * T / s))
    return s


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print("bench_train_torch: torch %s, %d threads, median of %d steps" % (torch.__version__, a.threads, a.reps))
    fp = step_time(False, a.batch, a.reps)
    tq = step_time(True, a.batch, a.reps)
    print("tequila/fp32 step time: %.3f" % (tq / fp))


if __name__ == "__main__":
    main()

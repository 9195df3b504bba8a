#!/usr/bin/python3
"""Golden training trajectories for libtequila's Trainer, computed with plain PyTorch (float64).

    /usr/bin/python3 tests/reference/gen_train_reference.py           # (re)write data/train/train_golden.safetensors
    /usr/bin/python3 tests/reference/gen_train_reference.py --check   # regenerate in memory, compare bytes

Independently of the C++ code, it starts from the tiny LLaMA checkpoint of gen_reference.py
(data/tiny_llama: HF names, f32, tied embeddings; its model definition is imported from there), and
trains 10 optimizer steps on one fixed token batch split into 2 micro-batches (grad_accum 2, loss/2
per micro-batch) with torch.optim.AdamW (decay on every weight except norms and the embedding),
torch.nn.utils.clip_grad_norm_, and the WSD schedule of spec §6 (transformers get_wsd_schedule as
the Tequila script calls it; written out here). Two runs:
  * full precision;
  * Tequila QAT: every q/k/v/o/gate/up/down projection becomes the ternary linear of the spec
    (tequila-spec.md §2-3), written here from the spec: per (row, group) alpha = mean|w|,
    delta = alpha/2, t = +1 if w >= delta, -1 if w <= -delta, else 0 (inclusive); y = x (t alpha)^T + c,
    c_j = lambda * sum of dead w_ji; dW = dY^T X on every entry (STE) + lambda * sum_t dY[t, j] on dead
    entries (through c).
Everything runs in float64 from the exact f32 initial weights. Stored (F64 unless noted): ids and
targets I32 [n_micro, B, T], losses_fp / losses_tequila [10] (mean over the step's micro-batches,
before the update), grad_norm_fp / grad_norm_tequila [10] (before clipping), lr [10]; the
hyper-parameters are in the metadata. The same trajectories in float32 PyTorch are printed to show
how far an f32 implementation lands (the C++ tolerance is chosen from that).
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_reference as ref  # noqa: E402  (exits 77 when torch is missing)

import torch  # noqa: E402

OUT = os.path.join(ref.DATA_DIR, "train", "train_golden.safetensors")  # own folder: gen_reference.py --check owns the top level
GENERATOR = "tests/reference/gen_train_reference.py"
SEED = 2024
STEPS = 10
N_MICRO, B, T = 2, 2, 12
HP = {
    "lr": 5e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "grad_clip": 1.0,
    "schedule": "wsd", "warmup_ratio": 0.2, "decay_steps": 8, "min_lr_ratio": 0.1,
    "quant_method": "tequila", "granularity": "group", "group_size": 64, "lambda": 0.05,
}
QUANT_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def wsd_factor(t, total, warmup_ratio, decay_steps, m):
    w = math.ceil(warmup_ratio * total)
    if t < w:
        return m + (1 - m) * t / w
    if t < w + decay_steps:
        return m + (1 - m) * 0.5 * (1 + math.cos(math.pi * (t - w) / decay_steps))
    return m


class TequilaLinear(torch.nn.Module):
    """The spec's Tequila ternary linear over a latent weight [out, in] (no bias parameter)."""

    def __init__(self, weight, group, lam):
        super().__init__()
        self.weight = weight
        self.group, self.lam = group, lam

    def forward(self, x):
        w = self.weight
        out, inp = w.shape
        wd = w.detach().reshape(out, inp // self.group, self.group)
        alpha = wd.abs().mean(-1, keepdim=True)
        delta = alpha / 2
        t = (wd >= delta).to(w.dtype) - (wd <= -delta).to(w.dtype)
        q = (t * alpha).reshape(out, inp)
        dead = (t == 0).to(w.dtype).reshape(out, inp)
        w_ste = q + (w - w.detach())  # value q, gradient identity to w
        return torch.matmul(x, w_ste.t()) + self.lam * (w * dead).sum(1)


def load_tiny(dtype):
    c = ref.TINY_LLAMA_CONFIG
    with open(os.path.join(ref.DATA_DIR, ref.TINY_LLAMA_DIR, "model.safetensors"), "rb") as f:
        arrays, _, _ = ref.decode_safetensors(f.read())
    model = ref.LlamaForCausalLM(c)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in arrays.items()})
    return model.to(dtype)


def quantize(model):
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name in QUANT_LAYERS:
                if hasattr(parent, name):
                    lin = getattr(parent, name)
                    setattr(parent, name, TequilaLinear(lin.weight, HP["group_size"], HP["lambda"]))


def batch():
    g = ref.gen(SEED)
    V = ref.TINY_LLAMA_CONFIG["vocab_size"]
    seq = torch.randint(3, V, (N_MICRO, B, T + 1), generator=g, dtype=torch.int64)
    return seq[..., :T].clone(), seq[..., 1:].clone()


def train(dtype, tequila, ids, targets):
    model = load_tiny(dtype)
    if tequila:
        quantize(model)
    named = list(model.named_parameters())
    no_decay = [p for n, p in named if n.endswith("norm.weight") or "embed_tokens" in n]
    decay = [p for n, p in named if not (n.endswith("norm.weight") or "embed_tokens" in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": HP["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"])
    losses, norms, lrs = [], [], []
    for step in range(STEPS):
        lr = HP["lr"] * wsd_factor(step, STEPS, HP["warmup_ratio"], HP["decay_steps"], HP["min_lr_ratio"])
        for group in opt.param_groups:
            group["lr"] = lr
        total = 0.0
        for m in range(N_MICRO):
            _, loss = ref.tiny_llama_loss(model, ids[m], targets[m])
            (loss / N_MICRO).backward()
            total += float(loss)
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in named], HP["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(total / N_MICRO)
        norms.append(float(norm))
        lrs.append(lr)
    return losses, norms, lrs


def build():
    ids, targets = batch()
    fp, nfp, lrs = train(torch.float64, False, ids, targets)
    tq, ntq, _ = train(torch.float64, True, ids, targets)
    fp32, _, _ = train(torch.float32, False, ids, targets)
    tq32, _, _ = train(torch.float32, True, ids, targets)
    rel = lambda a, b: max(abs(x - y) / abs(y) for x, y in zip(a, b))  # noqa: E731
    print("  fp:      losses %s" % " ".join("%.6f" % v for v in fp))
    print("  tequila: losses %s" % " ".join("%.6f" % v for v in tq))
    print("  torch f32 vs f64: max relative loss difference fp %.2e, tequila %.2e" % (rel(fp32, fp), rel(tq32, tq)))
    print("  grad norms fp %s" % " ".join("%.3f" % v for v in nfp))
    # The fixture can fail: the two runs must differ, the loss must fall, clipping must be active.
    assert max(abs(a - b) for a, b in zip(fp, tq)) > 1e-2
    assert fp[-1] < fp[0] - 0.1 and tq[-1] < tq[0] - 0.1
    assert max(nfp) > HP["grad_clip"]
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    tensors = [("ids", ids.to(torch.int32)), ("targets", targets.to(torch.int32)),
               ("losses_fp", t(fp)), ("losses_tequila", t(tq)),
               ("grad_norm_fp", t(nfp)), ("grad_norm_tequila", t(ntq)), ("lr", t(lrs))]
    md = {"op": "train_golden", "generator": GENERATOR,
          "description": "10 AdamW steps of the tiny LLaMA (data/tiny_llama) on one fixed batch of 2 micro-batches, "
                         "full precision and Tequila QAT, float64 PyTorch; see the generator's docstring",
          "model": ref.TINY_LLAMA_DIR, "steps": str(STEPS), "grad_accum": str(N_MICRO), "seed": str(SEED),
          "hparams": json.dumps(HP, sort_keys=True)}
    return ref.encode_safetensors(tensors, md)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="regenerate in memory and compare with the committed file")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = build()
    if args.check:
        with open(OUT, "rb") as f:
            same = f.read() == data
        print("train_golden.safetensors: %s" % ("identical" if same else "DIFFERS"))
        return 0 if same else 1
    with open(OUT, "wb") as f:
        f.write(data)
    print("wrote %s (%d bytes)" % (OUT, len(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

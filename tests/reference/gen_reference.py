#!/usr/bin/python3
"""Golden fixtures for libtequila's fused autograd ops and a tiny LLaMA, computed with plain PyTorch.

Run with Debian's interpreter (python3-torch 1.13, python3-numpy):

    /usr/bin/python3 tests/reference/gen_reference.py            # (re)write tests/reference/data/
    /usr/bin/python3 tests/reference/gen_reference.py --verify   # re-read the committed files
    /usr/bin/python3 tests/reference/gen_reference.py --check    # regenerate into a temp dir, compare bytes

Conventions (see tests/reference/README.md):
  * one safetensors file per case, written by hand (no safetensors package is available);
  * inputs are generated in float32 with a fixed per-case seed and stored as F32 (integer ids as I32);
  * the forward output and all gradients are computed in float64 from those exact f32 inputs (cast up)
    and stored as F64;
  * gradients are of sum(y * grad_y) for a stored random F32 `grad_y` (cross-entropy: d loss / d logits);
  * references use standard torch ops and torch.autograd only (no hand-written backward);
  * data/tiny_llama/{config.json, model.safetensors} is a tiny HF-format LLaMA (F32, tied embeddings)
    from the plain-PyTorch model below, and data/tiny_llama_golden.safetensors holds a batch with its
    logits, loss and every parameter's gradient (F64, as grad.<HF name>).
"""

import argparse
import filecmp
import hashlib
import json
import math
import os
import struct
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # CTest treats exit 77 as "skipped" (PyTorch is optional)
    print(f"skipped: {e} (install with scripts/install-deps.sh --torch; run with /usr/bin/python3)")
    sys.exit(77)

GENERATOR = "tests/reference/gen_reference.py"
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
MAX_TOTAL_BYTES = 3 * 1024 * 1024

# --------------------------------------------------------------------------------------------------
# safetensors, by hand
# --------------------------------------------------------------------------------------------------

_NP_OF = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "I8": "<i1"}
_DTYPE_OF_TORCH = {torch.float32: "F32", torch.float64: "F64", torch.int32: "I32", torch.int64: "I64", torch.int8: "I8"}


def _to_numpy(t):
    """Return (safetensors dtype, little-endian C-contiguous numpy array)."""
    dt = _DTYPE_OF_TORCH[t.dtype]
    a = t.detach().cpu().contiguous().numpy()
    return dt, np.array(a, dtype=_NP_OF[dt], order="C", copy=True)  # keeps 0-d shapes (unlike ascontiguousarray)


def encode_safetensors(tensors, metadata):
    """tensors: list of (name, torch.Tensor) in file order; metadata: {str: str}."""
    header = {}
    if metadata:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name, t in tensors:
        assert name != "__metadata__" and name not in header, name
        dt, a = _to_numpy(t)
        raw = a.tobytes(order="C")
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    hjson += b" " * ((-len(hjson)) % 8)  # pad with spaces to a multiple of 8
    return struct.pack("<Q", len(hjson)) + hjson + b"".join(blobs)


def decode_safetensors(buf):
    """Strict reader: returns ({name: numpy array}, metadata, tensor names in offset order)."""
    if len(buf) < 8:
        raise ValueError("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", buf[:8])
    if n % 8 != 0 or 8 + n > len(buf):
        raise ValueError("bad header length %d" % n)
    text = buf[8 : 8 + n].decode("ascii")
    body = text.rstrip(" ")
    if not body.startswith("{") or not body.endswith("}"):
        raise ValueError("header must be one JSON object padded with spaces")
    header = json.loads(body)
    metadata = header.pop("__metadata__", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError("metadata must map str to str")
    data = buf[8 + n :]
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    out, pos = {}, 0
    for name, e in entries:
        if set(e) != {"dtype", "shape", "data_offsets"}:
            raise ValueError("tensor %s: unexpected keys %s" % (name, sorted(e)))
        begin, end = e["data_offsets"]
        npdt = np.dtype(_NP_OF[e["dtype"]])
        count = int(np.prod(e["shape"], dtype=np.int64)) if e["shape"] else 1
        if begin != pos or end - begin != count * npdt.itemsize:
            raise ValueError("tensor %s: offsets %s not contiguous / size mismatch" % (name, e["data_offsets"]))
        out[name] = np.frombuffer(data[begin:end], dtype=npdt).reshape(e["shape"])
        pos = end
    if pos != len(data):
        raise ValueError("trailing bytes after last tensor")
    return out, metadata, [name for name, _ in entries]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(g, *shape, std=1.0, mean=0.0):
    """float32 normal samples (this is what gets stored)."""
    return (torch.randn(*shape, generator=g, dtype=torch.float32) * std + mean).float()


def up(t):
    """f64 leaf from the exact f32 values."""
    return t.detach().double().requires_grad_(True)


def fmt(x):
    return repr(float(x)) if isinstance(x, float) else str(x)


def meta(op, description, **params):
    m = {"op": op, "generator": GENERATOR, "description": description}
    for k, v in params.items():
        m[k] = fmt(v)
    return m


def vjp(y, grad_y, leaves):
    """Gradients of sum(y * grad_y) with respect to leaves, via torch.autograd."""
    return torch.autograd.grad(y, leaves, grad_outputs=grad_y.double())


def max_abs(a, b):
    return float((a.detach().double() - b.detach().double()).abs().max())


def sensitivity(case, what, diff, at_least):
    """Show that a plausible implementation mistake moves the fixture by far more than any tolerance."""
    print("    sensitivity %-22s %-48s max|diff| = %.3e" % (case, what, diff))
    assert diff > at_least, (case, what, diff)


# --------------------------------------------------------------------------------------------------
# reference ops (plain torch; HF LLaMA semantics)
# --------------------------------------------------------------------------------------------------


def ref_rms_norm(x, w, eps):
    # LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * weight
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def inv_freq_default(theta, head_dim):
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).double() / head_dim))


def inv_freq_llama3(theta, head_dim, factor, low_freq_factor, high_freq_factor, old_ctx):
    """transformers' _compute_llama3_parameters, in float64. Returns (inv_freq, band per frequency)."""
    inv_freq = inv_freq_default(theta, head_dim)
    low_freq_wavelen = old_ctx / low_freq_factor
    high_freq_wavelen = old_ctx / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    result = torch.where(is_medium, smoothed, inv_freq_llama)
    bands = ["high" if wl < high_freq_wavelen else "low" if wl > low_freq_wavelen else "medium" for wl in wavelen.tolist()]
    return result, bands


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def ref_rope(x, inv_freq, pos0):
    """x: [B, T, H, D]; position of token t is pos0 + t."""
    T = x.shape[1]
    pos = torch.arange(pos0, pos0 + T, dtype=torch.float64)
    freqs = torch.outer(pos, inv_freq)  # [T, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, D]
    cos = emb.cos()[None, :, None, :]
    sin = emb.sin()[None, :, None, :]
    return x * cos + rotate_half(x) * sin


def ref_attention(q, k, v, kv_map=None, causal=True):
    """q: [B, T, H, D]; k, v: [B, S, Hkv, D]; query head h reads kv head h // (H / Hkv) (HF repeat_kv)."""
    B, T, H, D = q.shape
    S, Hkv = k.shape[1], k.shape[2]
    n_rep = H // Hkv
    qh = q.transpose(1, 2)  # [B, H, T, D]
    kh = k.transpose(1, 2)  # [B, Hkv, S, D]
    vh = v.transpose(1, 2)
    if kv_map is None:
        # repeat_kv: expand [B, Hkv, n_rep, S, D] then reshape to [B, Hkv * n_rep, S, D]
        kh = kh[:, :, None].expand(B, Hkv, n_rep, S, D).reshape(B, H, S, D)
        vh = vh[:, :, None].expand(B, Hkv, n_rep, S, D).reshape(B, H, S, D)
    else:  # deliberately wrong mappings, for the sensitivity check only
        kh, vh = kh[:, kv_map], vh[:, kv_map]
    scores = torch.matmul(qh, kh.transpose(-1, -2)) / math.sqrt(D)  # [B, H, T, S]
    if causal:
        # query t sits at position S - T + t; key s is masked when s is later
        qpos = torch.arange(S - T, S)[:, None]
        kpos = torch.arange(S)[None, :]
        scores = scores.masked_fill(kpos > qpos, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    return torch.matmul(p, vh).transpose(1, 2), p  # [B, T, H, D]


# --------------------------------------------------------------------------------------------------
# cases: each returns (file name, [(tensor name, tensor)], metadata)
# --------------------------------------------------------------------------------------------------


def case_rms_norm(name, seed, eps, other_eps):
    g = gen(seed)
    B, T, C = 2, 5, 32
    # per-row scales span 1e-3 .. 4 so that eps matters for some rows (mean(x^2) ~ eps)
    row_scale = torch.tensor([3.0, 0.5, 1.0, 2.0, 0.003, 1.5, 0.002, 4.0, 0.7, 0.01], dtype=torch.float32)
    row_off = torch.tensor([0.5, -0.2, 0.0, 1.0, 0.001, -0.7, 0.0, 0.3, 0.1, -0.005], dtype=torch.float32)
    x = (randn(g, B * T, C) * row_scale[:, None] + row_off[:, None]).reshape(B, T, C).float()
    w = randn(g, C, std=0.3, mean=1.0)
    grad_y = randn(g, B, T, C)
    xd, wd = up(x), up(w)
    y = ref_rms_norm(xd, wd, eps)
    gx, gw = vjp(y, grad_y, [xd, wd])
    sensitivity(name, "eps %g -> %g" % (eps, other_eps), max_abs(y, ref_rms_norm(xd, wd, other_eps)), 1e-3)
    sensitivity(name, "weight ignored", max_abs(y, ref_rms_norm(xd, torch.ones_like(wd), eps)), 1e-1)
    tensors = [("x", x), ("w", w), ("y", y), ("grad_y", grad_y), ("grad_x", gx), ("grad_w", gw)]
    desc = "y = x * rsqrt(mean(x^2, -1) + eps) * w over the last dim (HF LlamaRMSNorm); grads of sum(y*grad_y)"
    return name, tensors, meta("rms_norm", desc, eps=eps)


def case_rope(name, seed, pos0, rope_type, theta, scaling=None):
    g = gen(seed)
    B, T, H, D = 2, 7, 3, 16
    x = randn(g, B, T, H, D)
    grad_y = randn(g, B, T, H, D)
    params = dict(theta=theta, head_dim=D, pos0=pos0, rope_type=rope_type)
    inv_default = inv_freq_default(theta, D)
    if rope_type == "llama3":
        inv_freq, bands = inv_freq_llama3(theta, D, *scaling)
        print("    %s: llama3 bands per frequency: %s" % (name, " ".join(bands)))
        for band in ("low", "medium", "high"):
            assert band in bands, "llama3 case must have >= 1 %s-frequency band" % band
        params.update(
            factor=scaling[0],
            low_freq_factor=scaling[1],
            high_freq_factor=scaling[2],
            original_max_position_embeddings=scaling[3],
        )
    else:
        inv_freq = inv_default
    xd = up(x)
    y = ref_rope(xd, inv_freq, pos0)
    (gx,) = vjp(y, grad_y, [xd])
    # proofs that the fixture can fail
    if rope_type == "llama3":
        sensitivity(name, "llama3 scaling dropped", max_abs(y, ref_rope(xd, inv_default, pos0)), 1e-1)
    if pos0 != 0:
        sensitivity(name, "pos0 ignored", max_abs(y, ref_rope(xd, inv_freq, 0)), 1e-1)
    # the same buffer misread as [B, H, T, D] (HF's layout): positions then run over the wrong axis
    misread = ref_rope(xd.reshape(B, H, T, D).transpose(1, 2), inv_freq, pos0).transpose(1, 2).reshape(B, T, H, D)
    sensitivity(name, "buffer read as [B,H,T,D]", max_abs(y, misread), 1e-1)
    # interleaved pairs (2i, 2i+1) instead of rotate-half (i, i + D/2)
    xp = xd.reshape(B, T, H, D // 2, 2).transpose(-1, -2).reshape(B, T, H, D)
    inter = ref_rope(xp, inv_freq, pos0).reshape(B, T, H, 2, D // 2).transpose(-1, -2).reshape(B, T, H, D)
    sensitivity(name, "interleaved pairs instead of rotate-half", max_abs(y, inter), 1e-1)
    tensors = [("x", x), ("inv_freq", inv_freq), ("y", y), ("grad_y", grad_y), ("grad_x", gx)]
    desc = (
        "rotate-half RoPE on x [B,T,H,D], position of token t = pos0 + t; inv_freq (F64) = "
        + ("llama3-scaled " if rope_type == "llama3" else "")
        + "1/theta^(2i/D); y = x*cos(emb) + rotate_half(x)*sin(emb), emb = cat(pos*inv_freq, pos*inv_freq)"
    )
    return name, tensors, meta("rope", desc, **params)


def case_attention(name, seed, B, T, H, Hkv, D, std):
    g = gen(seed)
    q = randn(g, B, T, H, D, std=std)
    k = randn(g, B, T, Hkv, D, std=std)
    v = randn(g, B, T, Hkv, D)
    grad_y = randn(g, B, T, H, D)
    qd, kd, vd = up(q), up(k), up(v)
    y, p = ref_attention(qd, kd, vd)
    gq, gk, gv = vjp(y, grad_y, [qd, kd, vd])
    print("    %s: mean max attention probability %.3f (uniform over the causal prefix: %.3f)"
          % (name, float(p.max(-1).values.mean()), float((1.0 / torch.arange(1, T + 1).double()).mean())))
    if T > 1:
        sensitivity(name, "no causal mask", max_abs(y, ref_attention(qd, kd, vd, causal=False)[0]), 1e-1)
    if Hkv < H:
        wrong_map = [h % Hkv for h in range(H)]  # tiled instead of repeat-interleaved
        sensitivity(name, "kv head h % Hkv instead of h // n_rep",
                    max_abs(y, ref_attention(qd, kd, vd, kv_map=wrong_map)[0]), 1e-1)
    if T > 1:
        yscale = ref_attention(qd * math.sqrt(D), kd, vd)[0]  # 1/sqrt(D) scale dropped
        sensitivity(name, "scale 1/sqrt(D) dropped", max_abs(y, yscale), 1e-1)
    tensors = [("q", q), ("k", k), ("v", v), ("y", y), ("grad_y", grad_y),
               ("grad_q", gq), ("grad_k", gk), ("grad_v", gv)]
    desc = (
        "causal grouped-query attention, q [B,T,H,D], k/v [B,T,Hkv,D], y [B,T,H,D]; query head h uses kv "
        "head h // (H/Hkv); scores = q.k^T * scale, key s > query t masked to -inf, softmax over keys"
    )
    return name, tensors, meta("attention", desc, n_heads=H, n_kv_heads=Hkv, head_dim=D, causal=1,
                               scale=1.0 / math.sqrt(D))


def case_swiglu(name, seed):
    g = gen(seed)
    gate = randn(g, 3, 5, 24, std=2.0)
    upx = randn(g, 3, 5, 24)
    grad_y = randn(g, 3, 5, 24)
    gd, ud = up(gate), up(upx)
    y = F.silu(gd) * ud
    ggate, gup = vjp(y, grad_y, [gd, ud])
    tensors = [("gate", gate), ("up", upx), ("y", y), ("grad_y", grad_y), ("grad_gate", ggate), ("grad_up", gup)]
    return name, tensors, meta("swiglu", "y = silu(gate) * up, silu(z) = z * sigmoid(z)")


def case_cross_entropy(name, seed, N, V, ignored_rows):
    g = gen(seed)
    logits = randn(g, N, V, std=2.0)
    targets = torch.randint(0, V, (N,), generator=g, dtype=torch.int64)
    for r in ignored_rows:
        targets[r] = -100
    ld = up(logits)
    loss = F.cross_entropy(ld, targets, ignore_index=-100, reduction="mean")
    (gl,) = torch.autograd.grad(loss, [ld])
    # an implementation that averages over all N rows instead of the non-ignored ones must fail
    wrong = F.cross_entropy(ld, targets, ignore_index=-100, reduction="sum") / N
    sensitivity(name, "mean over all rows", abs(float(loss) - float(wrong)), 1e-2)
    tensors = [("logits", logits), ("targets", targets.to(torch.int32)), ("loss", loss.detach().reshape([])),
               ("grad_logits", gl)]
    desc = (
        "loss = mean over rows with target != ignore_index of -log_softmax(logits)[target] "
        "(F.cross_entropy, reduction mean); grad_logits = d loss / d logits (upstream 1)"
    )
    return name, tensors, meta("cross_entropy", desc, ignore_index=-100, reduction="mean", n_ignored=len(ignored_rows))


def case_linear(name, seed):
    g = gen(seed)
    x = randn(g, 2, 3, 16)
    w = randn(g, 8, 16, std=0.5)
    grad_y = randn(g, 2, 3, 8)
    xd, wd = up(x), up(w)
    y = torch.matmul(xd, wd.t())
    gx, gw = vjp(y, grad_y, [xd, wd])
    tensors = [("x", x), ("w", w), ("y", y), ("grad_y", grad_y), ("grad_x", gx), ("grad_w", gw)]
    return name, tensors, meta("linear", "y = x @ w^T, w [out, in] (torch/HF layout), no bias")


def case_softmax(name, seed, log):
    g = gen(seed)
    x = randn(g, 4, 9, std=2.0)
    grad_y = randn(g, 4, 9)
    xd = up(x)
    y = torch.log_softmax(xd, dim=-1) if log else torch.softmax(xd, dim=-1)
    (gx,) = vjp(y, grad_y, [xd])
    op = "log_softmax" if log else "softmax"
    tensors = [("x", x), ("y", y), ("grad_y", grad_y), ("grad_x", gx)]
    return name, tensors, meta(op, "y = %s(x) over the last dim" % op, dim=-1)


def case_silu(name, seed):
    g = gen(seed)
    x = randn(g, 5, 7, std=2.0)
    grad_y = randn(g, 5, 7)
    xd = up(x)
    y = F.silu(xd)
    (gx,) = vjp(y, grad_y, [xd])
    tensors = [("x", x), ("y", y), ("grad_y", grad_y), ("grad_x", gx)]
    return name, tensors, meta("silu", "y = x * sigmoid(x)")


def case_embedding(name, seed):
    g = gen(seed)
    weight = randn(g, 11, 6)
    ids = torch.tensor([[3, 7, 0, 3], [10, 3, 5, 7]], dtype=torch.int64)  # 3 three times, 7 twice
    grad_y = randn(g, 2, 4, 6)
    wd = up(weight)
    y = F.embedding(ids, wd)
    (gw,) = vjp(y, grad_y, [wd])
    tensors = [("weight", weight), ("ids", ids.to(torch.int32)), ("y", y), ("grad_y", grad_y), ("grad_weight", gw)]
    desc = "y = weight[ids]; grad_weight accumulates rows of grad_y over repeated ids, zero for unused rows"
    return name, tensors, meta("embedding", desc)


LLAMA3 = (8.0, 1.0, 4.0, 64)  # factor, low_freq_factor, high_freq_factor, original_max_position_embeddings

CASES = [
    lambda: case_rms_norm("rms_norm", 101, 1e-5, 1e-6),
    lambda: case_rms_norm("rms_norm_eps1e-6", 102, 1e-6, 1e-5),
    lambda: case_rope("rope_default", 201, 0, "default", 10000.0),
    lambda: case_rope("rope_default_pos37", 202, 37, "default", 10000.0),
    lambda: case_rope("rope_llama3", 203, 37, "llama3", 500000.0, LLAMA3),
    lambda: case_rope("rope_llama3_pos0", 204, 0, "llama3", 500000.0, LLAMA3),
    lambda: case_attention("attention_gqa", 301, B=2, T=6, H=4, Hkv=2, D=8, std=1.0),
    lambda: case_attention("attention_mha", 302, B=2, T=5, H=3, Hkv=3, D=8, std=1.0),
    lambda: case_attention("attention_mha_t1", 303, B=2, T=1, H=4, Hkv=4, D=8, std=1.0),
    lambda: case_swiglu("swiglu", 401),
    lambda: case_cross_entropy("cross_entropy", 501, N=10, V=37, ignored_rows=[2, 7]),
    lambda: case_cross_entropy("cross_entropy_v1000", 502, N=6, V=1000, ignored_rows=[4]),
    lambda: case_linear("linear", 601),
    lambda: case_softmax("softmax", 701, log=False),
    lambda: case_softmax("log_softmax", 702, log=True),
    lambda: case_silu("silu", 801),
    lambda: case_embedding("embedding", 901),
]


# --------------------------------------------------------------------------------------------------
# ternary QuantLinear (Tequila and its baselines; docs: /work/shared/tequila-spec.md sections 2-5)
# --------------------------------------------------------------------------------------------------

QUANT_SEED = 1101
QUANT_T, QUANT_IN, QUANT_OUT, QUANT_GROUP = 6, 256, 8, 128
QUANT_LAMBDA, QUANT_EPS = 1e-3, 1e-3
QUANT_GRID = 4096  # w = k / 4096 with small integer k: every sum, mean, median and threshold is exact in f32
QUANT_MEDIAN = "mean of two middle values"
QUANT_METHODS = [  # (file stem, method, minima_grad)
    ("absmean", "absmean", ""), ("absmedian", "absmedian", ""), ("twn", "twn", ""),
    ("tequila", "tequila", ""), ("tequila_nomix", "tequila_nomix", ""),
    ("minima_paper", "minima", "paper"), ("minima_code", "minima", "code"),
]
QUANT_GRANULARITIES = ["tensor", "channel", "group"]
QUANT_Y_TOL = (1e-4, 1e-6)  # (rtol, atol) the C++ test uses for y; grads: QUANT_GRAD_TOL
QUANT_GRAD_TOL = (1e-4, 1e-5)


def quant_groups(w, granularity):
    """View w [out, in] as [n_groups, group_elems] (a group never spans two rows, except for tensor)."""
    if granularity == "tensor":
        return w.reshape(1, -1)
    if granularity == "channel":
        return w.reshape(w.shape[0], -1)
    return w.reshape(-1, QUANT_GROUP)


def quant_median(a, lower=False):
    """Median of each row of a; for an even count the mean of the two middle values (lower=True: torch's)."""
    s = a.sort(dim=-1).values
    n = s.shape[-1]
    if n % 2 == 1 or lower:
        return s[..., (n - 1) // 2]
    return 0.5 * (s[..., n // 2 - 1] + s[..., n // 2])


def quant_ternary(w, quantizer, granularity, inclusive=True, lower_median=False):
    """(codes t in {-1, 0, 1}, alpha per element, alpha per [out, groups per row]) of w [out, in] (f64, no grad)."""
    w = w.detach()
    a = quant_groups(w.abs(), granularity)
    v = quant_groups(w, granularity)
    if quantizer == "absmean":
        alpha = a.mean(-1, keepdim=True)
        delta = alpha / 2
    elif quantizer == "absmedian":
        alpha = quant_median(a, lower_median).unsqueeze(-1)
        delta = alpha / 2
    elif quantizer == "twn":
        delta = 0.75 * a.mean(-1, keepdim=True)
        alpha = None
    else:
        raise ValueError(quantizer)
    if inclusive:
        t = (v >= delta).double() - (v <= -delta).double()
    else:
        t = (v > delta).double() - (v < -delta).double()
    if quantizer == "twn":  # alpha = mean |w| over the entries with a non-zero code
        nz = (t != 0).double()
        alpha = (a * nz).sum(-1, keepdim=True) / nz.sum(-1, keepdim=True).clamp(min=1)
    t = torch.where(alpha == 0, torch.zeros_like(t), t)  # all-zero group: dead
    alpha_el = alpha.expand_as(a).reshape(w.shape)
    t = t.reshape(w.shape)
    gpr = 1 if granularity in ("tensor", "channel") else w.shape[1] // QUANT_GROUP
    alpha_rows = alpha_el[:, ::(w.shape[1] // gpr)].contiguous()  # [out, groups per row]
    return t, alpha_el, alpha_rows


def quant_linear_ref(x, w, method, granularity, minima_grad="", lam=QUANT_LAMBDA, eps=QUANT_EPS, **qkw):
    """y [T, out] of the ternary linear layer; gradients w.r.t. the latent w come from torch.autograd.

    st = w - w.detach() is 0 in value and carries d/dw = identity, so `q + st * mask` is the STE on mask."""
    quantizer = method if method in ("absmean", "absmedian", "twn") else "absmean"
    t, alpha, _ = quant_ternary(w, quantizer, granularity, **qkw)
    q = t * alpha  # the dequantized ternary weight (a constant)
    dead = (t == 0).double()
    st = w - w.detach()
    if method in ("absmean", "absmedian", "twn"):  # BitNet STE: every latent weight gets g^T x
        return torch.matmul(x, (q + st).t())
    if method == "tequila":  # STE everywhere + per-row bias c_j = lam * sum of dead w_ji (grad lam * s_j)
        return torch.matmul(x, (q + st).t()) + lam * (w * dead).sum(1)
    if method == "tequila_nomix":  # dead weights: only the bias gradient
        return torch.matmul(x, (q + st * (1 - dead)).t()) + lam * (w * dead).sum(1)
    if method == "minima":  # + sign(x) B^T, B = +-eps on dead entries by the sign of w (w >= 0 -> +eps)
        b = eps * torch.where(w.detach() >= 0, torch.ones_like(w), -torch.ones_like(w)) * dead
        sx = torch.sign(x.detach())
        if minima_grad == "paper":  # active: g^T x; dead: eps * sum_t sign(x) g
            return torch.matmul(x, (q + st * (1 - dead)).t()) + torch.matmul(sx, (b + eps * st * dead).t())
        if minima_grad == "code":  # g^T x everywhere; dead: + sum_t sign(x) g (not scaled by eps)
            return torch.matmul(x, (q + st).t()) + torch.matmul(sx, (b + st * dead).t())
    raise ValueError((method, minima_grad))


def quant_explicit_grads(x, w, gy, method, granularity, minima_grad="", lam=QUANT_LAMBDA, eps=QUANT_EPS):
    """The spec's backward formulas written out (no autograd), to cross-check quant_linear_ref."""
    quantizer = method if method in ("absmean", "absmedian", "twn") else "absmean"
    t, alpha, _ = quant_ternary(w, quantizer, granularity)
    x, w, gy = x.detach(), w.detach(), gy.double()
    dead = t == 0
    gx = gy @ (t * alpha)
    ste = gy.t() @ x
    s = gy.sum(0)[:, None].expand_as(w)
    sgn = gy.t() @ torch.sign(x)
    zero = torch.zeros_like(w)
    if method in ("absmean", "absmedian", "twn"):
        gw = ste
    elif method == "tequila":
        gw = ste + torch.where(dead, lam * s, zero)
    elif method == "tequila_nomix":
        gw = torch.where(dead, lam * s, ste)
    elif minima_grad == "paper":
        gw = torch.where(dead, eps * sgn, ste)
    else:
        gw = ste + torch.where(dead, sgn, zero)
    return gx, gw


def quant_inputs():
    """x [T, in], w [out, in] on the 1/4096 grid with planted ties, grad_y [T, out] (all f32), per granularity."""
    g = gen(QUANT_SEED)
    T, I, O = QUANT_T, QUANT_IN, QUANT_OUT
    x = randn(g, T, I)
    for tok in range(T):  # exact zeros: sign(0) = 0 matters for minima
        x[tok, 17 + 40 * tok] = 0.0
        x[tok, 200 - 7 * tok] = 0.0
    grad_y = randn(g, T, O, mean=2.0)  # column sums s_j ~ 12 so that lam * s_j is well above f32 noise
    row_scale = torch.tensor([1.0, 0.6, 1.5, 0.8, 2.0, 1.2, 0.5, 1.0])
    row_mean = torch.tensor([0.0, 0.3, -0.2, 0.0, 0.1, -0.4, 0.0, 0.2])
    half_scale = torch.tensor([[1.0, 1.0], [1.0, 0.5], [0.7, 1.4], [1.0, 1.0],
                               [1.3, 0.8], [1.0, 2.0], [0.6, 1.0], [1.0, 1.0]])
    z = randn(g, O, I)
    base = 0.02 * row_scale[:, None] * (z + row_mean[:, None]) * half_scale.repeat_interleave(QUANT_GROUP, 1)
    k0 = torch.round(base.double() * QUANT_GRID).long()
    ws = {}
    for gran in QUANT_GRANULARITIES:
        k = k0.clone()
        kg = quant_groups(k, gran)  # a view into k
        n = kg.shape[1]
        for r in range(kg.shape[0]):
            row = kg[r]
            m = int(round(float(row.abs().sum()) / (2 * n)))  # the target Delta, in grid units
            # plant the ties +m and -m at two entries per output row of this group (tensor: 2 per row)
            rows_here = range(O) if gran == "tensor" else [0]
            for j in rows_here:
                off = j * I if gran == "tensor" else 0
                row[off + 5 + 3 * j] = m
                row[off + 9 + 3 * j] = -m
            protect = set()
            for j in rows_here:
                off = j * I if gran == "tensor" else 0
                protect |= {off + 5 + 3 * j, off + 9 + 3 * j}
            delta = 2 * n * m - int(row.abs().sum())  # make sum |k| = 2 n m exactly: Delta = m units
            step = 1 if delta > 0 else -1
            idx = [i for i in range(n) if i not in protect and abs(int(row[i])) > m + 3]
            c = 0
            while delta != 0:
                i = idx[c % len(idx)]
                c += 1
                if step < 0 and abs(int(row[i])) <= m + 3:
                    continue
                row[i] += step if row[i] > 0 else -step
                delta -= step
            assert int(row.abs().sum()) == 2 * n * m
        w = (k.double() / QUANT_GRID).float()
        assert torch.equal(w.double() * QUANT_GRID, k.double())
        ws[gran] = w
    return x, ws, grad_y


def tol_excess(a, b, tol):
    """Largest |a - b| / (atol + rtol |b|): > 1 means the C++ tolerance would catch the difference."""
    rtol, atol = tol
    a, b = a.detach().double(), b.detach().double()
    return float(((a - b).abs() / (atol + rtol * b.abs())).max())


def case_quant(stem, method, minima_grad, gran, inputs):
    x, ws, grad_y = inputs
    w = ws[gran]
    name = "quant_%s_%s" % (stem, gran)
    xd, wd = up(x), up(w)
    y = quant_linear_ref(xd, wd, method, gran, minima_grad)
    gx, gw = vjp(y, grad_y, [xd, wd])
    ex_gx, ex_gw = quant_explicit_grads(xd, wd, grad_y, method, gran, minima_grad)
    assert max_abs(gx, ex_gx) < 1e-12 and max_abs(gw, ex_gw) < 1e-12, (name, max_abs(gw, ex_gw))
    quantizer = method if method in ("absmean", "absmedian", "twn") else "absmean"
    t, alpha_el, alpha_rows = quant_ternary(wd, quantizer, gran)
    dead = t == 0
    # exact ties (|w| == Delta) and near ties: the grid makes every comparison exact in f32 as well
    a = quant_groups(wd.detach().abs(), gran)
    if quantizer == "absmean":
        delta = a.mean(-1, keepdim=True) / 2
    elif quantizer == "absmedian":
        delta = quant_median(a).unsqueeze(-1) / 2
    else:
        delta = 0.75 * a.mean(-1, keepdim=True)
    n_ties = int((a == delta).sum())
    if quantizer == "absmean":
        planted = 2 * (QUANT_OUT * QUANT_IN // QUANT_GROUP if gran == "group" else QUANT_OUT)
        assert n_ties >= planted, (name, n_ties, planted)  # planted ones, plus any |k| == m by chance
    print("    %s: dead %.1f%%, exact ties |w| == Delta: %d" % (name, 100.0 * float(dead.double().mean()), n_ties))
    TY, TG = QUANT_Y_TOL, QUANT_GRAD_TOL
    if method == "absmean":
        y_ex = quant_linear_ref(xd, wd, method, gran, inclusive=False)
        sensitivity(name, "exclusive thresholds (w > Delta): y, tol units", tol_excess(y_ex, y, TY), 10.0)
        sensitivity(name, "  ... codes changed", float(((quant_ternary(wd, "absmean", gran, inclusive=False)[0]
                                                         - t) != 0).sum()), 1.0)
    if method == "absmedian":
        t_lo = quant_ternary(wd, "absmedian", gran, lower_median=True)[0]
        y_lo = quant_linear_ref(xd, wd, method, gran, lower_median=True)
        # not asserted: on the grid the two middle values often coincide (then both conventions agree)
        print("    %s: lower median (torch.median) instead: %d codes change, y moves %.3e tol units"
              % (name, int((t_lo != t).sum()), tol_excess(y_lo, y, TY)))
    if method == "tequila":
        (gw0,) = vjp(quant_linear_ref(xd, wd, "absmean", gran), grad_y, [wd])
        sensitivity(name, "no lam*s_j on dead (absmean): grad_w, tol units", tol_excess(gw0, gw, TG), 10.0)
        print("    %-22s %-48s max|diff| = %.3e" % (name, "  ... grad_w max|diff|", max_abs(gw0, gw)))
        y0 = quant_linear_ref(xd, wd, "absmean", gran)
        sensitivity(name, "bias c dropped: y, tol units", tol_excess(y0, y, TY), 1.0)
        (gwn,) = vjp(quant_linear_ref(xd, wd, "tequila_nomix", gran), grad_y, [wd])
        sensitivity(name, "no mixed gradient (nomix): grad_w, tol units", tol_excess(gwn, gw, TG), 10.0)
        for other in QUANT_GRANULARITIES:
            if other != gran:
                yo = quant_linear_ref(xd, wd, "tequila", other)
                sensitivity(name, "granularity %s instead: y, tol units" % other, tol_excess(yo, y, TY), 10.0)
    if method == "minima":
        x1 = xd.detach().clone()
        x1[x1 == 0] = 1.0  # sign(0) read as +1: only the sign term sees it
        y_s0 = quant_linear_ref(xd, wd, method, gran, minima_grad) - torch.matmul(torch.sign(xd.detach()), (
            QUANT_EPS * torch.where(wd.detach() >= 0, 1.0, -1.0) * dead.double()).t()) + torch.matmul(
            torch.sign(x1), (QUANT_EPS * torch.where(wd.detach() >= 0, 1.0, -1.0) * dead.double()).t())
        sensitivity(name, "sign(0) = +1: y, tol units", tol_excess(y_s0, y, TY), 1.0)
        other = "code" if minima_grad == "paper" else "paper"
        (gwo,) = vjp(quant_linear_ref(xd, wd, method, gran, other), grad_y, [wd])
        sensitivity(name, "minima_grad %s instead: grad_w, tol units" % other, tol_excess(gwo, gw, TG), 10.0)
        y0 = quant_linear_ref(xd, wd, "absmean", gran)
        sensitivity(name, "eps term dropped: y, tol units", tol_excess(y0, y, TY), 10.0)
    tensors = [("x", x), ("w", w), ("grad_y", grad_y), ("y", y), ("grad_x", gx), ("grad_w", gw),
               ("codes", t.to(torch.int8)), ("alpha", alpha_rows)]
    if method in ("tequila", "tequila_nomix"):
        tensors.append(("bias", QUANT_LAMBDA * (wd.detach() * dead.double()).sum(1)))
    desc = (
        "ternary QuantLinear y = x @ (codes * alpha)^T (+ bias c_j = lambda * sum of dead w_ji for tequila*, "
        "+ sign(x) @ B^T for minima), x [T,in], w [out,in] (latent), grads of sum(y*grad_y) w.r.t. x and w; "
        "codes I8 [out,in]; alpha F64 [out, groups per row] (tensor: the one alpha repeated per row); "
        "thresholds inclusive (t = +1 if w >= Delta, -1 if w <= -Delta); w on a 1/4096 grid with planted ties"
    )
    md = meta("quant_linear", desc, method=method, granularity=gran, group_size=QUANT_GROUP,
              **{"lambda": QUANT_LAMBDA}, eps=QUANT_EPS, minima_grad=minima_grad or "paper",
              median=QUANT_MEDIAN, n_dead=int(dead.sum()), n_ties=n_ties, seed=QUANT_SEED)
    return name, tensors, md


def quant_cases():
    cache = {}

    def inputs():
        if "v" not in cache:
            cache["v"] = quant_inputs()
        return cache["v"]

    out = []
    for stem, method, mg in QUANT_METHODS:
        for gran in QUANT_GRANULARITIES:
            out.append(lambda s=stem, m=method, g_=mg, gr=gran: case_quant(s, m, g_, gr, inputs()))
    return out


CASES += quant_cases()


# --------------------------------------------------------------------------------------------------
# learnable-scale ternary baselines LSQ and SEQ (spec 5.2; ParetoQ's formulation where the spec is silent)
# --------------------------------------------------------------------------------------------------

LEARN_ALPHA_FACTOR = [1.0, 1.0, 0.75, 0.5, 1.25, 1.0, 0.625, 0.875]  # alpha_j = factor_j * max|w_j| (dyadic)
LEARN_FLOOR = 1e-5
SEQ_CLIP, SEQ_LEVELS = 0.99, 1.5
LEARN_KINKS = {"lsq": [0.5, 1.0, 1.5], "seq": [1.0 / 3.0, SEQ_CLIP]}
LEARN_TOL = (1e-4, 1e-5)  # (rtol, atol) the C++ test uses for grad_scale


def grad_scale(t, s):
    """Value t, gradient times s (the LSQ paper's gradient-scale construct)."""
    return (t - t * s).detach() + t * s


def round_pass(t):
    """Value round(t) (half to even), gradient 1 (straight through)."""
    return (t.round() - t).detach() + t


def learnable_ref(x, w, alpha, method, n_grad, variant=None):
    """y [T, out] of the LSQ / SEQ layer with per-row alpha [out]; every gradient comes from torch.autograd.

    variant (sensitivity only): 'half_away' rounds ties away from zero, 'no_scale' drops g,
    'true_clip_grad' gives SEQ's clipped weights their level 2/3 as d/dalpha (not ParetoQ's Q_p = 1),
    'ste_everywhere' lets every latent weight through."""
    g = 1.0 if variant == "no_scale" else 1.0 / math.sqrt(n_grad)
    a = grad_scale(alpha, g)[:, None]
    v = w / a
    rnd = round_pass if variant != "half_away" else (lambda t: (torch.sign(t) * torch.floor(t.abs() + 0.5) - t).detach() + t)
    if method == "lsq":  # q = clamp(round(w/a), -1, 1) * a; d/da inside: round(v) - v, outside: +-1 (= the level)
        c = torch.clamp(v, -1.0, 1.0)
        q = rnd(c) * a
    else:  # seq: q = round(clamp(w/a, +-0.99) * 1.5) / 1.5 * a
        c = torch.clamp(v, -SEQ_CLIP, SEQ_CLIP)
        q = rnd(c * SEQ_LEVELS) / SEQ_LEVELS * a
        if variant != "true_clip_grad":  # ParetoQ: d/da = Q_p = +-1 outside the window, the level is only 2/3
            out = (v.detach().abs() > SEQ_CLIP).double()
            q = q + (a - a.detach()) * torch.sign(v.detach()) * out * (1.0 - 1.0 / SEQ_LEVELS)
    if variant == "ste_everywhere":
        q = q + (w - w.detach()) * (1 - ((v.detach() >= -1) & (v.detach() <= 1)).double() if method == "lsq" else
                                    1 - (v.detach().abs() <= SEQ_CLIP).double())
    return torch.matmul(x, q.t())


def learnable_explicit(x, w, alpha, gy, method, n_grad):
    """ParetoQ's backward formulas written out (no autograd), to cross-check learnable_ref."""
    x, w, a, gy = x.detach(), w.detach(), alpha.detach()[:, None], gy.double()
    v = w / a
    hi = 1.0 if method == "lsq" else SEQ_CLIP
    inside = (v >= -hi) & (v <= hi)
    if method == "lsq":
        lvl = torch.clamp(v.round(), -1, 1)
    else:
        lvl = torch.round(torch.clamp(v, -SEQ_CLIP, SEQ_CLIP) * SEQ_LEVELS) / SEQ_LEVELS
    m = gy.t() @ x
    coef = torch.where(inside, lvl - v, torch.sign(v))
    q = lvl * a
    return (x @ q.t(), gy @ q, torch.where(inside, m, torch.zeros_like(m)), (coef * m).sum(1) / math.sqrt(n_grad),
            lvl)


def learnable_inputs(method, inputs):
    """x, w (f32, 1/4096 grid), alpha (f32) for one method: v = w/alpha kept away from the kinks,
    except LSQ's planted exact ties v = +-0.5 (half to even: 0), v = 1.5 (clipped) and v = +-1 (inclusive)."""
    x, ws, grad_y = inputs
    k = torch.round(ws["channel"].double() * QUANT_GRID).long()
    O, I = k.shape
    m = []
    for j in range(O):
        mj = int(k[j].abs().max())
        mj -= mj % 8  # alpha in grid units, divisible by 8 so that the planted ties are integers
        m.append(int(mj * LEARN_ALPHA_FACTOR[j]))
        assert m[-1] * 1.0 == mj * LEARN_ALPHA_FACTOR[j] and m[-1] % 2 == 0
    planted = {}
    if method == "lsq":
        for j in range(O):
            planted[(j, 3 + j)] = m[j] // 2
            planted[(j, 40 + j)] = -(m[j] // 2)
            planted[(j, 80 + j)] = 3 * m[j] // 2
            planted[(j, 120 + j)] = -m[j]
            planted[(j, 160 + j)] = m[j]
    kinks = LEARN_KINKS[method]
    for j in range(O):
        for i in range(I):
            if (j, i) in planted:
                k[j, i] = planted[(j, i)]
                continue
            for _ in range(8):  # push |v| at least 0.01 away from every kink
                v = abs(int(k[j, i])) / m[j]
                near = [kk for kk in kinks if abs(v - kk) < 0.01]
                if not near:
                    break
                step = max(1, int(0.02 * m[j]))
                k[j, i] += step if k[j, i] >= 0 else -step
    w = (k.double() / QUANT_GRID).float()
    alpha = (torch.tensor(m, dtype=torch.float64) / QUANT_GRID).float()
    return x, w, alpha, grad_y, len(planted)


def case_quant_learnable(method, inputs):
    name = "quant_%s_channel" % method
    x, w, alpha, grad_y, n_planted = learnable_inputs(method, inputs)
    n_grad = QUANT_IN  # scale_grad "row": N = in_features (elements per alpha), Q_p = 1
    xd, wd, ad = up(x), up(w), up(alpha)
    y = learnable_ref(xd, wd, ad, method, n_grad)
    gx, gw, ga = vjp(y, grad_y, [xd, wd, ad])
    ex_y, ex_gx, ex_gw, ex_ga, lvl = learnable_explicit(xd, wd, ad, grad_y, method, n_grad)
    for a_, b_, what in ((y, ex_y, "y"), (gx, ex_gx, "grad_x"), (gw, ex_gw, "grad_w"), (ga, ex_ga, "grad_scale")):
        assert max_abs(a_, b_) < 1e-12, (name, what, max_abs(a_, b_))
    codes = torch.round(lvl * (1.0 if method == "lsq" else SEQ_LEVELS)).to(torch.int8)
    scale_out = alpha.double() * (1.0 if method == "lsq" else 1.0 / SEQ_LEVELS)  # the ternary scale per row
    v = wd.detach() / ad.detach()[:, None]
    hi = 1.0 if method == "lsq" else SEQ_CLIP
    n_clip = int((v.abs() > hi).sum())
    print("    %s: dead %.1f%%, clipped %d, planted exact v values %d" % (
        name, 100.0 * float((codes == 0).double().mean()), n_clip, n_planted))
    TY, TG = QUANT_Y_TOL, QUANT_GRAD_TOL
    for variant, what, on in (("no_scale", "gradient scale g dropped: grad_scale", "ga"),
                              ("ste_everywhere", "STE outside the window too: grad_w", "gw")):
        yv = learnable_ref(xd, wd, ad, method, n_grad, variant)
        gv = dict(zip(("gw", "ga"), vjp(yv, grad_y, [wd, ad])))
        ref = gw if on == "gw" else ga
        sensitivity(name, what + ", tol units", tol_excess(gv[on], ref, LEARN_TOL if on == "ga" else TG), 10.0)
    (ga_t,) = vjp(learnable_ref(xd, wd, ad, method, QUANT_IN * QUANT_OUT), grad_y, [ad])
    sensitivity(name, "scale_grad tensor (N = out*in): grad_scale, tol units", tol_excess(ga_t, ga, LEARN_TOL), 10.0)
    if method == "lsq":
        yh = learnable_ref(xd, wd, ad, method, n_grad, "half_away")
        sensitivity(name, "ties rounded away from zero: y, tol units", tol_excess(yh, y, TY), 10.0)
    else:
        (gt,) = vjp(learnable_ref(xd, wd, ad, method, n_grad, "true_clip_grad"), grad_y, [ad])
        sensitivity(name, "clip gradient 2/3 (level) instead of Q_p = 1, tol units", tol_excess(gt, ga, LEARN_TOL),
                    10.0)
    tensors = [("x", x), ("w", w), ("scale", alpha), ("grad_y", grad_y), ("y", y), ("grad_x", gx), ("grad_w", gw),
               ("grad_scale", ga), ("codes", codes), ("alpha", scale_out[:, None].contiguous()),
               ("scale_init", w.double().abs().max(1).values)]
    desc = (
        "learnable-scale ternary QuantLinear (%s), one scale per output row: %s; x [T,in], w [out,in] (latent), "
        "scale F32 [out] (the learnable alpha), grads of sum(y*grad_y) w.r.t. x, w and scale (g = 1/sqrt(in)); "
        "codes I8 [out,in]; alpha F64 [out,1] the exported ternary scale; scale_init F64 [out] = max|w| per row"
        % (method, "q = clamp(round(w/a), -1, 1) * a, d/da = round(v) - v inside |v| <= 1, +-1 outside"
           if method == "lsq" else "q = round(clamp(w/a, -0.99, 0.99) * 1.5) / 1.5 * a, d/da = level - v inside "
           "|v| <= 0.99, +-1 outside (ParetoQ)"))
    md = meta("quant_linear_learnable", desc, method=method, granularity="channel", scale_grad="row",
              n_dead=int((codes == 0).sum()), n_clipped=n_clip, n_planted=n_planted, seed=QUANT_SEED)
    return name, tensors, md


def learnable_cases():
    cache = {}

    def inputs():
        if "v" not in cache:
            cache["v"] = quant_inputs()
        return cache["v"]

    return [lambda m=m: case_quant_learnable(m, inputs()) for m in ("lsq", "seq")]


CASES += learnable_cases()


# --------------------------------------------------------------------------------------------------
# tiny LLaMA: an independent plain-PyTorch model with HF module names, its weights and a golden batch
# --------------------------------------------------------------------------------------------------

TINY_LLAMA_DIR = "tiny_llama"
TINY_LLAMA_GOLDEN = "tiny_llama_golden"
TINY_LLAMA_MAX_BYTES = 1024 * 1024

# HF LlamaConfig fields (config.json). original_max_position_embeddings 64 puts the band edges at
# wavelengths 16 and 64, so head_dim 16 / theta 5e5 (wavelengths 6.3, 32.4, 167, ...) has one high, one
# medium and six low frequencies (asserted below); the default scaling moves positions 0..11 visibly.
TINY_LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "vocab_size": 96,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    },
    "max_position_embeddings": 64,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
    "attention_bias": False,
    "mlp_bias": False,
}
TINY_LLAMA_SEED = 1001
TINY_LLAMA_BATCH = (2, 12)
TINY_TOKENS = (5, 17)  # embedding rows scaled by 0.01 so that mean(x^2) ~ eps at the first RMSNorm


def encode_json(obj):
    """Deterministic JSON: sorted keys, 2-space indent, Python float repr, trailing newline."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")


class LlamaRMSNorm(torch.nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x, v):
        w = torch.ones_like(self.weight) if v.get("norm_weight_ignored") else self.weight
        return ref_rms_norm(x, w, v.get("eps", self.eps))


class LlamaAttention(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.H, self.Hkv, self.D = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        C = c["hidden_size"]
        self.q_proj = torch.nn.Linear(C, self.H * self.D, bias=False)
        self.k_proj = torch.nn.Linear(C, self.Hkv * self.D, bias=False)
        self.v_proj = torch.nn.Linear(C, self.Hkv * self.D, bias=False)
        self.o_proj = torch.nn.Linear(self.H * self.D, C, bias=False)

    def rope(self, x, inv_freq, pos0, v):
        B, T, H, D = x.shape
        if v.get("rope_interleaved"):  # pairs (2i, 2i+1) instead of rotate-half (i, i + D/2)
            xp = x.reshape(B, T, H, D // 2, 2).transpose(-1, -2).reshape(B, T, H, D)
            y = ref_rope(xp, inv_freq, pos0).reshape(B, T, H, 2, D // 2).transpose(-1, -2).reshape(B, T, H, D)
        else:
            y = ref_rope(x, inv_freq, pos0)
        return y.to(x.dtype)  # cos/sin are f64; keep the f32 model (the tolerance guide) in f32

    def forward(self, x, inv_freq, pos0, v):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.D)  # [B, T, H, D]
        k = self.k_proj(x).view(B, T, self.Hkv, self.D)
        val = self.v_proj(x).view(B, T, self.Hkv, self.D)
        q, k = self.rope(q, inv_freq, pos0, v), self.rope(k, inv_freq, pos0, v)
        if v.get("no_attn_scale"):
            q = q * math.sqrt(self.D)
        kv_map = [h % self.Hkv for h in range(self.H)] if v.get("gqa_tiled") else None
        y, _ = ref_attention(q, k, val, kv_map=kv_map, causal=not v.get("no_causal_mask"))
        return self.o_proj(y.reshape(B, T, self.H * self.D))


class LlamaMLP(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        C, I = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = torch.nn.Linear(C, I, bias=False)
        self.up_proj = torch.nn.Linear(C, I, bias=False)
        self.down_proj = torch.nn.Linear(I, C, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = LlamaAttention(c)
        self.mlp = LlamaMLP(c)
        self.input_layernorm = LlamaRMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = LlamaRMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x, inv_freq, pos0, v):
        x = x + self.self_attn(self.input_layernorm(x, v), inv_freq, pos0, v)
        return x + self.mlp(self.post_attention_layernorm(x, v))


class LlamaModel(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = torch.nn.ModuleList([LlamaDecoderLayer(c) for _ in range(c["num_hidden_layers"])])
        self.norm = LlamaRMSNorm(c["hidden_size"], c["rms_norm_eps"])


class LlamaForCausalLM(torch.nn.Module):
    """HF LlamaForCausalLM semantics; state_dict() keys are HF's (no lm_head.weight when tied)."""

    def __init__(self, c):
        super().__init__()
        self.config = c
        self.model = LlamaModel(c)
        if not c["tie_word_embeddings"]:
            self.lm_head = torch.nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        s = c["rope_scaling"]
        self.inv_freq, self.bands = inv_freq_llama3(c["rope_theta"], c["head_dim"], s["factor"], s["low_freq_factor"],
                                                    s["high_freq_factor"], s["original_max_position_embeddings"])
        self.inv_freq_default = inv_freq_default(c["rope_theta"], c["head_dim"])

    def forward(self, ids, pos0=0, variant=None):
        """ids [B, T] int64 -> logits [B, T, V]; `variant` applies one deliberate mistake (sensitivity)."""
        v = variant or {}
        inv_freq = self.inv_freq_default if v.get("no_llama3_scaling") else self.inv_freq
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, inv_freq, pos0, v)
        x = self.model.norm(x, v)
        head = v.get("lm_head") if "lm_head" in v else (
            self.model.embed_tokens.weight if self.config["tie_word_embeddings"] else self.lm_head.weight)
        return F.linear(x, head)


def init_tiny_llama(c, g):
    """float32 weights, drawn in sorted-name order from g; scales chosen so the fixture can fail."""
    model = LlamaForCausalLM(c)
    C, I = c["hidden_size"], c["intermediate_size"]
    std = {
        "embed_tokens": 0.3,  # tied head: logits std ~ 0.3 * sqrt(C) * |norm w|
        "q_proj": 0.2, "k_proj": 0.2,  # attention far from uniform
        "v_proj": 1.0 / math.sqrt(C), "o_proj": 1.0 / math.sqrt(C),
        "gate_proj": 1.0 / math.sqrt(C), "up_proj": 1.0 / math.sqrt(C), "down_proj": 1.0 / math.sqrt(I),
    }
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            kind = name.split(".")[-2]
            if kind.endswith("norm"):
                val = randn(g, *p.shape, std=0.1, mean=1.0)  # 1 + N(0, 0.1^2): "weight ignored" is visible
            else:
                val = randn(g, *p.shape, std=std[kind])
            if kind == "embed_tokens":
                for t in TINY_TOKENS:
                    val[t] *= 0.01  # mean(x^2) ~ 1e-5: the first RMSNorm's eps matters for these tokens
            p.copy_(val)
    return model


def tiny_llama_batch(c, g):
    B, T = TINY_LLAMA_BATCH
    seq = torch.randint(3, c["vocab_size"], (B, T + 1), generator=g, dtype=torch.int64)
    seq[0, 0] = c["bos_token_id"]
    seq[0, 3], seq[1, 2], seq[1, 7] = TINY_TOKENS[0], TINY_TOKENS[1], TINY_TOKENS[0]
    seq[1, 9] = c["eos_token_id"]
    ids, targets = seq[:, :T].clone(), seq[:, 1:].clone()
    targets[1, T - 1] = -100
    return ids, targets


def tiny_llama_loss(model, ids, targets, variant=None):
    logits = model(ids, variant=variant)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                           reduction="mean")
    return logits, loss


def case_tiny_llama():
    """Returns [(relative path, bytes)]: config.json, model.safetensors (F32) and the golden batch file."""
    c = TINY_LLAMA_CONFIG
    g = gen(TINY_LLAMA_SEED)
    model32 = init_tiny_llama(c, g)
    ids, targets = tiny_llama_batch(c, g)
    weights = [(n, p.detach().clone()) for n, p in sorted(model32.state_dict().items())]
    names = [n for n, _ in weights]
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names, names
    assert len(names) == 2 + 9 * c["num_hidden_layers"], names
    print("    tiny_llama: llama3 bands per frequency: %s" % " ".join(model32.bands))
    for band in ("low", "medium", "high"):
        assert band in model32.bands, "tiny llama must have >= 1 %s-frequency band" % band

    # the reference: float64 copy of the exact f32 weights
    model = LlamaForCausalLM(c)
    model.load_state_dict(model32.state_dict())
    model.double()
    params = sorted(model.named_parameters())
    logits, loss = tiny_llama_loss(model, ids, targets)
    grads = torch.autograd.grad(loss, [p for _, p in params])

    with torch.no_grad():
        p_max = torch.softmax(logits, -1).max(-1).values.mean()
        print("    tiny_llama: loss %.6f (ln V = %.3f), logits std %.3f, mean max softmax prob %.3f"
              % (float(loss), math.log(c["vocab_size"]), float(logits.std()), float(p_max)))
        # how far float32 torch lands from the f64 reference (a guide for the C++ f32 tolerances)
    logits32, loss32 = tiny_llama_loss(model32, ids, targets)
    grads32 = torch.autograd.grad(loss32, [p for _, p in sorted(model32.named_parameters())])
    gmax = max(float((a.double() - b).abs().max()) for a, b in zip(grads32, grads))
    gatol = max(float(((a.double() - b).abs() - 1e-3 * b.abs()).max()) for a, b in zip(grads32, grads))
    print("    tiny_llama: torch f32 vs f64: logits max|diff| %.2e, loss %.2e, grads max|diff| %.2e "
          "(atol needed at rtol 1e-3: %.2e); max|grad| %.2e"
          % (max_abs(logits32, logits), abs(float(loss32) - float(loss)), gmax, gatol,
             max(float(x.abs().max()) for x in grads)))

    # proofs that the fixture can fail: each mistake moves the logits (or a gradient) by far more than 1e-3
    with torch.no_grad():
        H = c["num_attention_heads"]
        other = randn(gen(TINY_LLAMA_SEED + 1), c["vocab_size"], c["hidden_size"], std=0.3).double()
        checks = [
            ("rotate-half -> interleaved pairs", {"rope_interleaved": True}),
            ("llama3 scaling dropped", {"no_llama3_scaling": True}),
            ("eps 1e-05 -> 1e-06", {"eps": 1e-6}),
            ("eps 1e-05 -> 1e-04", {"eps": 1e-4}),
            ("kv head h %% %d instead of h // %d" % (c["num_key_value_heads"], H // c["num_key_value_heads"]),
             {"gqa_tiled": True}),
            ("no causal mask", {"no_causal_mask": True}),
            ("scale 1/sqrt(D) dropped", {"no_attn_scale": True}),
            ("norm weights ignored", {"norm_weight_ignored": True}),
            ("untied head (separate random lm_head)", {"lm_head": other}),
        ]
        for what, variant in checks:
            sensitivity("tiny_llama", what, max_abs(logits, model(ids, variant=variant)), 1e-1)
        # (no pos0 check: without a KV cache, shifting every position leaves RoPE attention unchanged)
    # tied embedding: its gradient has the lm_head part as well as the lookup part
    emb = model.model.embed_tokens.weight
    i_emb = [n for n, _ in params].index("model.embed_tokens.weight")
    h = model.model.embed_tokens.weight.detach().clone().requires_grad_(True)
    _, loss_untied = tiny_llama_loss(model, ids, targets, variant={"lm_head": h})
    (g_lookup,) = torch.autograd.grad(loss_untied, [emb])
    sensitivity("tiny_llama", "embed grad without the lm_head part", max_abs(grads[i_emb], g_lookup), 1e-3)
    ignore_all = F.cross_entropy(logits.reshape(-1, c["vocab_size"]), targets.reshape(-1), ignore_index=-100,
                                 reduction="sum") / targets.numel()
    sensitivity("tiny_llama", "loss mean over all positions", abs(float(loss) - float(ignore_all)), 1e-2)

    files = []
    files.append((os.path.join(TINY_LLAMA_DIR, "config.json"), encode_json(c)))
    wmeta = {"format": "pt"}
    files.append((os.path.join(TINY_LLAMA_DIR, "model.safetensors"), encode_safetensors(weights, wmeta)))
    n_ignored = int((targets == -100).sum())
    tensors = [("ids", ids.to(torch.int32)), ("targets", targets.to(torch.int32)), ("logits", logits.detach()),
               ("loss", loss.detach().reshape([]))]
    tensors += [("grad." + n, gr) for (n, _), gr in zip(params, grads)]
    desc = (
        "tiny LLaMA (tests/reference/data/tiny_llama, HF semantics, tied embeddings) on ids [B,T]; logits "
        "[B,T,V]; loss = F.cross_entropy(logits, targets, ignore_index=-100, mean over non-ignored); "
        "grad.<name> = d loss / d <name> for every parameter (tied embedding: lookup + lm_head); all F64, "
        "computed in float64 from the f32 weights"
    )
    md = meta("llama_forward_backward", desc, model=TINY_LLAMA_DIR, pos0=0, ignore_index=-100,
              n_ignored=n_ignored, seed=TINY_LLAMA_SEED)
    files.append((TINY_LLAMA_GOLDEN + ".safetensors", encode_safetensors(tensors, md)))
    total = sum(len(b) for _, b in files)
    assert total < TINY_LLAMA_MAX_BYTES, total
    return files, (tensors, md)


# --------------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------------


def verify_file(path, expected=None):
    """Re-read a written file; check the format and (if given) that every tensor round-trips exactly."""
    with open(path, "rb") as f:
        buf = f.read()
    arrays, metadata, order = decode_safetensors(buf)
    if metadata != {"format": "pt"}:  # HF-style weight files carry only {"format": "pt"}
        for key in ("op", "generator", "description"):
            assert key in metadata, (path, key)
        assert metadata["generator"] == GENERATOR
    if expected is not None:
        names, tensors, md = expected
        assert metadata == md, path
        assert order == [n for n, _ in tensors], (path, order)
        for n, t in tensors:
            dt, a = _to_numpy(t)
            b = arrays[n]
            assert b.dtype == a.dtype and b.shape == a.shape and a.tobytes() == b.tobytes(), (path, n)
        assert encode_safetensors(tensors, md) == buf, path
    return arrays, metadata, len(buf)


def generate(out_dir):
    torch.set_num_threads(1)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for make in CASES:
        name, tensors, md = make()
        path = os.path.join(out_dir, name + ".safetensors")
        buf = encode_safetensors(tensors, md)
        with open(path, "wb") as f:
            f.write(buf)
        verify_file(path, (name, tensors, md))
        written.append(path)
    files, (tensors, md) = case_tiny_llama()
    os.makedirs(os.path.join(out_dir, TINY_LLAMA_DIR), exist_ok=True)
    for rel, buf in files:
        path = os.path.join(out_dir, rel)
        with open(path, "wb") as f:
            f.write(buf)
        if rel.endswith(".safetensors"):
            verify_file(path, (rel, tensors, md) if rel.startswith(TINY_LLAMA_GOLDEN) else None)
        written.append(path)
    assert json.loads(open(os.path.join(out_dir, TINY_LLAMA_DIR, "config.json")).read()) == TINY_LLAMA_CONFIG
    return written


def fixture_paths(out_dir):
    """The files the script owns in out_dir: *.safetensors and tiny_llama/*."""
    paths = [os.path.join(out_dir, f) for f in os.listdir(out_dir) if f.endswith(".safetensors")]
    sub = os.path.join(out_dir, TINY_LLAMA_DIR)
    if os.path.isdir(sub):
        paths += [os.path.join(sub, f) for f in os.listdir(sub)]
    return sorted(paths)


def _display(path):
    parent = os.path.basename(os.path.dirname(path))
    return os.path.join(parent, os.path.basename(path)) if parent == TINY_LLAMA_DIR else os.path.basename(path)


def describe(paths):
    total = 0
    for path in paths:
        if not path.endswith(".safetensors"):
            size = os.path.getsize(path)
            total += size
            md5 = hashlib.md5(open(path, "rb").read()).hexdigest()
            print("%-36s %6d B  md5 %s" % (_display(path), size, md5))
            continue
        arrays, md, size = verify_file(path)
        total += size
        params = {k: v for k, v in md.items() if k not in ("generator", "description")}
        shapes = " ".join("%s:%s%s" % (n, str(a.dtype).replace("float", "f").replace("int", "i"), list(a.shape))
                          for n, a in arrays.items())
        md5 = hashlib.md5(open(path, "rb").read()).hexdigest()
        if len(shapes) > 600:
            shapes = shapes[:600] + " ..."
        print("%-36s %6d B  md5 %s\n    %s\n    %s" % (_display(path), size, md5, shapes, params))
    print("total %d bytes in %d files" % (total, len(paths)))
    assert total < MAX_TOTAL_BYTES, total
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DATA_DIR, help="output directory (default: tests/reference/data)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--verify", action="store_true", help="re-read the files in --out and check the format")
    mode.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare bytes with --out")
    args = ap.parse_args()
    print("torch %s, numpy %s" % (torch.__version__, np.__version__))

    if args.verify:
        describe(fixture_paths(args.out))
        print("verify: OK")
        return 0
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = generate(tmp)
            bad = []
            for p in fresh:
                rel = os.path.relpath(p, tmp)
                ref = os.path.join(args.out, rel)
                if not os.path.exists(ref) or not filecmp.cmp(p, ref, shallow=False):
                    bad.append(rel)
            extra = sorted(set(os.path.relpath(p, args.out) for p in fixture_paths(args.out))
                           - set(os.path.relpath(p, tmp) for p in fresh))
        if bad or extra:
            print("check: FAILED; differing: %s; not generated by this script: %s" % (bad, extra))
            return 1
        print("check: OK, %d files byte-identical" % len(fresh))
        return 0
    paths = generate(args.out)
    describe(paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())

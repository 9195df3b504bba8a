#!/usr/bin/python3
"""Golden fixtures for libtequila's fused autograd ops, computed with plain PyTorch.

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
  * references use standard torch ops and torch.autograd only (no hand-written backward).
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
MAX_TOTAL_BYTES = 2 * 1024 * 1024

# --------------------------------------------------------------------------------------------------
# safetensors, by hand
# --------------------------------------------------------------------------------------------------

_NP_OF = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8"}
_DTYPE_OF_TORCH = {torch.float32: "F32", torch.float64: "F64", torch.int32: "I32", torch.int64: "I64"}


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
# driver
# --------------------------------------------------------------------------------------------------


def verify_file(path, expected=None):
    """Re-read a written file; check the format and (if given) that every tensor round-trips exactly."""
    with open(path, "rb") as f:
        buf = f.read()
    arrays, metadata, order = decode_safetensors(buf)
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
    return written


def describe(paths):
    total = 0
    for path in paths:
        arrays, md, size = verify_file(path)
        total += size
        params = {k: v for k, v in md.items() if k not in ("generator", "description")}
        shapes = " ".join("%s:%s%s" % (n, str(a.dtype).replace("float", "f").replace("int", "i"), list(a.shape))
                          for n, a in arrays.items())
        md5 = hashlib.md5(open(path, "rb").read()).hexdigest()
        print("%-36s %6d B  md5 %s\n    %s\n    %s" % (os.path.basename(path), size, md5, shapes, params))
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
        paths = sorted(os.path.join(args.out, f) for f in os.listdir(args.out) if f.endswith(".safetensors"))
        describe(paths)
        print("verify: OK")
        return 0
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = generate(tmp)
            bad = []
            for p in fresh:
                ref = os.path.join(args.out, os.path.basename(p))
                if not os.path.exists(ref) or not filecmp.cmp(p, ref, shallow=False):
                    bad.append(os.path.basename(p))
            extra = sorted(set(f for f in os.listdir(args.out) if f.endswith(".safetensors"))
                           - set(os.path.basename(p) for p in fresh))
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

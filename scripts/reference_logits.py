#!/usr/bin/python3
"""Independent float64 NumPy reference for LLaMA logits: writes the golden files mixq's forward pass is tested against.

Regenerate (from the project root; needs only Debian's python3 + numpy, never mixq itself):

    /usr/bin/python3 scripts/reference_logits.py            # reads ../shared/models, writes tests/golden/
    /usr/bin/python3 scripts/reference_logits.py --shared /path/to/shared --out tests/golden

It reads the checkpoints with its own parsers (llama2.c v0 layout for stories260K.bin, safetensors +
config.json for docs-5M), runs the whole LLaMA forward pass in float64 for the fixed prompts below, and
writes one golden file per model:

    line 1: a JSON header (one line, UTF-8) ending in "\\n": format_version, script, model, model_sha256,
            dtype ("float32"), compute_dtype ("float64"), vocab_size, rope_style, prompts (lists of token
            ids), positions (total), data_bytes
    then:   float32 little-endian logits: prompt by prompt, position by position, vocab_size per position
            (the logits after every token of every prompt, each prompt starting from an empty cache).

tests/model/reference_logits_test.cc reads these files; bump FORMAT_VERSION when the layout changes.
"""

import argparse
import hashlib
import json
import os
import struct
import sys

import numpy as np

FORMAT_VERSION = 1
SCRIPT = "scripts/reference_logits.py"

# Fixed prompts: token id lists starting with BOS = 1, every id below the model's vocab size.
STORIES_PROMPTS = [
    [1, 403, 407, 261, 378],
    [1, 67, 400, 302, 271, 445, 299, 470, 311],
    [1, 403, 407, 261, 378, 276, 395, 308, 354, 318, 287, 331, 500, 271, 259, 511],
]
DOCS_PROMPTS = [
    [1, 100, 2000, 37, 4095],
    [1, 512, 1024, 7, 300, 301, 302, 3000, 17, 999, 4000],
    [1, 260, 261, 262, 263, 1500, 2500, 3500, 45, 46, 47, 900, 901, 902, 3333, 12],
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_llama2c_v0(path):
    """llama2.c legacy layout: 7 int32 header, then fp32 tensors; RoPE pairs are interleaved (2i, 2i+1)."""
    raw = open(path, "rb").read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    head = dim // n_heads
    kv_dim = n_kv_heads * head
    data = np.frombuffer(raw, dtype="<f4", offset=28).astype(np.float64)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        t = data[pos:pos + n].reshape(shape)
        pos += n
        return t

    emb = take(vocab, dim)
    rms_att = take(n_layers, dim)
    wq = take(n_layers, dim, dim)
    wk = take(n_layers, kv_dim, dim)
    wv = take(n_layers, kv_dim, dim)
    wo = take(n_layers, dim, dim)
    rms_ffn = take(n_layers, dim)
    w1 = take(n_layers, hidden, dim)
    w2 = take(n_layers, dim, hidden)
    w3 = take(n_layers, hidden, dim)
    rms_final = take(dim)
    take(seq_len, head // 2)  # legacy freq_cis_real, unused
    take(seq_len, head // 2)  # legacy freq_cis_imag, unused
    out = emb if shared else take(vocab, dim)
    layers = [dict(attn_norm=rms_att[i], wq=wq[i], wk=wk[i], wv=wv[i], wo=wo[i], ffn_norm=rms_ffn[i],
                   w_gate=w1[i], w_down=w2[i], w_up=w3[i]) for i in range(n_layers)]
    cfg = dict(dim=dim, n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=head, vocab=vocab, eps=1e-5,
               theta=10000.0, rope="interleaved")
    return cfg, dict(emb=emb, layers=layers, norm=rms_final, out=out)


def read_safetensors(path):
    """Own safetensors reader: uint64 header length, JSON header, data; returns name -> float64 array."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    kinds = {"F32": "<f4", "F16": "<f2"}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        buf = raw[base + begin:base + end]
        if info["dtype"] == "BF16":
            u16 = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=kinds[info["dtype"]])
        tensors[name] = arr.astype(np.float64).reshape(info["shape"])
    return tensors


def load_hf(folder):
    """Hugging Face LlamaForCausalLM: RoPE pairs are (i, i + head_dim/2) (rotate_half), q/k not permuted."""
    cfg_json = json.load(open(os.path.join(folder, "config.json")))
    t = read_safetensors(os.path.join(folder, "model.safetensors"))
    dim = cfg_json["hidden_size"]
    n_heads = cfg_json["num_attention_heads"]
    cfg = dict(dim=dim, n_heads=n_heads, n_kv_heads=cfg_json.get("num_key_value_heads", n_heads),
               head_dim=cfg_json.get("head_dim", dim // n_heads), vocab=cfg_json["vocab_size"],
               eps=cfg_json["rms_norm_eps"], theta=cfg_json.get("rope_theta", 10000.0), rope="half")
    assert cfg_json.get("rope_scaling") is None, "rope scaling is not implemented in this reference"
    layers = []
    for i in range(cfg_json["num_hidden_layers"]):
        p = f"model.layers.{i}."
        layers.append(dict(attn_norm=t[p + "input_layernorm.weight"], wq=t[p + "self_attn.q_proj.weight"],
                           wk=t[p + "self_attn.k_proj.weight"], wv=t[p + "self_attn.v_proj.weight"],
                           wo=t[p + "self_attn.o_proj.weight"], ffn_norm=t[p + "post_attention_layernorm.weight"],
                           w_gate=t[p + "mlp.gate_proj.weight"], w_down=t[p + "mlp.down_proj.weight"],
                           w_up=t[p + "mlp.up_proj.weight"]))
    emb = t["model.embed_tokens.weight"]
    out = emb if cfg_json.get("tie_word_embeddings", False) else t["lm_head.weight"]
    return cfg, dict(emb=emb, layers=layers, norm=t["model.norm.weight"], out=out)


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, positions, cfg):
    """x: [T, heads, head_dim]; rotates pairs by position * theta^(-2i/head_dim)."""
    d = cfg["head_dim"]
    half = d // 2
    freq = cfg["theta"] ** (-np.arange(half, dtype=np.float64) * 2.0 / d)
    ang = positions[:, None].astype(np.float64) * freq[None, :]  # [T, half]
    cos = np.cos(ang)[:, None, :]
    sin = np.sin(ang)[:, None, :]
    out = x.copy()
    if cfg["rope"] == "interleaved":
        a, b = x[..., 0::2], x[..., 1::2]
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
    else:
        a, b = x[..., :half], x[..., half:]
        out[..., :half] = a * cos - b * sin
        out[..., half:] = a * sin + b * cos
    return out


def forward(cfg, w, tokens):
    """Logits [T, vocab] after every token of `tokens`, causal attention from position 0."""
    T = len(tokens)
    H, KV, D = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]
    group = H // KV
    pos = np.arange(T)
    x = w["emb"][np.array(tokens)]
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    for lw in w["layers"]:
        xn = rms_norm(x, lw["attn_norm"], cfg["eps"])
        q = rope((xn @ lw["wq"].T).reshape(T, H, D), pos, cfg)
        k = rope((xn @ lw["wk"].T).reshape(T, KV, D), pos, cfg)
        v = (xn @ lw["wv"].T).reshape(T, KV, D)
        att = np.empty((T, H, D))
        for h in range(H):
            scores = q[:, h, :] @ k[:, h // group, :].T / np.sqrt(D) + mask
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
            att[:, h, :] = scores @ v[:, h // group, :]
        x = x + att.reshape(T, H * D) @ lw["wo"].T
        xn = rms_norm(x, lw["ffn_norm"], cfg["eps"])
        gate = xn @ lw["w_gate"].T
        up = xn @ lw["w_up"].T
        x = x + (gate / (1.0 + np.exp(-gate)) * up) @ lw["w_down"].T
    return rms_norm(x, w["norm"], cfg["eps"]) @ w["out"].T


def write_golden(out_path, model_rel, model_path, cfg, weights, prompts):
    for p in prompts:
        assert p[0] == 1 and all(0 <= t < cfg["vocab"] for t in p), p
    logits = np.concatenate([forward(cfg, weights, p) for p in prompts]).astype("<f4")
    header = dict(format_version=FORMAT_VERSION, script=SCRIPT, model=model_rel, model_sha256=sha256(model_path),
                  dtype="float32", compute_dtype="float64", vocab_size=cfg["vocab"], rope_style=cfg["rope"],
                  prompts=prompts, positions=int(logits.shape[0]), data_bytes=int(logits.nbytes))
    with open(out_path, "wb") as f:
        f.write((json.dumps(header, separators=(",", ":")) + "\n").encode())
        f.write(logits.tobytes())
    print(f"{out_path}: {logits.shape[0]} positions x {cfg['vocab']} logits, max |logit| {np.abs(logits).max():.4f}")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.path.join(root, "..", "shared"), help="the shared data folder")
    ap.add_argument("--out", default=os.path.join(root, "tests", "golden"), help="where the golden files go")
    args = ap.parse_args()
    models = os.path.join(args.shared, "models")
    os.makedirs(args.out, exist_ok=True)

    rel = "stories260K/stories260K.bin"
    cfg, w = load_llama2c_v0(os.path.join(models, rel))
    write_golden(os.path.join(args.out, "stories260K_logits.golden"), rel, os.path.join(models, rel), cfg, w,
                 STORIES_PROMPTS)

    rel = "docs-5M/model.safetensors"
    cfg, w = load_hf(os.path.join(models, "docs-5M"))
    write_golden(os.path.join(args.out, "docs-5M_logits.golden"), rel, os.path.join(models, rel), cfg, w,
                 DOCS_PROMPTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())

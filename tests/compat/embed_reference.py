"""Independent reference for dsproc's sentence embeddings: all-MiniLM-L6-v2 in numpy.

    python embed_reference.py MODEL_DIR DOCS.jsonl OUT.jsonl [--max-tokens 256] [--text text]

Reads MODEL_DIR/model.safetensors by hand (8-byte little-endian header length, JSON
header, raw little-endian tensors), tokenizes with the Python `tokenizers` package
from MODEL_DIR/tokenizer.json (its fixed padding switched off, truncation to
--max-tokens), runs the BERT encoder in numpy (float32; GELU with erf), mean-pools over
the attention mask and L2-normalises, as the model's sentence-transformers pipeline
(Transformer, Pooling mean, Normalize). Writes {"id", "vector"} lines in input order
and prints {"docs", "seconds", "docs_per_s"} for the forward passes (tokenizing
included, reading the model excluded).
"""

import argparse
import json
import struct
import sys
import time

import numpy as np
from tokenizers import Tokenizer

try:
    from scipy.special import erf
except ImportError:  # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7)
    def erf(x):
        s = np.sign(x)
        a = np.abs(x)
        t = 1.0 / (1.0 + 0.3275911 * a)
        y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-a * a)
        return s * y

DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        dt = np.dtype(DTYPES[meta["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(data[base + start:base + end], dtype=dt).reshape(meta["shape"]).astype(
            np.float32 if meta["dtype"].startswith("F") else np.int64)
    return out


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)).astype(np.float32))


class Bert:
    def __init__(self, model_dir):
        self.cfg = json.load(open(f"{model_dir}/config.json"))
        self.w = read_safetensors(f"{model_dir}/model.safetensors")
        self.eps = self.cfg["layer_norm_eps"]
        self.heads = self.cfg["num_attention_heads"]

    def lin(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def forward(self, ids, mask):
        w = self.w
        b, n = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n][None] \
            + w["embeddings.token_type_embeddings.weight"][0][None, None]
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        h = self.heads
        d = x.shape[-1] // h
        add = ((1.0 - mask[:, None, None, :]) * np.finfo(np.float32).min).astype(np.float32)
        for i in range(self.cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q = self.lin(x, p + "attention.self.query").reshape(b, n, h, d).transpose(0, 2, 1, 3)
            k = self.lin(x, p + "attention.self.key").reshape(b, n, h, d).transpose(0, 2, 1, 3)
            v = self.lin(x, p + "attention.self.value").reshape(b, n, h, d).transpose(0, 2, 1, 3)
            s = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(d)) + add
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = (s @ v).transpose(0, 2, 1, 3).reshape(b, n, h * d)
            x = layer_norm(self.lin(a, p + "attention.output.dense") + x, w[p + "attention.output.LayerNorm.weight"],
                           w[p + "attention.output.LayerNorm.bias"], self.eps)
            f = gelu(self.lin(x, p + "intermediate.dense"))
            x = layer_norm(self.lin(f, p + "output.dense") + x, w[p + "output.LayerNorm.weight"],
                           w[p + "output.LayerNorm.bias"], self.eps)
        m = mask[:, :, None].astype(np.float32)
        pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def embed(model, tok, texts, batch=16):
    encs = tok.encode_batch(texts)
    ids = [e.ids for e in encs]
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
    out = [None] * len(ids)
    for s in range(0, len(order), batch):
        chunk = order[s:s + batch]
        n = max(len(ids[i]) for i in chunk)
        arr = np.zeros((len(chunk), n), dtype=np.int64)
        mask = np.zeros((len(chunk), n), dtype=np.float32)
        for r, i in enumerate(chunk):
            arr[r, :len(ids[i])] = ids[i]
            mask[r, :len(ids[i])] = 1.0
        vecs = model.forward(arr, mask)
        for r, i in enumerate(chunk):
            out[i] = vecs[r]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("docs")
    ap.add_argument("out")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--text", default="text")
    ap.add_argument("--id", default="id")
    args = ap.parse_args()
    model = Bert(args.model_dir)
    tok = Tokenizer.from_file(f"{args.model_dir}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(max_length=args.max_tokens)
    rows = [json.loads(l) for l in open(args.docs, encoding="utf-8") if l.strip()]
    t0 = time.perf_counter()
    vecs = embed(model, tok, [r[args.text] for r in rows])
    secs = time.perf_counter() - t0
    with open(args.out, "w") as f:
        for r, v in zip(rows, vecs):
            f.write(json.dumps({"id": r.get(args.id), "vector": [float(x) for x in v]}) + "\n")
    print(json.dumps({"docs": len(rows), "seconds": secs, "docs_per_s": len(rows) / secs if secs else None}))


if __name__ == "__main__":
    sys.exit(main())

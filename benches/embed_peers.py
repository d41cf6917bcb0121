"""embedding_drift's embedding throughput against a numpy reference, and their agreement.

    DSPROC_BIN=target/release/dsproc DSPROC_MODELS=~/.cache/dsproc-ground/models \
        python benches/embed_peers.py [--n 1000] [--max-tokens 256] [--rounds 3] [--cores 0-1]

The same sample of real documents (700 of datasets/quality, 300 of
datasets/multilingual: English kernel docs, changelogs, licences, man pages in 26
languages) is embedded by
  dsproc     `dsproc run` with an embedding_drift check on a first version (the
             check's own timing `elapsed.new_docs_per_s`: sampling, tokenizing and the
             forward passes; loading the model excluded)
  numpy      tests/compat/embed_reference.py (Python tokenizers + BERT in numpy with
             its BLAS; tokenizing and the forward passes, loading excluded)
pinned to the same cores (`taskset -c`, BLAS threads = cores), in interleaved rounds.
Prints docs/s per round, the medians and their ratio, and the agreement of the
vectors (cosine of each document's two embeddings: min, mean) from the first round.
sentence-transformers (torch) is not installed here; numpy is the reference.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def docs(n):
    q = [json.loads(l) for l in open(f"{REPO}/datasets/quality/sample.jsonl", encoding="utf-8")]
    m = [json.loads(l) for l in open(f"{REPO}/datasets/multilingual/sample.jsonl", encoding="utf-8")]
    q = [r for r in q if r["text"].strip()]
    m = [r for r in m if r["text"].strip()]
    k = min(len(q), n * 7 // 10)
    return [{"id": r["id"], "text": r["text"]} for r in q[:k] + m[:n - k]]


def cpus(spec):
    out = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cores", default=f"0-{os.cpu_count() - 1}")
    args = ap.parse_args()
    dsproc = os.environ.get("DSPROC_BIN", f"{REPO}/target/release/dsproc")
    model = os.path.join(os.environ.get("DSPROC_MODELS", os.path.expanduser("~/.cache/dsproc-ground/models")),
                         "all-minilm-l6-v2")
    ncores = len(cpus(args.cores))
    env = dict(os.environ, OMP_NUM_THREADS=str(ncores), OPENBLAS_NUM_THREADS=str(ncores),
               MKL_NUM_THREADS=str(ncores), RAYON_NUM_THREADS=str(ncores))
    pin = ["taskset", "-c", args.cores]
    work = tempfile.mkdtemp(prefix="embed_peers_")
    rows = docs(args.n)
    os.makedirs(f"{work}/in")
    with open(f"{work}/in/a.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    with open(f"{work}/j.toml", "w") as f:
        f.write(f'name = "peers"\n[input]\nuri = "in/*.jsonl"\nid = "id"\n[output]\nuri = "out"\nformat = "parquet"\n'
                f'mode = "overwrite"\n[[checks]]\nname = "embedding_drift"\nmodel = "{model}"\n'
                f'max_tokens = {args.max_tokens}\nsample = {len(rows)}\n')
    ours, ref, agreement = [], [], None
    for r in range(args.rounds):
        subprocess.run(["rm", "-rf", f"{work}/out"], check=True)
        p = subprocess.run(pin + [dsproc, "run", "j.toml", "--json", "-q"], cwd=work, env=env, capture_output=True,
                           text=True)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            return 1
        c = json.loads(p.stdout)["manifest"]["checks"][0]
        ours.append(c["elapsed"]["new_docs_per_s"])
        p = subprocess.run(pin + [sys.executable, f"{REPO}/tests/compat/embed_reference.py", model, f"{work}/in/a.jsonl",
                                  f"{work}/ref.jsonl", "--max-tokens", str(args.max_tokens)], env=env,
                           capture_output=True, text=True)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            return 1
        ref.append(json.loads(p.stdout.strip().splitlines()[-1])["docs_per_s"])
        print(json.dumps({"round": r, "dsproc_docs_per_s": round(ours[-1], 2), "numpy_docs_per_s": round(ref[-1], 2)}),
              flush=True)
        if agreement is None:
            import pyarrow.parquet as pq
            t = pq.read_table(f"{work}/out/{c['embeddings']['path']}")
            a = dict(zip(t.column("id").to_pylist(), np.array(t.column("vector").to_pylist(), dtype=np.float64)))
            cos = []
            for line in open(f"{work}/ref.jsonl"):
                x = json.loads(line)
                v, w = a[x["id"]], np.array(x["vector"], dtype=np.float64)
                cos.append(float(v @ w / np.linalg.norm(v) / np.linalg.norm(w)))
            agreement = {"docs": len(cos), "cosine_min": min(cos), "cosine_mean": sum(cos) / len(cos)}
    out = {"docs": len(rows), "max_tokens": args.max_tokens, "cores": args.cores, "binary": dsproc,
           "dsproc_docs_per_s": statistics.median(ours), "numpy_docs_per_s": statistics.median(ref),
           "ratio_dsproc_over_numpy": statistics.median(ours) / statistics.median(ref), "agreement": agreement}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

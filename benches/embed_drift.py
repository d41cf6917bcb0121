"""embedding_drift on real text: degraded versions must fail, resamples must pass.

    DSPROC_BIN=target/debug/dsproc DSPROC_MODELS=~/.cache/dsproc-ground/models \
        python benches/embed_drift.py [--n 500] [--max-tokens 128] [--seeds 5] [--disjoint]

v1 = a random sample of `--n` documents of datasets/quality/sample.jsonl (1,194 real
documents: kernel docs and sources, Debian changelogs, licences, man pages). Every
candidate version is compared with v1 (`baseline = 1`):
  other_corpus  30% of another random sample replaced by non-English man pages
                (datasets/multilingual)
  mojibake      the same, as mojibake (UTF-8 bytes decoded as cp1252)
  boilerplate   30% replaced by web boilerplate (cookie banners, newsletter forms, footers)
  same_corpus   `--seeds` other random samples of the same corpus (no replacement)
Expected: the degraded ones exit 3 (rejected), the resamples exit 0. With
`--disjoint` the candidates are drawn from the documents v1 does not hold (with the
default, independent samples share ~40% of their documents with v1, which pulls the
classifier's held-out AUC below 0.5). Prints one line per version with the check's
values and a JSON summary at the end.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(path, keep=lambda r: True):
    rows = [json.loads(l) for l in open(os.path.join(REPO, path), encoding="utf-8") if l.strip()]
    return [(r["id"], r["text"]) for r in rows if r["text"].strip() and keep(r)]


def sample(docs, n, seed):
    key = lambda d: hashlib.sha256(f"{seed}/{d[0]}".encode()).hexdigest()
    return sorted(docs, key=key)[:n]


BOILER = [
    "We use cookies to improve your experience. By continuing to browse you agree to our Cookie Policy. Accept all | Reject | Settings",
    "Subscribe to our newsletter! Enter your email address to get the latest deals and updates straight to your inbox. Sign up now",
    "Home | About us | Contact | Privacy Policy | Terms of Service | Sitemap. Copyright (c) {y} {site}. All rights reserved.",
    "Click here to read more. Share this article on Facebook, Twitter, LinkedIn. Related posts: top {k} tips you need to know",
    "Page {k} of {m}. Previous | Next. Sponsored content. Advertisement. Loading comments... Log in to leave a reply",
]


def boilerplate(i):
    parts = [BOILER[(i + j) % len(BOILER)] for j in range(2 + i % 3)]
    return "\n".join(parts).format(y=2000 + i % 25, site=f"site{i % 7}.example.com", k=i % 10 + 2, m=i % 30 + 12)


def mojibake(t):
    return t.encode("utf-8").decode("cp1252", errors="replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--disjoint", action="store_true")
    ap.add_argument("--method", default="auc")
    args = ap.parse_args()
    dsproc = os.environ.get("DSPROC_BIN", os.path.join(REPO, "target/debug/dsproc"))
    model = os.path.join(os.environ.get("DSPROC_MODELS", os.path.expanduser("~/.cache/dsproc-ground/models")),
                         "all-minilm-l6-v2")
    corpus = load("datasets/quality/sample.jsonl")
    other = load("datasets/multilingual/sample.jsonl", lambda r: r.get("source_lang") != "en")
    n = args.n
    v1 = sample(corpus, n, "v1")
    pool = [d for d in corpus if d not in set(v1)] if args.disjoint else corpus
    work = tempfile.mkdtemp(prefix="embed_drift_")

    def run(name, docs, baseline):
        os.makedirs(f"{work}/in", exist_ok=True)
        with open(f"{work}/in/a.jsonl", "w", encoding="utf-8") as f:
            for i, t in docs:
                f.write(json.dumps({"id": i, "text": t}) + "\n")
        pin = "baseline = 1\n" if baseline else ""
        with open(f"{work}/j.toml", "w") as f:
            f.write(f'name = "drift"\n[input]\nuri = "in/*.jsonl"\nid = "id"\n[output]\nuri = "out"\nformat = "parquet"\n'
                    f'mode = "overwrite"\n[[checks]]\nname = "embedding_drift"\nmodel = "{model}"\n'
                    f'max_tokens = {args.max_tokens}\nsample = {n}\nmethod = "{args.method}"\n{pin}')
        t0 = time.time()
        p = subprocess.run([dsproc, "run", "j.toml", "--json", "-q"], cwd=work, capture_output=True, text=True)
        secs = time.time() - t0
        versions = sorted(int(v[:-5]) for v in os.listdir(f"{work}/out/_versions"))
        m = json.load(open(f"{work}/out/_versions/{versions[-1]}.json"))
        c = m["checks"][0]
        row = {"name": name, "exit": p.returncode, "status": m["status"], "seconds": round(secs, 1)}
        if "auc" in c:
            row.update({"auc": c["auc"]["value"], "mmd2": c["mmd"]["value"], "mean_distance": c["mean_distance"]["value"],
                        "ks": c["cosine_to_centroid"]["ks_statistic"], "passed": c["passed"],
                        "baseline": c["baseline_embeddings"]})
        print(json.dumps(row), flush=True)
        return row

    rows = [run("v1", v1, False)]
    base = sample(pool, n, "degraded")
    k = n * 3 // 10
    repl = sample(other, k, "other")
    for name, make in [("other_corpus", lambda j, t: repl[j][1]),
                       ("mojibake", lambda j, t: mojibake(repl[j][1])),
                       ("boilerplate", lambda j, t: boilerplate(j))]:
        docs = list(base)
        for j in range(k):
            at = j * n // k
            docs[at] = (docs[at][0], make(j, docs[at][1]))
        rows.append(run(name, docs, True))
    for s in range(args.seeds):
        rows.append(run(f"same_corpus_seed{s}", sample(pool, n, f"same{s}"), True))
    degraded_ok = all(r["exit"] == 3 and r["status"] == "rejected" for r in rows[1:4])
    same_ok = all(r["exit"] == 0 for r in rows[4:])
    cur = json.load(open(f"{work}/out/manifest.json"))
    print(json.dumps({"n": n, "max_tokens": args.max_tokens, "method": args.method, "disjoint": args.disjoint,
                      "degraded_rejected": degraded_ok, "same_corpus_passed": same_ok,
                      "current_version": cur["version"], "dir": work}))
    return 0 if degraded_ok and same_ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""dedup_minhash quality against brute-force truth, and datasketch with the same layout.

Truth: the exact Jaccard of every pair of documents over the same shingles dsproc
uses (lower-cased runs of letters/digits, `ngram` words at a time; a shorter text is
one shingle), found with an exact all-pairs similarity join (prefix filtering: two
sets with J >= t must share one of the first |x| - ceil(t|x|) + 1 tokens of each in
a global order, so no pair at or above the threshold is missed), then verified.

dsproc: `dsproc run` with dedup_minhash (verify = true, keep_cluster_column = true).
Two pairwise scores per tool:
  clustering: the tool's clusters against the truth clustering (connected components
    of the J >= t graph, which is what exact near-dedup removes by): a pair of
    documents is predicted when they share a cluster, true when they share a truth
    component (the standard pairwise precision/recall of a clustering);
  direct: predicted pairs against the pairs with J >= t themselves. Clusters are
    transitive, so on corpora with chains of variants (licence texts) their
    same-cluster pairs include many J < t pairs: direct precision is low for every
    tool that clusters, and is shown for the raw LSH candidates only as reference.
datasketch 2.0 MinHashLSH with the same num_perm, bands and rows: raw candidates
(query hits), candidates + connected components, and + exact verification (what
dsproc computes).

usage: PY=~/.cache/pii-peers/venv/bin/python $PY benches/minhash_quality.py CORPUS.jsonl [THRESHOLD] [NUM_PERM]
env: DSPROC_BIN (default target/release/dsproc), NGRAM (5), SEED (42)
"""
import glob, itertools, json, math, os, re, subprocess, sys, tempfile, time
from collections import defaultdict

corpus = os.path.abspath(sys.argv[1])
t = float(sys.argv[2]) if len(sys.argv) > 2 else 0.8
num_perm = int(sys.argv[3]) if len(sys.argv) > 3 else 128
ngram = int(os.environ.get("NGRAM", "5"))
seed = int(os.environ.get("SEED", "42"))
binary = os.path.abspath(os.environ.get("DSPROC_BIN", "target/release/dsproc"))

WORD = re.compile(r"[^\W_]+")


def shingles(text):
    words = WORD.findall(text.lower())
    if not words:
        return frozenset()
    if len(words) <= ngram:
        return frozenset([tuple(words)])
    return frozenset(tuple(words[i:i + ngram]) for i in range(len(words) - ngram + 1))


name = os.path.basename(corpus)
docs = {}
with open(corpus, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
        docs[f"{name}:{line_no}"] = json.loads(line)["text"]
ids = list(docs)
sets = {i: shingles(docs[i]) for i in ids}
print(f"{name}: {len(ids)} docs, threshold {t}, num_perm {num_perm}, {ngram}-word shingles", flush=True)


def jac(a, b):
    x, y = sets[a], sets[b]
    if not x or not y:
        return 0.0
    i = len(x & y)
    return i / (len(x) + len(y) - i)


# --- truth: prefix-filtered all-pairs join -------------------------------------
t0 = time.time()
freq = defaultdict(int)
for s in sets.values():
    for g in s:
        freq[g] += 1
index = defaultdict(list)
cands = set()
for i in ids:
    s = sets[i]
    if not s:
        continue
    toks = sorted(s, key=lambda g: (freq[g], g))
    p = len(toks) - math.ceil(t * len(toks)) + 1
    for g in toks[:p]:
        for j in index[g]:
            cands.add((j, i))
        index[g].append(i)
truth = {(a, b) if a < b else (b, a) for a, b in cands if jac(a, b) >= t}
print(f"truth: {len(truth)} pairs with J >= {t} ({len(cands)} checked, {time.time() - t0:.1f}s)", flush=True)


def components(pairs):
    parent = {}

    def find(x):
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {i: find(i) for i in ids}


truth_cluster = components(truth)


def c2(n):
    return n * (n - 1) // 2


def prf(tp, pred, true):
    r = tp / true if true else 1.0
    p = tp / pred if pred else 1.0
    return r, p, (2 * p * r / (p + r) if p + r else 0.0)


def score(cluster, label):
    """cluster: id -> cluster label (every id)."""
    cells, sizes = defaultdict(int), defaultdict(int)
    for i in ids:
        cells[(cluster[i], truth_cluster[i])] += 1
        sizes[cluster[i]] += 1
    tsizes = defaultdict(int)
    for i in ids:
        tsizes[truth_cluster[i]] += 1
    pred = sum(c2(n) for n in sizes.values())
    r, p, f1 = prf(sum(c2(n) for n in cells.values()), pred, sum(c2(n) for n in tsizes.values()))
    found = sum(1 for a, b in truth if cluster[a] == cluster[b])
    groups = defaultdict(list)
    for i in ids:
        groups[cluster[i]].append(i)
    direct_tp = sum(1 for g in groups.values() if len(g) > 1 for a, b in itertools.combinations(g, 2) if jac(a, b) >= t) \
        if pred <= 5_000_000 else None
    dr, dp, df = prf(found, pred, len(truth))
    if direct_tp is not None:
        dp = direct_tp / pred if pred else 1.0
        df = 2 * dp * dr / (dp + dr) if dp + dr else 0.0
    print(f"{label:<26} clustering R {r:.4f} P {p:.4f} F1 {f1:.4f} | direct R {dr:.4f} P "
          f"{dp if direct_tp is not None else float('nan'):.4f}  ({pred} same-cluster pairs)")
    return {"clustering": [r, p, f1], "direct_recall": dr, "direct_precision": dp if direct_tp is not None else None}


def score_pairs(pred, label):
    r, p, f1 = prf(len(pred & truth), len(pred), len(truth))
    print(f"{label:<26} direct R {r:.4f} P {p:.4f} F1 {f1:.4f}  ({len(pred)} candidate pairs)")
    return {"direct": [r, p, f1]}


# --- dsproc --------------------------------------------------------------------
with tempfile.TemporaryDirectory() as tmp:
    job = os.path.join(tmp, "job.toml")
    with open(job, "w") as f:
        f.write(f"""name = "mhq"
[input]
uri = "{corpus}"
[[steps]]
op = "dedup_minhash"
threshold = {t}
num_perm = {num_perm}
ngram = {ngram}
seed = {seed}
keep_cluster_column = true
[output]
uri = "{tmp}/out"
""")
    t0 = time.time()
    subprocess.run([binary, "run", "-q", job], check=True)
    el = time.time() - t0
    import pyarrow.parquet as pq
    tab = pq.read_table(glob.glob(f"{tmp}/out/*.parquet"), columns=["id", "cluster_id"]).to_pylist()
    m = json.load(open(f"{tmp}/out/manifest.json"))
info, stats = m["steps"][0]["info"], m["steps"][0]["stats"]
bands, rows = info["bands"], info["rows"]
print(f"dsproc: {el:.1f}s, bands {bands} x rows {rows}, stats {stats}")
res = {"dsproc": score({r["id"]: r["cluster_id"] for r in tab}, "dsproc (verify, clusters)")}

# --- datasketch ----------------------------------------------------------------
from datasketch import MinHash, MinHashLSH

t0 = time.time()
lsh = MinHashLSH(threshold=t, num_perm=num_perm, params=(bands, rows))
mh = {}
for i in ids:
    if not sets[i]:
        continue
    m = MinHash(num_perm=num_perm, seed=seed)
    m.update_batch([" ".join(g).encode() for g in sets[i]])
    mh[i] = m
    lsh.insert(i, m)
ds = set()
for i, m in mh.items():
    for j in lsh.query(m):
        if j != i:
            ds.add((i, j) if i < j else (j, i))
print(f"datasketch: {time.time() - t0:.1f}s")
res["datasketch"] = score_pairs(ds, "datasketch (candidates)")
res["datasketch+cc"] = score(components(ds), "datasketch +cc")
res["datasketch+verify+cc"] = score(components({p for p in ds if jac(*p) >= t}), "datasketch +verify+cc")
print(json.dumps({"corpus": name, "threshold": t, "num_perm": num_perm, "bands": bands, "rows": rows,
                  "truth_pairs": len(truth), "results": res}))

#!/usr/bin/env python3
"""Near-dedup end to end on the same JSONL and cores: dsproc dedup_minhash vs
datatrove's 4-stage MinHash pipeline, rensa (RMinHash + RMinHashLSH driven from
Python) and datasketch (MinHash + MinHashLSH). Prints docs/s and dsproc's ratios.

Every tool: threshold 0.8, 128 permutations, the band layout dsproc chose
(read from its manifest), word 5-gram shingles; the Python peers read the JSONL,
shingle in Python, hash, band, find candidate groups, keep one document per group
(union-find, smallest key) and write the survivors as JSONL. datatrove runs its own
reader/writer and tokenizer with LocalPipelineExecutor(workers=cores).
dsproc runs as shipped: verify = true (exact Jaccard of every candidate pair),
which the peers do not do.

usage: PY=~/.cache/pii-peers/venv/bin/python $PY benches/minhash_peers.py CORPUS.jsonl [PEERS]
  PEERS: comma list of datatrove,rensa,datasketch (default all)
env: DSPROC_BIN (default target/release/dsproc), CORES (default os.cpu_count())
"""
import glob, json, os, re, shutil, subprocess, sys, tempfile, time

corpus = os.path.abspath(sys.argv[1])
peers = (sys.argv[2] if len(sys.argv) > 2 else "datatrove,rensa,datasketch").split(",")
binary = os.path.abspath(os.environ.get("DSPROC_BIN", "target/release/dsproc"))
cores = int(os.environ.get("CORES", os.cpu_count()))
T, NUM_PERM, NGRAM, SEED = 0.8, 128, 5, 42
WORD = re.compile(r"[^\W_]+")
n_docs = sum(1 for _ in open(corpus, "rb"))
mb = os.path.getsize(corpus) / 1e6
print(f"{os.path.basename(corpus)}: {n_docs} docs, {mb:.1f} MB, {cores} cores", flush=True)
results = {}


def report(name, secs, kept):
    results[name] = secs
    print(f"{name:<12} {secs:8.2f} s  {n_docs / secs:10.0f} docs/s  {mb / secs:7.2f} MB/s  kept {kept}", flush=True)


def shingle_strings(text):
    w = WORD.findall(text.lower())
    if not w:
        return []
    if len(w) <= NGRAM:
        return [" ".join(w)]
    return list({" ".join(w[i:i + NGRAM]) for i in range(len(w) - NGRAM + 1)})


def keep_one_per_group(pairs, n):
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [i for i in range(n) if find(i) == i]


def write_survivors(path, lines, keep):
    with open(path, "w") as f:
        for i in keep:
            f.write(lines[i])


tmp = tempfile.mkdtemp(prefix="mhpeers-")
try:
    # --- dsproc ---------------------------------------------------------------
    job = os.path.join(tmp, "job.toml")
    with open(job, "w") as f:
        f.write(f'name = "mhb"\n[input]\nuri = "{corpus}"\n[[steps]]\nop = "dedup_minhash"\nthreshold = {T}\n'
                f'num_perm = {NUM_PERM}\nngram = {NGRAM}\nseed = {SEED}\n[output]\nuri = "{tmp}/dsproc"\n')
    t0 = time.time()
    subprocess.run([binary, "run", "-q", "--partitions", str(cores), job], check=True)
    m = json.load(open(f"{tmp}/dsproc/manifest.json"))
    report("dsproc", time.time() - t0, m["rows"]["out"])
    bands, rows = m["steps"][0]["info"]["bands"], m["steps"][0]["info"]["rows"]
    print(f"  layout {bands} bands x {rows} rows; stats {m['steps'][0]['stats']}", flush=True)

    def python_peer(name, new_minhash, lsh):
        """Reads, shingles, signs and indexes every document, then keeps one per group."""
        t0 = time.time()
        lines = open(corpus).readlines()
        hashes = []
        for i, line in enumerate(lines):
            mh = new_minhash(shingle_strings(json.loads(line)["text"]))
            lsh.insert(i, mh)
            hashes.append(mh)
        pairs = [(i, j) for i, mh in enumerate(hashes) for j in lsh.query(mh) if j != i]
        keep = keep_one_per_group(pairs, len(lines))
        write_survivors(f"{tmp}/{name}.jsonl", lines, keep)
        report(name, time.time() - t0, len(keep))

    if "rensa" in peers:
        from rensa import RMinHash, RMinHashLSH

        def rensa_mh(shingles):
            mh = RMinHash(num_perm=NUM_PERM, seed=SEED)
            mh.update(shingles)
            return mh

        python_peer("rensa", rensa_mh, RMinHashLSH(threshold=T, num_perm=NUM_PERM, num_bands=bands))

    if "datasketch" in peers:
        from datasketch import MinHash, MinHashLSH

        def datasketch_mh(shingles):
            mh = MinHash(num_perm=NUM_PERM, seed=SEED)
            mh.update_batch([s.encode() for s in shingles])
            return mh

        python_peer("datasketch", datasketch_mh, MinHashLSH(threshold=T, num_perm=NUM_PERM, params=(bands, rows)))

    if "datatrove" in peers:
        script = os.path.join(tmp, "dt.py")
        with open(script, "w") as f:
            f.write(f'''
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupSignature, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.utils.hashing import HashConfig
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter
if __name__ == "__main__":
    cfg = MinhashConfig(hash_config=HashConfig(precision=64), num_buckets={bands}, hashes_per_bucket={rows}, n_grams={NGRAM})
    base = "{tmp}/dt"
    reader = lambda: JsonlReader("{os.path.dirname(corpus)}", glob_pattern="{os.path.basename(corpus)}")
    LocalPipelineExecutor(pipeline=[reader(), MinhashDedupSignature(output_folder=base + "/sigs", config=cfg)],
                          tasks={cores}, workers={cores}, logging_dir=base + "/l1").run()
    LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(input_folder=base + "/sigs", output_folder=base + "/buckets", config=cfg)],
                          tasks={bands}, workers={cores}, logging_dir=base + "/l2").run()
    LocalPipelineExecutor(pipeline=[MinhashDedupCluster(input_folder=base + "/buckets", output_folder=base + "/remove_ids", config=cfg)],
                          tasks=1, workers=1, logging_dir=base + "/l3").run()
    LocalPipelineExecutor(pipeline=[reader(), MinhashDedupFilter(input_folder=base + "/remove_ids"),
                                    JsonlWriter(base + "/out", compression=None)],
                          tasks={cores}, workers={cores}, logging_dir=base + "/l4").run()
''')
        t0 = time.time()
        subprocess.run([sys.executable, script], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kept = sum(1 for p in glob.glob(f"{tmp}/dt/out/*.jsonl") for _ in open(p))
        report("datatrove", time.time() - t0, kept)
finally:
    shutil.rmtree(tmp, ignore_errors=True)

for name, secs in results.items():
    if name != "dsproc":
        print(f"dsproc vs {name}: {secs / results['dsproc']:.1f}x")

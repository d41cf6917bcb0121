#!/usr/bin/env python3
"""Exact deduplication of a JSONL corpus, read → dedup → Parquet: dsproc's
`dedup_exact` against Polars (streaming engine) and DuckDB on the same file, cores
and memory limit, interleaved rounds, medians. Also prints each process's bytes
read (/proc/PID/io rchar: every read() of the process, spill files included) and
peak RSS.

usage: dedup_peers.py [CORPUS.jsonl] [--rounds 3] [--memory 1GiB] [--cores 2]
  CORPUS default ~/.cache/dsproc-ground/corpora/linux_src.jsonl
  env: DSPROC_BIN (default $CARGO_TARGET_DIR or ~/.cache/dsproc-target, release/dsproc)
  needs polars and duckdb (e.g. a venv: pip install polars duckdb)

The same work everywhere: one row per distinct text, the rest dropped, written as
zstd Parquet. dsproc hashes the text after NFC + whitespace trim (its default;
`--raw` sets form = "none", whitespace = "keep" to hash the bytes as the peers do) and
keeps the smallest id; Polars `unique(subset="text", keep="any")` and DuckDB
`SELECT ... QUALIFY row_number() OVER (PARTITION BY text) = 1`-free `DISTINCT ON`
keep any row. The kept-row counts are printed side by side.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HOME = os.path.expanduser("~")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(HOME, ".cache/dsproc-target"))
BIN = os.environ.get("DSPROC_BIN", os.path.join(TARGET, "release", "dsproc"))

POLARS = r'''
import os, sys, polars as pl
src, out = sys.argv[1], sys.argv[2]
df = pl.scan_ndjson(src, schema={"id": pl.String, "text": pl.String})
df.unique(subset=["text"], keep="any").sink_parquet(out, compression="zstd", engine="streaming")
print(pl.scan_parquet(out).select(pl.len()).collect().item())
'''

DUCKDB = r'''
import sys, duckdb
src, out, mem, cores = sys.argv[1:5]
con = duckdb.connect()
con.execute(f"SET memory_limit='{mem}'; SET threads={cores}; SET preserve_insertion_order=false")
con.execute(f"""COPY (SELECT DISTINCT ON (text) id, text FROM read_json('{src}', format='newline_delimited',
                columns={{'id': 'VARCHAR', 'text': 'VARCHAR'}}))
               TO '{out}' (FORMAT parquet, COMPRESSION zstd)""")
print(con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0])
'''


class Failed(Exception):
    pass


def watch(cmd, env=None):
    """Runs cmd; returns (seconds, stdout, rchar bytes, peak RSS bytes); Failed on a non-zero exit."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    io = {"rchar": 0, "rss": 0}

    def poll():
        while p.poll() is None:
            try:
                for line in open(f"/proc/{p.pid}/io"):
                    if line.startswith("rchar:"):
                        io["rchar"] = max(io["rchar"], int(line.split()[1]))
                for line in open(f"/proc/{p.pid}/status"):
                    if line.startswith("VmHWM:"):
                        io["rss"] = max(io["rss"], int(line.split()[1]) * 1024)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass
            time.sleep(0.05)

    th = threading.Thread(target=poll)
    th.start()
    out, err = p.communicate()
    th.join()
    secs = time.perf_counter() - t
    if p.returncode != 0:
        raise Failed(err.strip().splitlines()[-1][:200] if err.strip() else f"exit {p.returncode}")
    return secs, out, io["rchar"], io["rss"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="?", default=os.path.join(HOME, ".cache/dsproc-ground/corpora/linux_src.jsonl"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory", default="1GiB")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--raw", action="store_true", help="dsproc hashes the raw text (no NFC / trim)")
    ap.add_argument("--skip", default="", help="comma-separated tools to leave out (dsproc,polars,duckdb)")
    a = ap.parse_args()
    src = os.path.abspath(a.corpus)
    size = os.path.getsize(src)
    skip = set(filter(None, a.skip.split(",")))
    res = {t: [] for t in ("dsproc", "polars", "duckdb") if t not in skip}
    kept, reads, rss, failed = {}, {}, {}, {}
    env = dict(os.environ, POLARS_MAX_THREADS=str(a.cores))
    with tempfile.TemporaryDirectory() as tmp:
        opts = '\nform = "none"\nwhitespace = "keep"' if a.raw else ""
        spec = os.path.join(tmp, "job.toml")
        open(spec, "w").write(
            f'name = "dedup"\n[input]\nuri = "{src}"\nid = "id"\n[[steps]]\nop = "dedup_exact"{opts}\n'
            f'[output]\nuri = "{tmp}/dsproc"\nformat = "parquet"\nmode = "overwrite"\n')
        for r in range(a.rounds):
            order = list(res)
            order = order[r % len(order):] + order[: r % len(order)]
            for tool in order:
                try:
                    if tool == "dsproc":
                        cmd = [BIN, "run", "-q", "--json", "--memory-limit", a.memory, "--partitions", str(a.cores), spec]
                        secs, out, rc, mx = watch(cmd)
                        n = json.loads(out)["manifest"]["rows"]["out"]
                    elif tool == "polars":
                        secs, out, rc, mx = watch([sys.executable, "-c", POLARS, src, f"{tmp}/polars.parquet"], env)
                        n = int(out.strip().splitlines()[-1])
                    else:
                        mem = a.memory.replace("GiB", "GB").replace("MiB", "MB")
                        secs, out, rc, mx = watch([sys.executable, "-c", DUCKDB, src, f"{tmp}/duckdb.parquet", mem, str(a.cores)])
                        n = int(out.strip().splitlines()[-1])
                    res[tool].append(secs)
                    kept[tool], reads[tool], rss[tool] = n, rc, mx
                    print(f"  round {r + 1} {tool:<7} {secs:7.2f} s  kept {n}", flush=True)
                except Failed as e:
                    if tool == "dsproc":
                        sys.exit(f"dsproc failed: {e}")
                    failed[tool] = str(e)
                    print(f"  round {r + 1} {tool:<7} FAILED: {e}", flush=True)
    print(f"\n{os.path.basename(src)}: {size / 1e6:.0f} MB, {a.cores} cores, memory limit {a.memory}, {a.rounds} rounds")
    print(f"{'tool':<8}{'median s':>10}{'MB/s':>9}{'kept':>10}{'read MB':>10}{'peak RSS MB':>13}")
    med = {t: statistics.median(v) for t, v in res.items() if v}
    for t, why in failed.items():
        print(f"{t:<8} FAILED under the limit: {why}")
    for t in med:
        print(f"{t:<8}{med[t]:10.2f}{size / 1e6 / med[t]:9.1f}{kept[t]:10}{reads[t] / 1e6:10.0f}{rss[t] / 1e6:13.0f}")
    if "dsproc" in med:
        for t in med:
            if t != "dsproc":
                print(f"dsproc is {med[t] / med['dsproc']:.2f}x {t}")


if __name__ == "__main__":
    main()

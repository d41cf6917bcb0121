#!/usr/bin/env python3
"""Quality filtering + language ID end to end on the same JSONL and cores: dsproc
(langid → quality_filter) vs datatrove 0.10.1's pipeline doing the same work.
Prints wall time, docs/s, MB/s (input bytes), the documents each keeps, and
dsproc's speed as a multiple of datatrove's.

  dsproc:    JSONL → langid (lid.176.ftz, keep LANGS, min_score 0.65)
             → quality_filter presets gopher_repetition, gopher_quality, c4, fineweb (drop) → JSONL
  datatrove: JsonlReader → LanguageFilter(languages=LANGS, backend="ft176")
             → GopherRepetitionFilter() → GopherQualityFilter() → C4QualityFilter()
             → FineWebQualityFilter() → JsonlWriter
Thresholds are both sides' defaults; min_score = 0.65 on dsproc's side is
datatrove's LanguageFilter default language_threshold (datatrove keeps score > 0.65,
dsproc drops score < 0.65: they differ only at exactly 0.65).

Model loading: datatrove's FT176LID downloads lid.176.bin from
dl.fbaipublicfiles.com through cached_asset_path_or_download (no network here).
The generated datatrove script subclasses datatrove.utils.lid.FT176LID, overriding
its lazy `model` property to `fasttext.load_model(<local lid.176.ftz>)` (the same
file dsproc uses; fasttext here is fasttext-predict, the same C++ predict), wrapped so
predict's scores come back as a numpy array (fasttext-predict gives a list of floats;
datatrove's FastTextLID.predict calls .item() on each), and sets it as the
LanguageFilter's `model` after construction. It also sets
LanguageFilter._requires_dependencies = [("fasttext", "fasttext-predict")]
(class attribute, module level): datatrove's
import check wants `fasteners` (used only by the download's file lock, not installed)
and the fasttext-numpy2-wheel distribution. Everything in LanguageFilter.filter and
FastTextLID.predict is datatrove's own.

Same cores: the input (after --limit) is split round-robin by line into CORES JSONL
files in a temp dir, which both read: datatrove's JsonlReader shards by file, so a
single file would leave all but one of its tasks idle. datatrove runs
LocalPipelineExecutor(tasks=CORES, workers=CORES); dsproc runs --partitions CORES.
Output: dsproc's jsonl format is always zstd (.jsonl.zst); datatrove's JsonlWriter
writes uncompressed (compression=None: zstandard is not installed, and its default
gzip would cost it more than zstd costs dsproc). Each timing is one whole process
(start to exit), measurements interleaved in --rounds rounds (alternating which goes
first), medians reported. Per-stage drop counts and the kept ids are compared after.

needs: a Python with datatrove 0.10.1, spaCy, fasttext-predict, numpy, orjson (datatrove's
JsonlReader/Writer import it) and pyarrow (only to compare kept ids).

usage: ~/.cache/dsproc-venv/bin/python benches/quality_peers.py [CORPUS.jsonl]
         [--rounds 3] [--limit N] [--langs en] [--cores 2]
  CORPUS default: ~/.cache/dsproc-ground/corpora/quality_mix.jsonl
env: DSPROC_BIN (default ~/.cache/dsproc-target/release/dsproc)
"""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

GROUND = os.path.expanduser("~/.cache/dsproc-ground")
DEFAULT_CORPUS = os.path.join(GROUND, "corpora", "quality_mix.jsonl")
DEFAULT_MODEL = os.path.join(GROUND, "models", "lid.176.ftz")
PRESETS = ["gopher_repetition", "gopher_quality", "c4", "fineweb"]
LANG_THRESHOLD = 0.65  # datatrove LanguageFilter's default language_threshold

DT_SCRIPT = '''
import fasttext
import numpy
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.filters import (LanguageFilter, GopherRepetitionFilter, GopherQualityFilter,
                                        C4QualityFilter, FineWebQualityFilter)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.utils.lid import FT176LID

MODEL = {model!r}


class NumpyScores:
    """fasttext-predict's predict returns scores as a list of floats; datatrove's
    FastTextLID.predict calls .item() on them as the fasttext wheels' numpy array gives."""

    def __init__(self, model):
        self.m = model

    def predict(self, text, k=1):
        labels, scores = self.m.predict(text, k=k)
        return labels, numpy.asarray(scores)


class LocalFT176LID(FT176LID):
    """FT176LID loading the local lid.176.ftz instead of downloading lid.176.bin."""

    @property
    def model(self):
        if self._model is None:
            self._model = NumpyScores(fasttext.load_model(MODEL))
        return self._model


# LanguageFilter's import check wants `fasteners` (only the download's file lock uses
# it) and the fasttext-numpy2-wheel distribution; fasttext-predict is what is installed.
# Module level, so the executor's worker processes (which re-import this file) get it too.
LanguageFilter._requires_dependencies = [("fasttext", "fasttext-predict")]


if __name__ == "__main__":
    lf = LanguageFilter(languages={langs!r}, backend="ft176")
    lf.model = LocalFT176LID({langs!r})
    LocalPipelineExecutor(
        pipeline=[
            JsonlReader({input_dir!r}, glob_pattern="*.jsonl"),
            lf,
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            C4QualityFilter(),
            FineWebQualityFilter(),
            JsonlWriter({out_dir!r}, compression=None),
        ],
        tasks={cores}, workers={cores}, logging_dir={log_dir!r},
    ).run()
'''


def split_corpus(corpus, limit, cores, input_dir):
    """Copies the first `limit` lines (all when None) round-robin into `cores` files."""
    os.makedirs(input_dir)
    outs = [open(os.path.join(input_dir, f"part-{i:02}.jsonl"), "wb") for i in range(cores)]
    n = 0
    with open(corpus, "rb") as f:
        for line in f:
            if limit is not None and n >= limit:
                break
            if not line.strip():
                continue
            outs[n % cores].write(line if line.endswith(b"\n") else line + b"\n")
            n += 1
    for o in outs:
        o.close()
    return n, sum(os.path.getsize(p) for p in glob.glob(os.path.join(input_dir, "*.jsonl")))


def run_dsproc(binary, job, cores):
    t = time.perf_counter()
    p = subprocess.run([binary, "run", "--json", "-q", "--partitions", str(cores), job],
                       capture_output=True, text=True)
    secs = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"dsproc failed ({p.returncode}; is DSPROC_BIN a build with langid?):\n{p.stderr[-4000:]}")
    m = json.loads(p.stdout)
    return secs, m["manifest"]["rows"]


def run_datatrove(script, out_dir, log_dir):
    for d in (out_dir, log_dir):
        shutil.rmtree(d, ignore_errors=True)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, script], capture_output=True, text=True)
    secs = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"datatrove failed ({p.returncode}):\n{p.stderr[-4000:]}")
    kept = sum(1 for path in glob.glob(os.path.join(out_dir, "*.jsonl")) for _ in open(path, "rb"))
    return secs, kept, datatrove_drops(log_dir)


STAGES = ["langid", "gopher_repetition", "gopher_quality", "c4", "fineweb"]


def datatrove_drops(log_dir):
    """Dropped counts per stage from the executor's merged stats.json."""
    names = {"Language ID": "langid", "Gopher Repetition": "gopher_repetition",
             "Gopher Quality": "gopher_quality", "C4 Quality": "c4", "FineWeb Quality": "fineweb"}
    drops = dict.fromkeys(STAGES, 0)
    try:
        stats = json.load(open(os.path.join(log_dir, "stats.json")))
    except (OSError, ValueError):
        return drops
    for step in stats:
        d = step.get("stats", {}).get("dropped")
        stage = next((v for k, v in names.items() if k in step.get("name", "")), None)
        if stage and d is not None:
            drops[stage] += d.get("total", 0) if isinstance(d, dict) else d
    return drops


def dsproc_drops(rows):
    """Dropped counts per stage from the manifest's reasons ("2:quality_filter:<rule>")."""
    drops = dict.fromkeys(STAGES, 0)
    for reason, n in rows.get("dropped", {}).items():
        rule = reason.split(":")[-1]
        if reason.split(":")[1] == "langid":
            stage = "langid"
        elif rule.startswith("gopher_repetition"):
            stage = "gopher_repetition"
        elif rule.startswith("gopher_"):
            stage = "gopher_quality"
        elif rule.startswith("c4_"):
            stage = "c4"
        elif rule.startswith("fineweb_"):
            stage = "fineweb"
        else:
            stage = reason
        drops[stage] = drops.get(stage, 0) + n
    return drops


def kept_ids(dsproc_out, dt_out):
    """Ids each side kept (dsproc writes .jsonl.zst, read with pyarrow; None if unavailable)."""
    try:
        import pyarrow as pa
    except ImportError:
        return None, None
    ds = set()
    shards = json.load(open(os.path.join(dsproc_out, "manifest.json")))["shards"]
    for path in (os.path.join(dsproc_out, s["path"]) for s in shards):
        with pa.CompressedInputStream(pa.OSFile(path), "zstd") as f:
            ds.update(json.loads(line)["id"] for line in f.read().splitlines() if line.strip())
    dt = set()
    for path in glob.glob(os.path.join(dt_out, "*.jsonl")):
        dt.update(json.loads(line)["id"] for line in open(path) if line.strip())
    return ds, dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", nargs="?", default=DEFAULT_CORPUS, help="JSONL with id/text")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N documents")
    ap.add_argument("--langs", default="en", help="comma list of languages to keep (default en)")
    ap.add_argument("--cores", type=int, default=2, help="cores for both (dsproc partitions, datatrove tasks/workers)")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="fastText lid.176.ftz")
    args = ap.parse_args()

    corpus = os.path.abspath(os.path.expanduser(args.corpus))
    model = os.path.abspath(os.path.expanduser(args.model))
    binary = os.path.abspath(os.path.expanduser(
        os.environ.get("DSPROC_BIN", "~/.cache/dsproc-target/release/dsproc")))
    langs = [l.strip() for l in args.langs.split(",") if l.strip()]
    for path, what in ((corpus, "corpus"), (model, "model"), (binary, "dsproc binary (DSPROC_BIN)")):
        if not os.path.exists(path):
            sys.exit(f"{what} not found: {path}")

    tmp = tempfile.mkdtemp(prefix="qpeers-")
    try:
        input_dir = os.path.join(tmp, "input")
        n_docs, nbytes = split_corpus(corpus, args.limit, args.cores, input_dir)
        mb = nbytes / 1e6
        print(f"{os.path.basename(corpus)}: {n_docs} docs, {mb:.1f} MB in {args.cores} files, "
              f"{args.cores} cores, keep {langs}, {args.rounds} interleaved rounds, dsproc {binary}", flush=True)

        job = os.path.join(tmp, "job.toml")
        with open(job, "w") as f:
            f.write(f'name = "quality_peers"\n[input]\nuri = {json.dumps(input_dir)}\nid = "id"\n\n'
                    f'[[steps]]\nop = "langid"\nmodel = {json.dumps(model)}\nkeep = {json.dumps(langs)}\n'
                    f'min_score = {LANG_THRESHOLD}\n\n'
                    f'[[steps]]\nop = "quality_filter"\npresets = {json.dumps(PRESETS)}\naction = "drop"\n\n'
                    f'[output]\nuri = {json.dumps(os.path.join(tmp, "dsproc_out"))}\nformat = "jsonl"\n'
                    f'mode = "overwrite"\n')
        dt_out, dt_logs = os.path.join(tmp, "dt_out"), os.path.join(tmp, "dt_logs")
        script = os.path.join(tmp, "dt.py")
        with open(script, "w") as f:
            f.write(DT_SCRIPT.format(model=model, langs=langs, input_dir=input_dir, out_dir=dt_out,
                                     log_dir=dt_logs, cores=args.cores))

        times = {"dsproc": [], "datatrove": []}
        ds_rows = dt_kept = dt_drops = None
        for r in range(args.rounds):
            # Alternate which goes first so drift and cache warmth hit both alike.
            order = ["dsproc", "datatrove"] if r % 2 == 0 else ["datatrove", "dsproc"]
            for name in order:
                if name == "dsproc":
                    secs, ds_rows = run_dsproc(binary, job, args.cores)
                    kept = ds_rows["out"]
                else:
                    secs, dt_kept, dt_drops = run_datatrove(script, dt_out, dt_logs)
                    kept = dt_kept
                times[name].append(secs)
                print(f"  round {r + 1} {name:<9} {secs:8.2f} s  kept {kept}", flush=True)

        ds_kept = ds_rows["out"]
        ds_drops = dsproc_drops(ds_rows)
        print(f"\n{'dropped by':<18} {'dsproc':>8} {'datatrove':>10}")
        for stage in ds_drops:
            print(f"{stage:<18} {ds_drops[stage]:8d} {dt_drops.get(stage, 0):10d}")
        diff = ds_kept - dt_kept
        pct = 100 * abs(diff) / max(dt_kept, 1)
        print(f"kept: dsproc {ds_kept}, datatrove {dt_kept}, difference {diff:+d} ({pct:.2f}% of datatrove's)"
              + ("  <-- large: the pipelines differ, investigate" if pct > 1 else ""))
        ds_ids, dt_ids = kept_ids(os.path.join(tmp, "dsproc_out"), dt_out)
        if ds_ids is not None:
            print(f"kept ids: {len(ds_ids & dt_ids)} by both, {len(ds_ids - dt_ids)} only by dsproc, "
                  f"{len(dt_ids - ds_ids)} only by datatrove")

        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\n{'tool':<10} {'median s':>9} {'docs/s':>10} {'MB/s':>8} {'kept':>8}")
        for name, kept in (("dsproc", ds_kept), ("datatrove", dt_kept)):
            s = med[name]
            print(f"{name:<10} {s:9.2f} {n_docs / s:10.0f} {mb / s:8.2f} {kept:8d}")
        print(f"dsproc is {med['datatrove'] / med['dsproc']:.1f}x datatrove")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Incremental rebuild vs full rebuild, same run, same cores.
#
# linux_src is split into one JSONL file per top-level directory of the kernel
# tree (`source`'s first component); v1 is built from all but the smallest
# directories holding ~5% of the bytes, then those files are added and
#   - v2 is an incremental rebuild (reads only the added files, dedups them
#     against v1's state, lists v1's shards), and
#   - a full rebuild of the same final input runs into another output.
# Prints both wall times and their ratio, the files and rows each read, and
# checks that the incremental version holds no exact duplicate.
#
# usage: benches/incremental.sh [linux_src.jsonl] [FRACTION]
#   default corpus: $DSPROC_CORPUS or ~/.cache/dsproc-ground/corpora/linux_src.jsonl
#   (python3 ../shared/ground/build-corpora.py DIR linux); FRACTION default 0.05
# env: DSPROC_BIN (default target/release/dsproc), MEMORY (default 2GiB)
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS="${1:-${DSPROC_CORPUS:-$HOME/.cache/dsproc-ground/corpora/linux_src.jsonl}}"
FRACTION="${2:-0.05}"
BIN="${DSPROC_BIN:-target/release/dsproc}"
MEMORY="${MEMORY:-2GiB}"
[ -f "$CORPUS" ] || { echo "corpus $CORPUS not found" >&2; exit 2; }
if [ -n "${KEEP:-}" ]; then
  SCRATCH="$KEEP"; rm -rf "$SCRATCH"; mkdir -p "$SCRATCH"   # KEEP=DIR: keep the files for a look
else
  SCRATCH="$(mktemp -d)"; trap 'rm -rf "$SCRATCH"' EXIT
fi
mkdir -p "$SCRATCH/all" "$SCRATCH/in"
python3 - "$CORPUS" "$SCRATCH/all" "$FRACTION" "$SCRATCH/added.txt" <<'PY'
import json, os, sys
corpus, out, fraction, added = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
files = {}
with open(corpus, "rb") as f:
    for line in f:
        src = json.loads(line)["source"]
        # the listing skips names starting with "_" or "." (as Spark and Hive do)
        top = (src.split("/", 1)[0] if "/" in src else "root").lstrip("._") or "root"
        if top not in files:
            files[top] = open(os.path.join(out, f"{top}.jsonl"), "wb")
        files[top].write(line)
for h in files.values():
    h.close()
sizes = sorted((os.path.getsize(os.path.join(out, f"{t}.jsonl")), t) for t in files)
total = sum(s for s, _ in sizes)
pick, acc = [], 0
for s, t in reversed(sizes):  # largest first: as close to the fraction as whole files allow
    if acc + s > fraction * total:
        continue
    pick.append(t)
    acc += s
open(added, "w").write("\n".join(f"{t}.jsonl" for t in pick) + "\n")
print(f"{len(files)} files ({total / 1e6:.1f} MB); added later: {len(pick)} files, {acc / 1e6:.1f} MB ({100 * acc / total:.1f}%)")
PY
for f in "$SCRATCH"/all/*.jsonl; do
  grep -qxF "$(basename "$f")" "$SCRATCH/added.txt" || ln -s "$f" "$SCRATCH/in/$(basename "$f")"
done
job() {
  cat <<TOML
name = "bench_incremental"
[input]
uri = "$SCRATCH/in/*.jsonl"
id = "id"
[[steps]]
op = "normalize"
[[steps]]
op = "dedup_exact"
[[steps]]
op = "dedup_minhash"
threshold = 0.8
[output]
uri = "$1"
format = "parquet"
mode = "overwrite"
incremental = $2
TOML
}
job "$SCRATCH/out" true > "$SCRATCH/inc.toml"
job "$SCRATCH/full" false > "$SCRATCH/full.toml"
now() { date +%s.%N; }
run() { # spec, json out; prints seconds
  local t0 t1
  t0=$(now)
  "$BIN" run "$1" -q --json --memory-limit "$MEMORY" > "$2"
  t1=$(now)
  echo "$t1 - $t0" | bc
}
echo "on $(nproc) cores, $BIN"
v1=$(run "$SCRATCH/inc.toml" "$SCRATCH/v1.json")
while read -r f; do [ -n "$f" ] && ln -s "$SCRATCH/all/$f" "$SCRATCH/in/$f"; done < "$SCRATCH/added.txt"
inc=$(run "$SCRATCH/inc.toml" "$SCRATCH/v2.json")
full=$(run "$SCRATCH/full.toml" "$SCRATCH/full.json")
python3 - "$SCRATCH" "$v1" "$inc" "$full" <<'PY'
import json, sys
d, v1s, incs, fulls = sys.argv[1], *map(float, sys.argv[2:])
v1, v2, full = (json.load(open(f"{d}/{n}.json"))["manifest"] for n in ("v1", "v2", "full"))
i = v2["incremental"]
assert i["mode"] == "incremental", i
state = sum(1 for f in v2["side_files"] if "/_state/" in f)
print(f"v1 (full build of {len(v1['inputs'])} files): {v1s:.2f} s, {v1['rows']['in']} rows in, {v1['rows']['out']} out")
print(f"v2 incremental: {incs:.2f} s, files_read {i['files_read']}, files_carried {i['files_carried']}, "
      f"rows in {v2['rows']['in']}, carried {v2['rows']['carried']}, out {v2['rows']['out']}, "
      f"dropped {v2['rows']['dropped']}, {state} state files")
print(f"full rebuild of the same input: {fulls:.2f} s, rows in {full['rows']['in']}, out {full['rows']['out']}, dropped {full['rows']['dropped']}")
print(f"incremental / full = {incs / fulls:.3f} ({fulls / incs:.1f}x faster)")
PY
du -sh "$SCRATCH/out"/v00001/_state "$SCRATCH/out"/v00001 2>/dev/null | sed 's/^/size: /'

"""Shared by the PII benches: run a one-step `scrub_pii` job over lines of text."""
import json, os, subprocess, time


def run_scrub(binary, lines, tmp, name, action="tag"):
    """Writes `lines` as JSONL (ids 0000000, 0000001, ...), runs `dsproc run` with one
    scrub_pii step and JSONL output, and returns ({row index: output row}, seconds)."""
    inp = os.path.join(tmp, name + ".jsonl")
    with open(inp, "w") as f:
        for i, t in enumerate(lines):
            f.write(json.dumps({"id": f"{i:07d}", "text": t}) + "\n")
    out = os.path.join(tmp, name + "-out")
    job = os.path.join(tmp, name + ".toml")
    with open(job, "w") as f:
        f.write(f'name = "{name}"\n[input]\nuri = "{inp}"\nid = "id"\n[[steps]]\nop = "scrub_pii"\naction = "{action}"\n'
                f'[output]\nuri = "{out}"\nformat = "jsonl"\nmode = "overwrite"\n')
    t0 = time.time()
    subprocess.run([binary, "run", job, "-q"], check=True)
    secs = time.time() - t0
    rows = {}
    m = json.load(open(os.path.join(out, "manifest.json")))
    for s in m["shards"]:
        data = subprocess.run(["zstdcat", os.path.join(out, s["path"])], capture_output=True, check=True).stdout
        for line in data.splitlines():
            r = json.loads(line)
            rows[int(r["id"])] = r
    return rows, secs

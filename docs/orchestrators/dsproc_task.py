"""Run a dsproc job from an orchestrator and map its exit code.

dsproc's exit codes (README "Exit codes"):
  0  committed a version, or the current one is up to date  -> success
  1  the job ran and failed (I/O, cluster, data)             -> retry
  2  spec or usage error                                      -> fail, do not retry
  3  data rejected by an `error` check (the previous version
     stays current)                                           -> fail (or skip), do not retry
On success, `--json` gives the version and its `dataset_version` digest: pass them to
the training task, which reads exactly that version (`input.version = N` or the
`_versions/N.json` manifest).
"""

import json
import os
import subprocess


class DsprocFailed(Exception):
    """A dsproc run that did not commit; `code` is its exit code."""

    def __init__(self, code, message):
        super().__init__(f"dsproc exited {code}: {message}")
        self.code = code
        self.retryable = code == 1


def run_dsproc(spec, cluster=None, dsproc=None, extra=()):
    """Runs `dsproc submit SPEC --json` (on `cluster`, else in-process) and returns
    {"version", "dataset_version", "up_to_date", "output"}; raises DsprocFailed."""
    exe = dsproc or os.environ.get("DSPROC_BIN", "dsproc")
    cmd = [exe, "submit", spec, "--json", "-q", *extra]
    if cluster:
        cmd += ["--cluster", cluster]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        lines = [l for l in p.stderr.splitlines() if l.startswith("error")]
        raise DsprocFailed(p.returncode, lines[-1] if lines else p.stderr.strip()[-500:])
    out = json.loads(p.stdout)
    return {
        "version": out["version"],
        "dataset_version": out["dataset_version"],
        "up_to_date": out.get("up_to_date", False),
        "output": out["output"],
    }

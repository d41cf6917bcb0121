#!/usr/bin/env python3
"""PII recall/precision against seeded ground truth.

Faker values (email, phone in en_US/en_GB/de_DE/fr_FR/en_IN, IPv4/IPv6, cards of the
13-19 digit brands, IBAN, SSN) are embedded in real text lines from debian_changelog
(lines on which dsproc finds nothing on their own), with known character offsets.
Negative controls: Luhn-invalid card numbers and mod-97-invalid IBANs must not be hit.
dsproc runs the job with action = "tag"; a prediction is a true positive when it has
the inserted value's kind and overlaps it.

usage: benches/pii_eval.py [CHANGELOG.jsonl] [N]   (needs faker; DSPROC_BIN, SEED)
"""
import json, os, random, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dsproc_scrub import run_scrub  # noqa: E402
from faker import Faker

corpus = sys.argv[1] if len(sys.argv) > 1 else "/tmp/corpora/debian_changelog.jsonl"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
binary = os.environ.get("DSPROC_BIN", "target/release/dsproc")
seed = int(os.environ.get("SEED", "1234"))
rng = random.Random(seed)
fakers = {loc: Faker(loc) for loc in ["en_US", "en_GB", "de_DE", "fr_FR", "en_IN"]}
for i, f in enumerate(fakers.values()):
    f.seed_instance(seed + i)
us = fakers["en_US"]

def run(lines, tmp, name):
    rows, _ = run_scrub(binary, lines, tmp, name, "tag")
    return {i: r["pii_spans"] for i, r in rows.items()}

def bad_card():
    c = us.credit_card_number(card_type="visa16")
    return c[:-1] + str((int(c[-1]) + 1) % 10)

def bad_iban():
    i = us.iban()
    return i[:2] + f"{(int(i[2:4]) + 1) % 100:02d}" + i[4:]

def value(kind):
    if kind == "email":
        return us.email()
    if kind == "phone":
        return fakers[rng.choice(list(fakers))].phone_number()
    if kind == "ip":
        return us.ipv4_public() if rng.random() < 0.6 else us.ipv6()
    if kind == "credit_card":
        return us.credit_card_number(card_type=rng.choice(["visa16", "mastercard", "amex", "discover", "jcb16", "diners"]))
    if kind == "iban":
        return fakers[rng.choice(["de_DE", "fr_FR", "en_GB"])].iban()
    if kind == "ssn":
        return us.ssn()
    raise ValueError(kind)

KINDS = ["email", "phone", "ip", "credit_card", "iban", "ssn"]
with tempfile.TemporaryDirectory() as tmp:
    base = []
    with open(corpus) as f:
        for doc in f:
            for line in json.loads(doc)["text"].split("\n"):
                line = line.strip()
                if 30 <= len(line) <= 200:
                    base.append(line)
            if len(base) > n * 6:
                break
    rng.shuffle(base)
    found = run(base[: n * 3], tmp, "base")
    clean = [t for i, t in enumerate(base[: n * 3]) if not found.get(i)]
    natural = {}
    for i, spans in found.items():
        for sp in spans:
            natural.setdefault(sp["kind"], []).append(base[i][sp["start"]:sp["end"]])
    texts, truth = [], []
    for i in range(n):
        kind = KINDS[i % len(KINDS)] if i % 10 else rng.choice(["bad_card", "bad_iban"])
        v = {"bad_card": bad_card, "bad_iban": bad_iban}.get(kind, lambda: value(kind))()
        words = clean[i % len(clean)].split(" ")
        at = rng.randrange(len(words) + 1)
        prefix = " ".join(words[:at]) + (" " if at else "")
        text = prefix + v + (" " if at < len(words) else "") + " ".join(words[at:])
        texts.append(text)
        truth.append((kind, len(prefix), len(prefix) + len(v), v))
    pred = run(texts, tmp, "eval")
    stats = {k: {"tp": 0, "fn": 0, "fp": 0} for k in KINDS}
    misses = {k: [] for k in KINDS}
    control_hits = 0
    for i, (kind, s, e, v) in enumerate(truth):
        spans = pred.get(i, [])
        if kind in ("bad_card", "bad_iban"):
            control_hits += sum(1 for p in spans if p["kind"] in ("credit_card", "iban"))
            continue
        hit = False
        for p in spans:
            overlap = p["start"] < e and s < p["end"]
            if p["kind"] == kind and overlap and not hit:
                hit = True
            elif p["kind"] in stats:
                stats[p["kind"]]["fp"] += 1
        stats[kind]["tp" if hit else "fn"] += 1
        if not hit:
            misses[kind].append(texts[i][max(0, s - 12): e + 12])
    print(f"{n} sentences from {corpus} (seed {seed}); {len(clean)} clean base lines")
    print(f"{'kind':<12} {'recall':>7} {'precision':>9}   tp   fn   fp")
    for k in KINDS:
        st = stats[k]
        r = st["tp"] / max(1, st["tp"] + st["fn"])
        p = st["tp"] / max(1, st["tp"] + st["fp"])
        print(f"{k:<12} {r:7.3f} {p:9.3f} {st['tp']:4d} {st['fn']:4d} {st['fp']:4d}   misses: {misses[k][:4]}")
    print(f"hits on Luhn-invalid cards / mod-97-invalid IBANs: {control_hits}")
    print(f"detections in {n * 3} real changelog lines (not in the truth; real emails are expected):")
    for k, vals in sorted(natural.items()):
        print(f"  {k:<12} {len(vals):5d}  e.g. {vals[:6]}")

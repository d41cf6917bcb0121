#!/usr/bin/env python3
"""PII recall/precision against seeded ground truth.

Values from the specifications, made by libraries that are not dsproc's:
  email, ssn, IPv4/IPv6 (public): Faker;
  phone: Faker (en_US/en_GB/de_DE/fr_FR/en_IN) and libphonenumber's metadata
    (`phonenumbers`: a valid mobile or fixed-line number of one of 40 regions, printed
    INTERNATIONAL, E164 or NATIONAL; national numbers of regions without a trunk
    prefix or area parentheses get a phone word before them, as nothing else marks them);
  credit_card: every issuer range in use with its lengths, Luhn check digit (stdnum),
    printed plain or grouped (4-4-4-4, 4-6-5, 4-6-4, 4-4-4-2, ...; space, dash, dot);
  iban: `schwifty` (the SWIFT IBAN registry): a random IBAN of any registry country,
    plain or in groups of four, sometimes after "IBAN"/"account".
They are embedded in real text lines (lines of the corpus on which dsproc finds
nothing on their own) at a random word boundary, with random punctuation around
them. Negative controls: Luhn-invalid cards and mod-97-invalid IBANs (check digits
or one BBAN character changed) must be detected as no kind at all. dsproc runs the
job with action = "tag"; a prediction is a true positive when it has the inserted
value's kind and overlaps it. For phones, libphonenumber is measured beside dsproc's
hand rules on the same texts: its own matcher (PhoneNumberMatcher, leniency VALID,
default region US), and dsproc's phone spans kept only where libphonenumber's
metadata calls the number valid.

usage: benches/pii_eval.py [CORPUS.jsonl] [N]   (needs faker, phonenumbers, schwifty,
       python-stdnum; env DSPROC_BIN, SEED; CORPUS: debian_changelog.jsonl, or a
       linux_src-style corpus, whose Documentation/ files are used when present)
"""
import json, os, random, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dsproc_scrub import run_scrub  # noqa: E402
from faker import Faker
import phonenumbers
from phonenumbers import PhoneNumberFormat as PNF, PhoneNumberType as PNT
from schwifty import IBAN
from schwifty import registry as iban_registry
import importlib.resources
from stdnum import luhn

corpus = sys.argv[1] if len(sys.argv) > 1 else "/tmp/corpora/debian_changelog.jsonl"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
binary = os.environ.get("DSPROC_BIN", "target/release/dsproc")
seed = int(os.environ.get("SEED", "1234"))
rng = random.Random(seed)
fakers = {loc: Faker(loc) for loc in ["en_US", "en_GB", "de_DE", "fr_FR", "en_IN"]}
for i, f in enumerate(fakers.values()):
    f.seed_instance(seed + i)
us = fakers["en_US"]

# Issuer ranges in use (the card schemes' IIN tables): (prefix lo, hi, lengths).
ISSUERS = [
    (4, 4, [13, 16, 19]), (51, 55, [16]), (2221, 2720, [16]), (34, 34, [15]), (37, 37, [15]),
    (6011, 6011, range(16, 20)), (644, 649, range(16, 20)), (65, 65, range(16, 20)),
    (36, 36, range(14, 20)), (300, 305, range(14, 20)), (3095, 3095, range(14, 20)), (38, 39, range(14, 20)),
    (3528, 3589, range(15, 20)), (62, 62, range(16, 20)), (5018, 5018, range(12, 20)), (5020, 5020, range(12, 20)),
    (5038, 5038, range(12, 20)), (5893, 5893, range(12, 20)), (6304, 6304, range(12, 20)), (6759, 6763, range(12, 20)),
    (2200, 2204, range(16, 20)), (60, 60, [16]), (508, 508, [16]), (353, 353, [16]), (356, 356, [16]),
    (506099, 506198, [16, 18, 19]), (650002, 650027, [16, 18, 19]), (507865, 507964, [16, 18, 19]),
]
GROUPINGS = {12: [[4, 4, 4]], 13: [[4, 4, 4, 1], [4, 3, 3, 3]], 14: [[4, 6, 4], [4, 4, 4, 2]],
             15: [[4, 6, 5], [4, 4, 4, 3]], 16: [[4, 4, 4, 4]], 17: [[4, 4, 4, 4, 1]], 18: [[4, 4, 4, 4, 2]],
             19: [[4, 4, 4, 4, 3]]}

def card_digits(valid=True):
    lo, hi, lengths = rng.choice(ISSUERS)
    length = rng.choice(list(lengths))
    body = str(rng.randint(lo, hi))
    body += "".join(rng.choice("0123456789") for _ in range(length - 1 - len(body)))
    check = luhn.calc_check_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return body + check

def printed_card(d):
    if rng.random() < 0.25:
        return d
    groups, at, sep = [], 0, rng.choice(" - .")
    for g in rng.choice(GROUPINGS[len(d)]):
        groups.append(d[at:at + g])
        at += g
    return sep.join(groups)

_registry = json.loads((importlib.resources.files("schwifty") / "iban_registry" / "generated.json").read_text())
IBAN_COUNTRIES = sorted(c for c in _registry if not iban_registry.get_iban_spec(c).aspirational)

def iban_value(valid=True):
    cc = rng.choice(IBAN_COUNTRIES)
    s = str(IBAN.random(country_code=cc, random=rng, use_registry=False).compact)
    if cc == "BR":
        # schwifty's BR spec (8!c5!n10!n1!c1!c) is looser than the registry's
        # 8!n5!n10!n1!a1!c: digits and a letter where the registry has them.
        bban = "".join(rng.choice("0123456789") for _ in range(23)) + rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + s[-1]
        num = int("".join(str(int(c, 36)) for c in bban + "BR00"))
        s = f"BR{98 - num % 97:02d}{bban}"
    if not valid:
        if rng.random() < 0.5:
            s = s[:2] + f"{2 + (int(s[2:4]) - 2 + rng.randint(1, 95)) % 97:02d}" + s[4:]
        else:
            k = rng.randrange(4, len(s))
            pool = "0123456789" if s[k].isdigit() else "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            s = s[:k] + rng.choice([c for c in pool if c != s[k]]) + s[k + 1:]
    if rng.random() < 0.5:
        s = " ".join(s[j:j + 4] for j in range(0, len(s), 4))
    return s

PHONE_REGIONS = ["US", "CA", "GB", "DE", "FR", "IT", "ES", "NL", "BE", "CH", "AT", "SE", "NO", "DK", "FI", "PL",
                 "PT", "IE", "CZ", "HU", "GR", "RO", "AU", "NZ", "IN", "JP", "CN", "KR", "SG", "HK", "BR", "MX",
                 "AR", "ZA", "NG", "EG", "TR", "IL", "RU", "UA"]
PHONE_WORDS = ["Tel. ", "tel: ", "Phone: ", "phone ", "call ", "Mobile: ", "Fax: "]

def libphonenumber_phone():
    """A valid number of a random region (the example number with random trailing digits)."""
    region = rng.choice(PHONE_REGIONS)
    ex = phonenumbers.example_number_for_type(region, rng.choice([PNT.MOBILE, PNT.FIXED_LINE]))
    nsn = str(ex.national_number)
    for _ in range(50):
        cand = nsn[:-4] + "".join(rng.choice("0123456789") for _ in range(4))
        num = phonenumbers.parse("+" + str(ex.country_code) + cand)
        if phonenumbers.is_valid_number(num):
            break
    else:
        num = ex
    fmt = rng.choice([PNF.INTERNATIONAL, PNF.INTERNATIONAL, PNF.E164, PNF.NATIONAL])
    text = phonenumbers.format_number(num, fmt)
    lead = ""
    if fmt == PNF.NATIONAL and not (text.startswith(("0", "(")) or region in ("US", "CA")):
        lead = rng.choice(PHONE_WORDS)
    return lead, text

def value(kind):
    """(lead words, value) of one kind."""
    if kind == "email":
        return "", us.email()
    if kind == "phone":
        if rng.random() < 0.5:
            return "", fakers[rng.choice(list(fakers))].phone_number()
        return libphonenumber_phone()
    if kind == "ip":
        return "", us.ipv4_public() if rng.random() < 0.6 else us.ipv6()
    if kind == "credit_card":
        return "", printed_card(card_digits())
    if kind == "iban":
        return rng.choice(["", "", "IBAN ", "IBAN: ", "account ", "account no. "]), iban_value()
    if kind == "ssn":
        return "", us.ssn()
    if kind == "bad_card":
        return "", printed_card(card_digits(valid=False))
    if kind == "bad_iban":
        return "", iban_value(valid=False)
    raise ValueError(kind)

BEFORE = ["", "", "", "(", "[", '"', "'", "<", ": ", "= ", "*"]
AFTER = ["", "", "", ")", "]", '"', "'", ">", ".", ",", ";", ":", "!", "?", ")."]

def lines_of(path, want):
    """Lines of 30-200 characters; from Documentation/ files when the corpus has them."""
    out, docs = [], []
    with open(path) as f:
        for raw in f:
            d = json.loads(raw)
            docs.append(d)
            if len(docs) > 20000:
                break
    kernel_docs = [d for d in docs if str(d.get("source", "")).startswith("Documentation/")]
    random.Random(seed).shuffle(kernel_docs)
    for d in kernel_docs or docs:
        for line in d["text"].split("\n"):
            line = line.strip()
            if 30 <= len(line) <= 200:
                out.append(line)
        if len(out) > want:
            break
    return out, bool(kernel_docs)

KINDS = ["email", "phone", "ip", "credit_card", "iban", "ssn"]
with tempfile.TemporaryDirectory() as tmp:
    base, is_docs = lines_of(corpus, n * 6)
    rng.shuffle(base)
    found = {i: r["pii_spans"] for i, r in run_scrub(binary, base[: n * 3], tmp, "base", "tag")[0].items()}
    clean = [t for i, t in enumerate(base[: n * 3]) if not found.get(i)]
    natural = {}
    for i, spans in found.items():
        for sp in spans:
            natural.setdefault(sp["kind"], []).append(base[i][sp["start"]:sp["end"]])
    texts, truth = [], []
    for i in range(n):
        kind = KINDS[i % len(KINDS)] if i % 10 else rng.choice(["bad_card", "bad_iban"])
        lead, v = value(kind)
        words = clean[i % len(clean)].split(" ")
        at = rng.randrange(len(words) + 1)
        prefix = " ".join(words[:at]) + (" " if at else "") + lead + rng.choice(BEFORE)
        suffix = rng.choice(AFTER) + (" " if at < len(words) else "") + " ".join(words[at:])
        texts.append(prefix + v + suffix)
        truth.append((kind, len(prefix), len(prefix) + len(v), v))
    pred = {i: r["pii_spans"] for i, r in run_scrub(binary, texts, tmp, "eval", "tag")[0].items()}

    def score(pred):
        stats = {k: {"tp": 0, "fn": 0, "fp": 0} for k in KINDS}
        misses = {k: [] for k in KINDS}
        false_pos = {k: [] for k in KINDS}
        control = []
        for i, (kind, s, e, v) in enumerate(truth):
            spans = pred.get(i, [])
            if kind in ("bad_card", "bad_iban"):
                control += [(kind, v, p["kind"]) for p in spans if p["start"] < e and s < p["end"]]
                continue
            hit = False
            for p in spans:
                overlap = p["start"] < e and s < p["end"]
                if p["kind"] == kind and overlap and not hit:
                    hit = True
                elif p["kind"] in stats:
                    stats[p["kind"]]["fp"] += 1
                    false_pos[p["kind"]].append(texts[i][p["start"]:p["end"]])
            stats[kind]["tp" if hit else "fn"] += 1
            if not hit:
                misses[kind].append(texts[i][max(0, s - 12): e + 12])
        return stats, misses, false_pos, control

    stats, misses, false_pos, control = score(pred)
    src = "Documentation/ lines of " if is_docs else ""
    print(f"{n} sentences from {src}{corpus} (seed {seed}); {len(clean)} clean base lines")
    print(f"{'kind':<12} {'recall':>7} {'precision':>9}   tp   fn   fp")
    for k in KINDS:
        st = stats[k]
        r = st["tp"] / max(1, st["tp"] + st["fn"])
        p = st["tp"] / max(1, st["tp"] + st["fp"])
        print(f"{k:<12} {r:7.3f} {p:9.3f} {st['tp']:4d} {st['fn']:4d} {st['fp']:4d}   "
              f"misses: {misses[k][:3]} false: {false_pos[k][:3]}")
    print(f"detections (any kind) on Luhn-invalid cards / mod-97-invalid IBANs: {len(control)} {control[:6]}")

    # libphonenumber's own matcher on the same texts, phones only.
    lib = {}
    for i, t in enumerate(texts):
        lib[i] = [{"kind": "phone", "start": m.start, "end": m.end}
                  for m in phonenumbers.PhoneNumberMatcher(t, "US", leniency=phonenumbers.Leniency.VALID)]
    lst, _, _, lctl = score(lib)
    st = lst["phone"]
    print(f"libphonenumber PhoneNumberMatcher (region US, VALID): phone recall "
          f"{st['tp'] / max(1, st['tp'] + st['fn']):.3f} precision {st['tp'] / max(1, st['tp'] + st['fp']):.3f}"
          f" ({st['tp']} tp, {st['fn']} fn, {st['fp']} fp); on the invalid controls: {len(lctl)}")
    # dsproc's phone spans filtered by libphonenumber's validity (country lengths and
    # prefixes from its metadata): would the metadata rule out dsproc's false phones?
    def lib_valid(t):
        try:
            return phonenumbers.is_valid_number(phonenumbers.parse(t, "US"))
        except phonenumbers.NumberParseException:
            return False
    filtered = {i: [p for p in sp if p["kind"] != "phone" or lib_valid(texts[i][p["start"]:p["end"]])]
                for i, sp in pred.items()}
    fst, _, _, _ = score(filtered)
    st = fst["phone"]
    print(f"dsproc phones kept only when libphonenumber calls them valid: recall "
          f"{st['tp'] / max(1, st['tp'] + st['fn']):.3f} precision {st['tp'] / max(1, st['tp'] + st['fp']):.3f}"
          f" ({st['tp']} tp, {st['fn']} fn, {st['fp']} fp)")
    print(f"detections in {n * 3} real lines (not in the truth; real emails are expected):")
    for k, vals in sorted(natural.items()):
        print(f"  {k:<12} {len(vals):5d}  e.g. {vals[:6]}")

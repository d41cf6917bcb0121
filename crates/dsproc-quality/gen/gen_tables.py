#!/usr/bin/env python3
"""Generate src/tables.rs: the data of spaCy's English tokenizer (`spacy.blank("en")`
+ `sentencizer`, as datatrove 0.10.1 loads it for English) and datatrove's character sets.

Run with the reference venv (datatrove[processing]==0.10.1, spacy 3.8.x):
    ~/.cache/dsproc-quality-venv/bin/python crates/dsproc-quality/gen/gen_tables.py

Python `re` patterns are translated to Rust (fancy-regex) syntax through the parsed
pattern tree, so every literal is an escaped code point and the Unicode classes `\\d`,
`\\w`, `\\s` become explicit code-point ranges taken from this Python's `str` methods
(Python's `re` uses exactly those), which keeps the Rust side independent of the Unicode
version of the `regex` crate.
"""
import os
import sys
import unicodedata

try:
    import re._parser as sre_parse
    import re._constants as C
except ImportError:  # python < 3.11
    import sre_parse
    import sre_constants as C

import spacy
import datatrove
from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION
from datatrove.pipeline.filters import gopher_quality_filter, c4_filters
from spacy.pipeline import Sentencizer
from spacy.lang.lex_attrs import is_punct as spacy_is_punct
from spacy.tokenizer import Tokenizer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "tables.rs")
MAXCP = 0x110000


def ranges_of(pred):
    out = []
    start = None
    for cp in range(MAXCP):
        if 0xD800 <= cp <= 0xDFFF:
            ok = False
        else:
            ok = pred(chr(cp))
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            out.append((start, cp - 1))
            start = None
    if start is not None:
        out.append((start, MAXCP - 1))
    return out


def ranges_from_set(chars):
    cps = sorted(ord(c) for c in chars)
    out = []
    for cp in cps:
        if out and out[-1][1] + 1 == cp:
            out[-1] = (out[-1][0], cp)
        else:
            out.append((cp, cp))
    return out


PY_DIGIT = ranges_of(lambda c: c.isdecimal())
PY_WORD = ranges_of(lambda c: c.isalnum() or c == "_")
PY_SPACE = ranges_of(lambda c: c.isspace())


def esc(cp):
    return "\\x{%X}" % cp


def class_body(ranges):
    return "".join(esc(a) if a == b else esc(a) + "-" + esc(b) for a, b in ranges)


CATS = {
    C.CATEGORY_DIGIT: (PY_DIGIT, False),
    C.CATEGORY_NOT_DIGIT: (PY_DIGIT, True),
    C.CATEGORY_WORD: (PY_WORD, False),
    C.CATEGORY_NOT_WORD: (PY_WORD, True),
    C.CATEGORY_SPACE: (PY_SPACE, False),
    C.CATEGORY_NOT_SPACE: (PY_SPACE, True),
}


def tr_class(items):
    neg = False
    parts = []
    for op, av in items:
        if op == C.NEGATE:
            neg = True
        elif op == C.LITERAL:
            parts.append(esc(av))
        elif op == C.RANGE:
            parts.append(esc(av[0]) + "-" + esc(av[1]))
        elif op == C.CATEGORY:
            rng, cneg = CATS[av]
            if cneg:
                # a negated category inside a class: only used alone in our patterns
                assert len(items) == 1, items
                return "[^" + class_body(rng) + "]"
            parts.append(class_body(rng))
        else:
            raise ValueError(f"class item {op}")
    return "[" + ("^" if neg else "") + "".join(parts) + "]"


def tr(seq):
    out = []
    for op, av in seq:
        if op == C.LITERAL:
            out.append(esc(av))
        elif op == C.NOT_LITERAL:
            out.append("[^" + esc(av) + "]")
        elif op == C.ANY:
            out.append(".")
        elif op == C.IN:
            out.append(tr_class(av))
        elif op == C.BRANCH:
            out.append("(?:" + "|".join(tr(s) for s in av[1]) + ")")
        elif op == C.SUBPATTERN:
            group, add_flags, del_flags, p = av
            assert not add_flags or add_flags == C.SRE_FLAG_UNICODE, add_flags
            out.append("(?:" + tr(p) + ")")
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, p = av
            inner = "(?:" + tr(p) + ")"
            if hi == C.MAXREPEAT:
                q = "{%d,}" % lo
            else:
                q = "{%d,%d}" % (lo, hi)
            out.append(inner + q + ("?" if op == C.MIN_REPEAT else ""))
        elif op == C.ASSERT:
            d, p = av
            out.append(("(?=" if d == 1 else "(?<=") + tr(p) + ")")
        elif op == C.ASSERT_NOT:
            d, p = av
            out.append(("(?!" if d == 1 else "(?<!") + tr(p) + ")")
        elif op == C.AT:
            if av == C.AT_BEGINNING or av == C.AT_BEGINNING_STRING:
                out.append("^")
            elif av == C.AT_END:
                # Python's `$` also matches before a final "\n"; the tokenizer only runs
                # these on spans without "\n" (or whitespace-only spans no rule matches).
                out.append("$")
            elif av == C.AT_END_STRING:
                out.append("\\z")
            else:
                raise ValueError(av)
        elif op == C.CATEGORY:
            rng, neg = CATS[av]
            out.append("[" + ("^" if neg else "") + class_body(rng) + "]")
        else:
            raise ValueError(f"op {op}")
    return "".join(out)


def translate(pattern_obj):
    assert not (pattern_obj.flags & (C.SRE_FLAG_IGNORECASE | C.SRE_FLAG_MULTILINE | C.SRE_FLAG_DOTALL | C.SRE_FLAG_VERBOSE)), pattern_obj.flags
    return tr(sre_parse.parse(pattern_obj.pattern, pattern_obj.flags))


def first_chars(seq, from_end=False):
    """Set of code points (as ranges) the first (or last) consumed char can be, or None for any."""
    items = list(seq)
    if from_end:
        items = items[::-1]
    for op, av in items:
        if op in (C.ASSERT, C.ASSERT_NOT, C.AT):
            continue
        if op == C.LITERAL:
            return {av}
        if op == C.IN:
            s = set()
            for iop, iav in av:
                if iop == C.LITERAL:
                    s.add(iav)
                elif iop == C.RANGE:
                    s.update(range(iav[0], iav[1] + 1))
                elif iop == C.CATEGORY:
                    rng, neg = CATS[iav]
                    if neg:
                        return None
                    for a, b in rng:
                        s.update(range(a, b + 1))
                else:
                    return None
            return s
        if op == C.BRANCH:
            s = set()
            for b in av[1]:
                fb = first_chars(b, from_end)
                if fb is None:
                    return None
                s |= fb
            return s
        if op == C.SUBPATTERN:
            return first_chars(av[3], from_end)
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            if av[0] == 0:
                return None
            return first_chars(av[2], from_end)
        return None
    return None


def set_to_ranges(s):
    out = []
    for cp in sorted(s):
        if out and out[-1][1] + 1 == cp:
            out[-1] = (out[-1][0], cp)
        else:
            out.append((cp, cp))
    return out


def rs_str(s):
    out = []
    for ch in s:
        cp = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif 0x20 <= cp < 0x7F:
            out.append(ch)
        else:
            out.append("\\u{%X}" % cp)
    return '"' + "".join(out) + '"'


def rs_ranges(name, rng, doc):
    body = ",\n".join("    (0x%X, 0x%X)" % (a, b) for a, b in rng)
    return f"/// {doc}\npub static {name}: &[(u32, u32)] = &[\n{body},\n];\n"


def has_assert(seq):
    for op, av in seq:
        if op in (C.ASSERT, C.ASSERT_NOT):
            return True
        if op == C.BRANCH and any(has_assert(b) for b in av[1]):
            return True
        if op == C.SUBPATTERN and has_assert(av[3]):
            return True
        if op in (C.MAX_REPEAT, C.MIN_REPEAT) and has_assert(av[2]):
            return True
    return False


def width(seq):
    lo, hi = sre_parse.SubPattern(sre_parse.State(), list(seq)).getwidth()
    assert lo == hi, seq
    return lo


def prefix_parts(pieces):
    """Consecutive look-around-free pieces grouped into one pattern (first match in
    order wins, as with Python's alternation), the others alone (fancy-regex)."""
    out = []
    group = []
    for piece in pieces:
        tree = list(sre_parse.parse(piece))
        if has_assert(tree):
            if group:
                out.append(("^(?:" + "|".join(group) + ")", False))
                group = []
            out.append(("^(?:" + tr(tree) + ")", True))
        else:
            group.append(tr(tree))
    if group:
        out.append(("^(?:" + "|".join(group) + ")", False))
    return out


def suffix_parts(pieces):
    """Suffix pieces as (pattern, look-behind width, last chars, needed chars): the
    suffix is the text from the leftmost position where any piece matches to the end,
    so a piece with a leading look-behind of width w becomes `LB BODY$` (its match
    starts w characters before that position). The look-around-free pieces form one
    pattern; each look-behind piece is its own. A part can only match a string that
    ends with one of its last chars and holds one of its needed chars."""
    plain, plain_last, plain_need = [], set(), set()
    parts = []
    for piece in pieces:
        tree = list(sre_parse.parse(piece))
        if tree and tree[0][0] == C.ASSERT and tree[0][1][0] == -1:
            lb_tree = list(tree[0][1][1])
            body = tree[1:]
            assert not has_assert(body), piece
            need = first_chars(lb_tree)
            assert need is not None, piece
            parts.append(("(?:" + tr(lb_tree) + "(?:" + tr(body) + "))$", width(lb_tree),
                          set_to_ranges(first_chars(body, from_end=True)), set_to_ranges(need)))
        else:
            assert not has_assert(tree), piece
            plain.append("(?:" + tr(tree) + ")")
            plain_last |= first_chars(tree, from_end=True)
            plain_need |= first_chars(tree)
    return [("(?:" + "|".join(plain) + ")$", 0, set_to_ranges(plain_last), set_to_ranges(plain_need))] + parts


def rs_rng(r):
    return "&[" + ", ".join("(0x%X, 0x%X)" % x for x in r) + "]"


def infix_pieces(pieces):
    """Each infix piece as (look-behind chars, body, look-ahead chars); the structure
    of spaCy 3.8's English infixes is asserted, so a change fails here."""
    out = []
    for piece in pieces:
        tree = list(sre_parse.parse(piece))
        behind = ahead = None
        if tree and tree[0][0] == C.ASSERT and tree[0][1][0] == -1:
            inner = list(tree[0][1][1])
            assert len(inner) == 1, piece
            behind = set_to_ranges(first_chars(inner))
            tree = tree[1:]
        if tree and tree[-1][0] == C.ASSERT and tree[-1][1][0] == 1:
            inner = list(tree[-1][1][1])
            assert len(inner) == 1, piece
            ahead = set_to_ranges(first_chars(inner))
            tree = tree[:-1]
        assert not has_assert(tree), piece
        if len(tree) == 1 and tree[0][0] == C.LITERAL:
            body = "InfixBody::Lits(&[%s])" % rs_str(chr(tree[0][1]))
        elif len(tree) == 1 and tree[0][0] == C.IN:
            body = "InfixBody::Class(%s)" % rs_rng(set_to_ranges(first_chars(tree)))
        elif len(tree) == 1 and tree[0][0] == C.BRANCH:
            lits = []
            for b in tree[0][1][1]:
                assert all(op == C.LITERAL for op, _ in b), piece
                lits.append("".join(chr(av) for _, av in b))
            body = "InfixBody::Lits(&[%s])" % ", ".join(rs_str(x) for x in lits)
        elif (len(tree) == 2 and tree[0][0] == C.LITERAL and tree[1][0] == C.MAX_REPEAT
              and tree[1][1][1] == C.MAXREPEAT and list(tree[1][1][2]) == [(C.LITERAL, tree[0][1])]):
            assert ahead is None, piece  # a greedy run with nothing after needs no backtracking
            body = "InfixBody::Run(%s, %d)" % (rs_str(chr(tree[0][1])).replace('"', "'"), 1 + tree[1][1][0])
        else:
            raise ValueError(f"unexpected infix piece {piece!r}")
        out.append("    (%s, %s, %s),\n" % (
            "None" if behind is None else "Some(%s)" % rs_rng(behind),
            body,
            "None" if ahead is None else "Some(%s)" % rs_rng(ahead),
        ))
    return out


def main():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    tok = nlp.tokenizer
    assert tok.token_match is None
    prefix_p = tok.prefix_search.__self__
    suffix_p = tok.suffix_search.__self__
    infix_p = tok.infix_finditer.__self__
    url_p = tok.url_match.__self__

    rules = tok.rules
    specials = []
    for k in sorted(rules):
        pieces = [d[65] if 65 in d else d.get("ORTH", d.get(65)) for d in rules[k]]
        pieces = []
        for d in rules[k]:
            for key, v in d.items():
                if key == 65 or key == "ORTH":
                    pieces.append(v)
        assert "".join(pieces) == k, (k, pieces)
        specials.append((k, pieces))

    # Tokenization of each special without special cases (the PhraseMatcher patterns).
    plain = Tokenizer(
        nlp.vocab,
        rules={},
        prefix_search=tok.prefix_search,
        suffix_search=tok.suffix_search,
        infix_finditer=tok.infix_finditer,
        token_match=tok.token_match,
        url_match=tok.url_match,
    )
    matcher = []
    for k, _ in specials:
        if tok.find_prefix(k) or tok.find_infix(k) or tok.find_suffix(k) or " " in k:
            matcher.append((k, [t.text for t in plain(k)]))

    sent = nlp.get_pipe("sentencizer")
    punct_chars = sorted(sent.punct_chars)
    assert all(len(c) == 1 for c in punct_chars)

    pre_tree = sre_parse.parse(prefix_p.pattern)
    suf_tree = sre_parse.parse(suffix_p.pattern)
    inf_tree = sre_parse.parse(infix_p.pattern)
    pre_first = first_chars(pre_tree)
    suf_last = first_chars(suf_tree, from_end=True)
    inf_first = first_chars(inf_tree)
    url_tree = sre_parse.parse(url_p.pattern, url_p.flags)
    assert pre_first is not None and suf_last is not None and inf_first is not None

    pre_pieces = [p for p in nlp.Defaults.prefixes if p.strip()]
    suf_pieces = [p for p in nlp.Defaults.suffixes if p.strip()]
    assert prefix_p.pattern == "|".join("^" + p for p in pre_pieces)
    assert suffix_p.pattern == "|".join(p + "$" for p in suf_pieces)

    out = []
    out.append("// @generated by gen/gen_tables.py from spaCy %s (spacy.blank(\"en\") + sentencizer)\n" % spacy.__version__)
    out.append("// and datatrove %s on Python %s (Unicode %s). Do not edit.\n" % (datatrove.__version__ if hasattr(datatrove, "__version__") else "0.10.1", sys.version.split()[0], unicodedata.unidata_version))
    out.append("// The single PREFIX_RE/SUFFIX_RE/INFIX_RE regexes are only used by tests (the split parts are used).\n#![allow(clippy::all, dead_code)]\n\n")
    out.append("/// spaCy English prefix regex (translated from `nlp.tokenizer.prefix_search`).\n")
    out.append("pub static PREFIX_RE: &str = %s;\n" % rs_str(translate(prefix_p)))
    out.append("/// spaCy English suffix regex.\npub static SUFFIX_RE: &str = %s;\n" % rs_str(translate(suffix_p)))
    out.append("/// spaCy English infix regex.\npub static INFIX_RE: &str = %s;\n" % rs_str(translate(infix_p)))
    out.append("/// spaCy URL_MATCH regex.\npub static URL_RE: &str = %s;\n\n" % rs_str(translate(url_p)))
    out.append("/// The prefix pieces in order, consecutive look-around-free ones grouped: (pattern, needs fancy-regex).\n")
    out.append("pub static PREFIX_PARTS: &[(&str, bool)] = &[\n")
    for pat, fancy in prefix_parts(pre_pieces):
        out.append("    (%s, %s),\n" % (rs_str(pat), "true" if fancy else "false"))
    out.append("];\n")
    out.append("/// Suffix parts: (pattern, width of the leading look-behind matched as text, last chars, needed chars).\n")
    out.append("pub static SUFFIX_PARTS: &[(&str, usize, &[(u32, u32)], &[(u32, u32)])] = &[\n")
    for pat, w, last, need in suffix_parts(suf_pieces):
        out.append("    (%s, %d, %s, %s),\n" % (rs_str(pat), w, rs_rng(last), rs_rng(need)))
    out.append("];\n")
    inf_pieces = [p for p in nlp.Defaults.infixes if p.strip()]
    assert infix_p.pattern == "|".join(inf_pieces)
    out.append("/// The body of an infix piece.\npub enum InfixBody {\n    /// Literal strings, tried in order.\n    Lits(&'static [&'static str]),\n    /// One character of a set.\n    Class(&'static [(u32, u32)]),\n    /// A greedy run of at least n of one character.\n    Run(char, usize),\n}\n")
    out.append("/// The infix pieces in order: (look-behind chars, body, look-ahead chars).\n")
    out.append("pub static INFIX_PIECES: &[(Option<&[(u32, u32)]>, InfixBody, Option<&[(u32, u32)]>)] = &[\n")
    out.extend(infix_pieces(inf_pieces))
    out.append("];\n")
    out.append(rs_ranges("PREFIX_FIRST", set_to_ranges(pre_first), "Characters a prefix match can start with."))
    out.append(rs_ranges("SUFFIX_LAST", set_to_ranges(suf_last), "Characters a suffix match can end with."))
    out.append(rs_ranges("INFIX_FIRST", set_to_ranges(inf_first), "Characters an infix match can start with."))
    out.append("/// Tokenizer exceptions (special cases): the string and its tokens.\n")
    out.append("pub static SPECIALS: &[(&str, &[&str])] = &[\n")
    for k, pieces in specials:
        out.append("    (%s, &[%s]),\n" % (rs_str(k), ", ".join(rs_str(p) for p in pieces)))
    out.append("];\n")
    out.append("/// Special cases the PhraseMatcher re-applies after affix splitting, with their plain tokenization.\n")
    out.append("pub static MATCHER: &[(&str, &[&str])] = &[\n")
    for k, pieces in matcher:
        out.append("    (%s, &[%s]),\n" % (rs_str(k), ", ".join(rs_str(p) for p in pieces)))
    out.append("];\n")
    out.append(rs_ranges("SENT_PUNCT", ranges_from_set(punct_chars), "Sentencizer default punct_chars."))
    out.append(rs_ranges("PY_SPACE", PY_SPACE, "Python str.isspace()."))
    out.append(rs_ranges("PY_ALPHA", ranges_of(lambda c: c.isalpha()), "Python str.isalpha()."))
    out.append(rs_ranges("PY_DIGIT", PY_DIGIT, "Python str.isdecimal() (re's \\d)."))
    out.append(rs_ranges("UNICODE_P", ranges_of(lambda c: unicodedata.category(c).startswith("P")), "unicodedata.category(c) starts with 'P' (spaCy is_punct)."))
    out.append(rs_ranges("PUNCTUATION_SET", ranges_from_set(PUNCTUATION_SET), "datatrove.utils.text.PUNCTUATION_SET."))
    out.append(rs_ranges("TERMINAL_PUNCTUATION", ranges_from_set(TERMINAL_PUNCTUATION), "datatrove.utils.text.TERMINAL_PUNCTUATION."))
    # sanity: spaCy's is_punct equals the category rule
    assert spacy_is_punct("...") and not spacy_is_punct("a.")
    assert gopher_quality_filter.STOP_WORDS == ["the", "be", "to", "of", "and", "that", "have", "with"]
    with open(OUT, "w") as f:
        f.write("".join(out))
    print(f"wrote {OUT}: {len(specials)} specials, {len(matcher)} matcher patterns")


if __name__ == "__main__":
    main()

"""hoop's masking engine and Microsoft Presidio's analyzer on one labelled corpus.

Run by tests/bench/masking_peer.sh, which makes the venv this needs and
hoop's findings (broker/masking/examples/corpus_run.rs). Scores both with
one scorer, the rules of broker/masking/tests/corpus.rs:

- text documents by span: a labelled value is found when a finding of the
  same type covers all of its letters and digits; a finding that overlaps
  no labelled value of its type is a false positive;
- JSON records by leaf (strings): a labelled leaf is found when it comes
  out masked as its type with nothing of the raw value left (hoop), or a
  result of its type covers it (Presidio, which sees each string leaf with
  its key as context, as its BatchAnalyzerEngine.analyze_dict does); any
  other type found in a leaf is a false positive of that type.

Presidio runs its own pattern recognizers with its context enhancer; no NER
model can be downloaded here, so its spaCy pipeline is spacy.blank("en")
(a tokenizer) with each token's lower case standing in for its lemma, and
the only entities asked for are the ones hoop has (a Presidio type that is
not one of hoop's, such as US_DRIVER_LICENSE, is neither asked for nor
counted). tldextract, which its email recognizer calls, is kept to its
bundled suffix list: nothing here leaves the machine.

Usage: masking_peer.py --corpus tests/corpus/corpus.jsonl --hoop HOOP.jsonl [--misses]
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import tldextract

# Before presidio_analyzer imports it: no download of the public suffix list.
tldextract.extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

from importlib.metadata import version  # noqa: E402

import spacy  # noqa: E402
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry  # noqa: E402
from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine  # noqa: E402
from presidio_analyzer.predefined_recognizers import AbaRoutingRecognizer  # noqa: E402

# Presidio's entity for each of hoop's types. hoop's `secret` (cloud keys,
# private keys, JWTs, bearer tokens, connection-string passwords) has none.
PRESIDIO_TYPE = {
    "card": "CREDIT_CARD",
    "ssn": "US_SSN",
    "iban": "IBAN_CODE",
    "routing": "ABA_ROUTING_NUMBER",
    "account": "US_BANK_NUMBER",
    "email": "EMAIL_ADDRESS",
    "phone": "PHONE_NUMBER",
}
HOOP_TYPE = {v: k for k, v in PRESIDIO_TYPE.items()}
TYPES = ["card", "iban", "routing", "ssn", "account", "phone", "email", "secret"]
THRESHOLDS = (0.0, 0.5)  # Presidio's default (every result), and a common cut


class BlankEnglish(SpacyNlpEngine):
    """spaCy's blank English tokenizer; a token's lower case is its lemma."""

    def __init__(self) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": "blank"}])
        self.nlp = {"en": spacy.blank("en")}

    def load(self) -> None:  # nothing to download
        pass

    def _doc_to_nlp_artifact(self, doc: Any, language: str) -> NlpArtifacts:
        return NlpArtifacts(
            entities=[],
            tokens=doc,
            tokens_indices=[t.idx for t in doc],
            lemmas=[t.lower_ for t in doc],
            nlp_engine=self,
            language=language,
            scores=[],
        )


def presidio() -> AnalyzerEngine:
    nlp = BlankEnglish()
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
    if not any(isinstance(r, AbaRoutingRecognizer) for r in registry.recognizers):
        registry.add_recognizer(AbaRoutingRecognizer())
    return AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=["en"])


class Score:
    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0

    def precision(self) -> float | None:
        return None if self.tp + self.fp == 0 else self.tp / (self.tp + self.fp)

    def recall(self) -> float | None:
        return None if self.tp + self.fn == 0 else self.tp / (self.tp + self.fn)


def alnum_bounds(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and not text[s].isalnum():
        s += 1
    while e > s and not text[e - 1].isalnum():
        e -= 1
    return s, e


def score_spans(text: str, truth: list, found: list, scores: dict, misses: list, doc_id: str) -> None:
    for s, e, t in truth:
        s, e = alnum_bounds(text, s, e)
        hit = any(ft == t and fs <= s and fe >= e for fs, fe, ft in found)
        sc = scores.setdefault(t, Score())
        if hit:
            sc.tp += 1
        else:
            sc.fn += 1
            misses.append(f"{doc_id}: missed {t} {text[s:e]!r}")
    for fs, fe, ft in found:
        if not any(t == ft and fs < e and s < fe for s, e, t in truth):
            scores.setdefault(ft, Score()).fp += 1
            misses.append(f"{doc_id}: false {ft} {text[fs:fe]!r}")


def leaves(v: Any, at: str = "", key: str = "") -> list[tuple[str, str, str]]:
    """(JSON pointer, key, string) for every string leaf."""
    if isinstance(v, dict):
        return [x for k, w in v.items() for x in leaves(w, f"{at}/{k}", k)]
    if isinstance(v, list):
        return [x for i, w in enumerate(v) for x in leaves(w, f"{at}/{i}", key)]
    return [(at, key, v)] if isinstance(v, str) else []


def pointer(v: Any, ptr: str) -> Any:
    for part in ptr.split("/")[1:]:
        v = v[int(part)] if isinstance(v, list) else v.get(part)
        if v is None:
            return None
    return v


def masked_labels(s: str) -> list[str]:
    return [rest.split("]", 1)[0] for rest in s.split("[MASKED:")[1:]]


def score_hoop_json(doc: dict, masked: Any, scores: dict, misses: list) -> None:
    truth = {ptr: t for ptr, t in doc["labels"]}
    for ptr, _key, raw in leaves(doc["value"]):
        out = pointer(masked, ptr)
        out_text = out if isinstance(out, str) else json.dumps(out)
        labels = masked_labels(out_text)
        t = truth.get(ptr)
        if t is not None:
            sc = scores.setdefault(t, Score())
            if t in labels and raw not in out_text:
                sc.tp += 1
            else:
                sc.fn += 1
                misses.append(f"{doc['id']}: missed {t} at {ptr}: {raw!r} -> {out_text!r}")
            for label in labels:
                if label != t:
                    scores.setdefault(label, Score()).fp += 1
        elif out != raw and not isinstance(out, (int, float)):
            for label in labels:
                scores.setdefault(label, Score()).fp += 1
            misses.append(f"{doc['id']}: false at {ptr}: {raw!r} -> {out_text!r}")


def key_context(key: str) -> list[str]:
    return [w for w in key.replace("-", "_").lower().split("_") if w]


def run_presidio(engine: AnalyzerEngine, docs: list[dict]) -> tuple[dict, float]:
    """Every result per document, and the seconds the analyzer took."""
    entities = list(PRESIDIO_TYPE.values())
    results: dict[str, Any] = {}
    spent = 0.0
    for doc in docs:
        if doc["kind"] == "json":
            per_leaf = {}
            for ptr, key, text in leaves(doc["value"]):
                t0 = time.perf_counter()
                got = engine.analyze(text=text, language="en", entities=entities, context=key_context(key))
                spent += time.perf_counter() - t0
                per_leaf[ptr] = [(r.start, r.end, HOOP_TYPE[r.entity_type], r.score) for r in got]
            results[doc["id"]] = per_leaf
        else:
            t0 = time.perf_counter()
            got = engine.analyze(text=doc["text"], language="en", entities=entities)
            spent += time.perf_counter() - t0
            results[doc["id"]] = [(r.start, r.end, HOOP_TYPE[r.entity_type], r.score) for r in got]
    return results, spent


def score_presidio(docs: list[dict], results: dict, threshold: float, misses: list) -> dict:
    scores: dict[str, Score] = {}
    for doc in docs:
        got = results[doc["id"]]
        if doc["kind"] == "json":
            truth = {ptr: t for ptr, t in doc["labels"]}
            for ptr, _key, text in leaves(doc["value"]):
                kept = [r for r in got[ptr] if r[3] >= threshold]
                t = truth.get(ptr)
                if t is not None:
                    s, e = alnum_bounds(text, 0, len(text))
                    sc = scores.setdefault(t, Score())
                    if any(ft == t and fs <= s and fe >= e for fs, fe, ft, _ in kept):
                        sc.tp += 1
                    else:
                        sc.fn += 1
                        misses.append(f"{doc['id']}: missed {t} at {ptr}: {text!r}")
                for ft in {r[2] for r in kept}:
                    if ft != t:
                        scores.setdefault(ft, Score()).fp += 1
        else:
            kept = [(s, e, t) for s, e, t, score in got if score >= threshold]
            score_spans(doc["text"], doc["labels"], kept, scores, misses, doc["id"])
    return scores


def corpus_bytes(docs: list[dict]) -> int:
    return sum(
        len(json.dumps(d["value"], separators=(",", ":")).encode())
        if d["kind"] == "json"
        else len(d["text"].encode())
        for d in docs
    )


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--hoop", required=True, help="corpus_run's output")
    ap.add_argument("--misses", action="store_true", help="also list every miss and false positive")
    args = ap.parse_args()

    with open(args.corpus) as f:
        docs = [json.loads(line) for line in f if line.strip()]
    with open(args.hoop) as f:
        hoop_lines = [json.loads(line) for line in f if line.strip()]
    timing = hoop_lines[-1]
    hoop_out = {x["id"]: x for x in hoop_lines[:-1]}
    if len(hoop_out) != len(docs):
        print(f"masking_peer: {args.hoop} has {len(hoop_out)} documents, the corpus {len(docs)}", file=sys.stderr)
        return 1

    misses: list[str] = []
    hoop_scores: dict[str, Score] = {}
    for doc in docs:
        got = hoop_out[doc["id"]]
        if doc["kind"] == "json":
            score_hoop_json(doc, got["masked"], hoop_scores, misses)
        else:
            found = [tuple(x) for x in got["found"]]
            score_spans(doc["text"], doc["labels"], found, hoop_scores, misses, doc["id"])

    engine = presidio()
    engine.analyze(text="warm up 4111 1111 1111 1111", language="en")
    results, spent = run_presidio(engine, docs)
    by_threshold = {th: score_presidio(docs, results, th, misses if th == 0.0 else []) for th in THRESHOLDS}

    total = corpus_bytes(docs)
    if total != timing["bytes"]:
        print(f"masking_peer: byte counts differ: {total} here, {timing['bytes']} in hoop's run", file=sys.stderr)
        return 1
    hoop_mbs = timing["bytes"] * timing["passes"] / timing["seconds"] / 1e6
    presidio_mbs = total / spent / 1e6

    labelled = {t: (hoop_scores.get(t) or Score()) for t in TYPES}
    print(
        f"Corpus: {len(docs)} documents, {total} bytes. presidio-analyzer {version('presidio-analyzer')} "
        f"(spaCy {spacy.__version__}, blank English), pattern recognizers and context enhancer."
    )
    print()
    head = "| type | labelled | hoop precision | hoop recall |"
    rule = "|---|---:|---:|---:|"
    for th in THRESHOLDS:
        name = "Presidio" if th == 0.0 else f"Presidio ≥ {th}"
        head += f" {name} precision | {name} recall |"
        rule += "---:|---:|"
    print(head)
    print(rule)
    for t in TYPES:
        h = labelled[t]
        row = f"| {t} | {h.tp + h.fn} | {pct(h.precision())} | {pct(h.recall())} |"
        for th in THRESHOLDS:
            if t not in PRESIDIO_TYPE:
                row += " no recognizer | no recognizer |"
                continue
            p = by_threshold[th].get(t) or Score()
            row += f" {pct(p.precision())} | {pct(p.recall())} |"
        print(row)
    hoop_kib = 1e6 * timing["seconds"] / timing["passes"] / (total / 1024)
    print()
    print("| engine | MB/s on one core | time per KiB | timed |")
    print("|---|---:|---:|---|")
    print(f"| hoop | {hoop_mbs:.1f} | {hoop_kib:.1f} µs | {timing['passes']} passes in {timing['seconds']:.2f} s |")
    print(f"| Presidio | {presidio_mbs:.3f} | {1e3 * spent / (total / 1024):.1f} ms | one pass in {spent:.2f} s |")
    if args.misses:
        print()
        for m in misses:
            print(f"  {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

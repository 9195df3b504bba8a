#!/usr/bin/env python3
"""Generate small multiple-choice tasks from plain text with a fixed seed, in the jsonl layout
`tqinfer eval` reads: {"context": str, "choices": [str], "gold": int} per line.

Kinds:
  cloze  the context is a sentence without its last word; the choices are that word and distractor
         words of similar length drawn from the same text (the harness's LAMBADA-as-multiple-choice idea).
  next   the context is a sentence; the choices are the sentence that follows it and sentences drawn
         from elsewhere in the text (a next-sentence choice, like HellaSwag's endings).

Choices carry no leading space: `tqinfer eval` puts the target delimiter (" ") between context and
choice, as the harness does.

  scripts/make-tasks.py --kind cloze --n 200 --seed 1 corpus/heldout.txt > tasks/cloze.jsonl
"""
import argparse
import json
import random
import re
import sys


def sentences(text, max_words):
    text = re.sub(r"\s+", " ", text)
    # Pre-tokenized corpora (Brown) put spaces before punctuation ("movies '' ! !"): attach it again
    # so a sentence's last word is a word, not a lone "." token.
    text = re.sub(r" ([.,;:!?)'])", r"\1", text)
    text = re.sub(r"([!?.])(?: ?[!?.])+", r"\1", text)
    parts = re.split(r"(?<=[.!?])\s+", text)
    return [p.strip() for p in parts if 4 <= len(p.strip().split()) <= max_words]


def make_cloze(sents, n, k, rng):
    words = sorted({w.strip(".,;:!?\"'()") for s in sents for w in s.split()} - {""})
    out = []
    order = list(range(len(sents)))
    rng.shuffle(order)
    for i in order:
        if len(out) >= n:
            break
        toks = sents[i].split()
        answer = toks[-1].strip(".,;:!?\"'()")
        if not answer:
            continue
        pool = [w for w in words if w != answer and abs(len(w) - len(answer)) <= 2] or \
               [w for w in words if w != answer]
        if len(pool) < k - 1:
            continue
        choices = rng.sample(pool, k - 1)
        gold = rng.randrange(k)
        choices.insert(gold, answer)
        out.append({"context": " ".join(toks[:-1]), "choices": choices, "gold": gold})
    return out


def make_next(sents, n, k, rng):
    out = []
    order = list(range(len(sents) - 1))
    rng.shuffle(order)
    for i in order:
        if len(out) >= n:
            break
        answer = sents[i + 1]
        others = [j for j in range(len(sents)) if j not in (i, i + 1) and sents[j] != answer]
        if len(others) < k - 1:
            continue
        choices = [sents[j] for j in rng.sample(others, k - 1)]
        gold = rng.randrange(k)
        choices.insert(gold, answer)
        out.append({"context": sents[i], "choices": choices, "gold": gold})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("text", nargs="+", help="UTF-8 text files")
    ap.add_argument("--kind", choices=["cloze", "next"], default="cloze")
    ap.add_argument("--n", type=int, default=100, help="docs to write at most")
    ap.add_argument("--choices", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-words", type=int, default=40,
                    help="skip sentences longer than this (keeps requests inside small models' contexts)")
    ap.add_argument("--output", "-o", help="output jsonl (default stdout)")
    a = ap.parse_args()
    if a.choices < 2:
        ap.error("--choices must be >= 2")
    text = ""
    for path in a.text:
        with open(path, encoding="utf-8") as f:
            text += f.read() + "\n"
    sents = sentences(text, a.max_words)
    rng = random.Random(a.seed)
    docs = (make_cloze if a.kind == "cloze" else make_next)(sents, a.n, a.choices, rng)
    if not docs:
        sys.exit(f"make-tasks: no {a.kind} docs could be made from {len(sents)} sentences "
                 f"(need sentences of 4 to {a.max_words} words)")
    out = open(a.output, "w", encoding="utf-8") if a.output else sys.stdout
    for d in docs:
        out.write(json.dumps(d, ensure_ascii=False) + "\n")
    if a.output:
        out.close()
    print(f"make-tasks: {len(docs)} {a.kind} docs", file=sys.stderr)


if __name__ == "__main__":
    main()

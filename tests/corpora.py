"""Test corpora made in code: deterministic play-shaped text that a character model can learn.

Tests need text where training lowers the loss and every split is long enough, not a real book.
The text is a seeded Markov chain over a small word list, laid out like a play (a speaker's name
in capitals, a colon, a few lines, a blank line), so the prompts the pipeline samples from
(`ROMEO:`, `JULIET:`) are made of characters in the vocabulary.
"""

import random
from pathlib import Path

import numpy as np

SPEAKERS = ("ROMEO", "JULIET", "NURSE", "MERCUTIO", "FIRST CITIZEN", "KING HENRY", "QUEEN", "LADY ANNE")
VOCABULARY = (
    "the and to of my a i you that in is not for with me it be your his this but he have as thou so "
    "him will what by thy all are her do no shall if or our we come now good more lord love then sir "
    "well let here upon how they speak night day heart death king fair sweet yet tell make know hath "
    "give hear must go see ever eyes blood grace doth honour noble gentle true fear peace words hand"
)
WORDS = VOCABULARY.split()
PUNCTUATION = (".", ".", ",", ";", "!", "?")


def play(chars: int, seed: int = 0) -> str:
    """About `chars` characters (whole lines, ending in a newline) of seeded play-shaped text."""
    rng = random.Random(seed)
    # Each word prefers a handful of successors: structure beyond letter frequencies to learn.
    successors = {word: rng.sample(WORDS, 4) for word in WORDS}
    lines: list[str] = []
    size = 0
    while size < chars:
        speech = [f"{rng.choice(SPEAKERS)}:"]
        for _ in range(rng.randint(1, 4)):
            word = rng.choice(WORDS)
            words = [word]
            for _ in range(rng.randint(3, 9)):
                word = rng.choice(successors[word]) if rng.random() < 0.8 else rng.choice(WORDS)
                words.append(word)
            speech.append(" ".join(words).capitalize() + rng.choice(PUNCTUATION))
        speech.append("")
        lines += speech
        size += sum(len(line) + 1 for line in speech)
    return "\n".join(lines)  # each speech ends with a blank line, the last one too


def write_lines(path: Path, size: int, seed: int = 0) -> None:
    """About `size` bytes (whole lines) of the lines of `play`, drawn again and again in a seeded
    order: a corpus of any size in about a second per 100 MB."""
    pool = [line.encode("utf-8") + b"\n" for line in play(200_000, seed).splitlines()]
    draw = np.random.default_rng(seed)
    with open(path, "wb") as f:
        while size > 0:
            block = b"".join(pool[i] for i in draw.integers(0, len(pool), 100_000))
            block = block[: block.rfind(b"\n", 0, size) + 1] if len(block) > size else block
            f.write(block)
            size -= len(block) or size  # a line longer than what is left ends it


def many_symbols(chars: int, symbols: int, seed: int = 0) -> str:
    """About `chars` characters of lines over `symbols` CJK ideographs, as a corpus in a script of
    thousands of symbols: Zipf-distributed (a few hundred carry most of the text, a long tail occurs
    once or twice), each symbol preferring a few successors, lines of 5 or 7 as in classical poems."""
    rng = np.random.default_rng(seed)
    alphabet = np.array([chr(0x4E00 + i) for i in range(symbols)])
    size = chars * 3 // 4  # the symbols; a line's punctuation and newline make up the rest
    ranks = np.minimum(rng.zipf(1.15, size=size), symbols) - 1  # (size,) mostly small ranks
    follow = rng.integers(0, symbols, size=(symbols, 3)) % np.maximum(ranks.max() // 8, 1)
    keep = rng.random(size) < 0.5  # half the time a preferred successor of the one before
    ranks[1:][keep[1:]] = follow[ranks[:-1][keep[1:]], rng.integers(0, 3, size=int(keep[1:].sum()))]
    text, lines = alphabet[ranks], []
    at = 0
    while at < len(text):
        width = 5 if rng.random() < 0.5 else 7
        stop = "\uff0c" if len(lines) % 2 == 0 else "\u3002"  # a fullwidth comma, then a full stop
        lines.append("".join(text[at : at + width]) + stop)
        at += width
    return "\n".join(lines) + "\n"

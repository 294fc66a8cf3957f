"""Sampling throughput: batch-1 generation from params.yaml's lstm architecture, oneDNN on and off.

`charlm.sample.generate` turns PyTorch's oneDNN RNN kernels off for batch 1 (their fixed cost per
call dominates one-character steps); this prints both speeds so the choice stays justified.
"""

import argparse
import dataclasses
import time

import torch

from charlm.model import CharLM
from charlm.params import SamplingOptions, load_params
from charlm.sample import generate
from charlm.vocab import Vocabulary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lstm", help="a model under `models:` in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--length", type=int, default=2000)
    args = parser.parse_args()

    vocab = Vocabulary.build("".join(chr(32 + i) for i in range(84)))
    config = dataclasses.replace(load_params(args.params).models[args.model].model, vocab_size=len(vocab))
    model = CharLM(config).eval()
    options = SamplingOptions(length=args.length, temperature=0.8, top_p=None, seed=0)  # no filtering
    print(f"{config}, batch 1, {args.length} characters, threads={torch.get_num_threads()}")

    start = time.perf_counter()
    text = "".join(generate(model, vocab, "ROMEO:", options))  # oneDNN off (the library's choice)
    native = len(text) / (time.perf_counter() - start)
    print(f"native RNN kernels (used): {native:,.0f} chars/s")

    assert torch.backends.mkldnn.enabled  # generate() restored it
    with torch.no_grad():
        idx = torch.tensor([[1]])
        logits, hidden = model(idx)
        start = time.perf_counter()
        for _ in range(args.length):  # the same per-character step, oneDNN left on
            probs = torch.softmax(logits[0, -1] / 0.8, -1)
            logits, hidden = model(torch.multinomial(probs, 1).view(1, 1), hidden)
        onednn = args.length / (time.perf_counter() - start)
    print(f"oneDNN RNN kernels:        {onednn:,.0f} chars/s")
    print(f"ratio: {native / onednn:.1f}x")


if __name__ == "__main__":
    main()

"""Sampling throughput: batched generation from params.yaml's lstm architecture, 1 to 128 streams.

Every stream is a row of one `charlm.sample.Decoder`, sampling included, as the served model runs
them; each row then costs one step of the recurrent cell shared with the others. For reference,
one stream stepped through `nn.LSTM` itself (on the CPU, oneDNN's RNN primitive), which
`CharLM.step` avoids.
"""

import argparse
import dataclasses
import time

import torch

from charlm.model import CharLM
from charlm.params import SamplingOptions, load_params
from charlm.sample import Decoder, request
from charlm.vocab import Vocabulary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lstm", help="a model under `models:` in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--length", type=int, default=500, help="characters per stream")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8, 32, 128])
    args = parser.parse_args()

    vocab = Vocabulary.build("".join(chr(32 + i) for i in range(84)))
    config = dataclasses.replace(load_params(args.params).models[args.model].model, vocab_size=len(vocab))
    model = CharLM(config).eval()
    print(f"{config}, {args.length} characters per stream, threads={torch.get_num_threads()}")

    for streams in args.streams:
        decoder = Decoder(model, vocab)
        for seed in range(streams):
            decoder.add(request(vocab, "ROMEO:", SamplingOptions(length=args.length, seed=seed)))
        start = time.perf_counter()
        while decoder.rows:
            decoder.step()
        elapsed = time.perf_counter() - start
        print(
            f"{streams:>4} streams: {elapsed / args.length * 1e6:7.0f} us/step,"
            f" {streams * args.length / elapsed:9,.0f} chars/s"
        )

    with torch.no_grad():
        logits, hidden = model(torch.tensor([[1]]))
        start = time.perf_counter()
        for _ in range(args.length):  # the module's own forward, one character at a time
            probs = torch.softmax(logits[0, -1] / 0.8, -1)
            logits, hidden = model(torch.multinomial(probs, 1).view(1, 1), hidden)
        elapsed = time.perf_counter() - start
    print(f"   1 stream through nn.{type(model.rnn).__name__}: {elapsed / args.length * 1e6:7.0f} us/step")


if __name__ == "__main__":
    main()

"""Text generation: temperature, top-k and top-p (nucleus) sampling with the hidden state carried.

The prompt is fed once; after that each new character costs one step of the recurrent cell, so
generating n characters is O(n) whatever the prompt length. `<unk>` is never sampled.
"""

from collections.abc import Iterator

import torch

from charlm.device import small_batch_rnn_kernels
from charlm.errors import CharlmError
from charlm.model import CharLM
from charlm.params import SamplingOptions
from charlm.vocab import UNK_ID, Vocabulary


class SamplingError(CharlmError):
    """A sampling request that cannot be served: bad values or characters the model never saw."""


def encode_prompt(prompt: str, vocab: Vocabulary, unknown: str) -> torch.Tensor:
    if not prompt:
        raise SamplingError("the prompt is empty; give at least one character to start from")
    missing = vocab.unknown_chars(prompt)
    if missing and unknown == "error":
        raise SamplingError(
            f"prompt characters not in the model's vocabulary: {missing!r}"
            " (set unknown to 'unk' to map them to <unk>)"
        )
    return torch.from_numpy(vocab.encode(prompt).astype("int64")).view(1, -1)  # (1, T)


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus. logits: (V,)."""
    if top_k is None and (top_p is None or top_p >= 1):
        return logits
    logits = logits.clone()
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits[logits < kth] = float("-inf")
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, -1).cumsum(-1)
        # Drop a token when the tokens before it already reach top_p (the first always stays).
        drop = cumulative - torch.softmax(sorted_logits, -1) >= top_p
        logits[order[drop]] = float("-inf")
    return logits


def generate(model: CharLM, vocab: Vocabulary, prompt: str, options: SamplingOptions) -> Iterator[str]:
    """Check the request, then return an iterator over the generated characters (the prompt itself
    is not repeated). Bad requests raise here, before a caller has shown anything."""
    if options.top_k is not None and options.top_k > len(vocab):
        raise SamplingError(f"top_k: must be in 1..{len(vocab)} (the vocabulary size), got {options.top_k}")
    device = next(model.parameters()).device
    return _sample(model, vocab, encode_prompt(prompt, vocab, options.unknown).to(device), options)


@torch.no_grad()
def _sample(model: CharLM, vocab: Vocabulary, idx: torch.Tensor, options: SamplingOptions) -> Iterator[str]:
    generator = torch.Generator(device=idx.device)
    if options.seed is not None:
        generator.manual_seed(options.seed)
    else:
        generator.seed()
    model.eval()
    with small_batch_rnn_kernels(1):
        logits, hidden = model(idx)  # (1, T, V)
        for _ in range(options.length):
            last = logits[0, -1].float() / options.temperature  # (V,)
            last[UNK_ID] = float("-inf")
            probs = torch.softmax(filter_logits(last, options.top_k, options.top_p), -1)
            next_id = torch.multinomial(probs, 1, generator=generator)  # (1,)
            yield vocab.itos[int(next_id)]
            logits, hidden = model(next_id.view(1, 1), hidden)

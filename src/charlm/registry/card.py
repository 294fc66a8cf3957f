"""The model card: the markdown description of a registered model version, what a reviewer reads on
its page in the MLflow UI.
"""

import json
from dataclasses import dataclass

from charlm.data.layout import SPLITS
from charlm.data.report import DataReport
from charlm.data.vocab import Vocabulary
from charlm.evaluation.baselines import BASELINES
from charlm.generation.samples import Sample
from charlm.model import heads
from charlm.model.directory import VOCAB_FILE
from charlm.registry.candidate import Candidate
from charlm.registry.decision import Decision
from charlm.serving.interface import DEFAULT_PORT, ServedSettings


@dataclass(frozen=True)
class CardFacts:
    """What the card says beyond the candidate and the decision."""

    data: DataReport
    sample: Sample  # the generate stage's first sample of the candidate
    served: ServedSettings


def prompt_form(candidate: Candidate) -> str:
    form = Vocabulary.load(candidate.model_dir / VOCAB_FILE).unicode_form
    return "no normal form" if form == "none" else form


def model_card(candidate: Candidate, decision: Decision, facts: CardFacts) -> str:
    report, info = candidate.report, candidate.info
    data, sample, served = facts.data, facts.sample, facts.served
    uri = f"models:/{decision.registered_model}/{decision.version}"
    status = (
        f"**Champion** (`@{decision.alias}`)"
        if decision.champion_version == decision.version
        else "Not the champion"
    )
    rows = [
        f"| this model | {report.val.bpc:.4f} | {report.test.bpc:.4f} |",
        *(
            f"| {name} baseline (add-one, train split) | {data.baselines[name]['val']:.4f}"
            f" | {data.baselines[name]['test']:.4f} |"
            for name in reversed(BASELINES)  # the closest to the model first
        ),
    ]
    example = json.dumps({"prompt": sample.prompt, "length": 200, "seed": 0})
    return "\n".join(
        [
            f"# {decision.registered_model} v{decision.version}: {candidate.name}",
            "",
            f"A character-level language model: {info.model.describe()};"
            f" {heads.describe(info.model.head_cutoffs, info.vocab_size)}, `<unk>` among them;"
            f" {report.num_params:,} parameters.",
            "",
            "## Data",
            "",
            f"Corpus: {data.corpus}. Splits (sha256 of the encoded split files):",
            "",
            "| split | sha256 |",
            "|---|---|",
            *(f"| {split} | `{data.sha256(split)}` |" for split in SPLITS),
            "",
            "## Bits per character (lower is better)",
            "",
            "| | validation | test |",
            "|---|---|---|",
            *rows,
            "",
            "Models are chosen on validation bpc; the test bpc is reported and never decides.",
            "",
            "## What it writes",
            "",
            f"Texts after the `evaluate.writing` prompts (names and styles the corpus has and lacks),"
            " sampled as the generate stage samples and greedily, read by an n-gram model of the"
            f" training split: {report.writing.summary()}. A model with a failed text is never the champion.",
            "",
            "## Registry decision",
            "",
            f"{status}: {decision.verdict}.",
            "",
            "## Sample",
            "",
            f"Prompt `{sample.prompt}`, seed {sample.seed}, temperature {sample.temperature}, top-k"
            f" {served.sampling.top_k}, top-p {served.sampling.top_p}:",
            "",
            "~~~text",
            sample.prompt + sample.text,
            "~~~",
            "",
            "## Use",
            "",
            f"A request asks for up to {served.limits.max_request_rows} texts, prompts of up to"
            f" {served.limits.max_prompt_chars:,} characters and {served.limits.max_request_chars:,}"
            " characters in all, prompts and generated; each text is a prompt and any of"
            f" {', '.join(f'`{f}`' for f in type(served.sampling).model_fields)}. Prompts are put in"
            f" {prompt_form(candidate)}, the corpus's Unicode form, before they meet the vocabulary.",
            "",
            "```python",
            "import mlflow.pyfunc",
            "",
            f'model = mlflow.pyfunc.load_model("{uri}")',
            f"model.predict([{example}])",
            "```",
            "",
            "```bash",
            f'charlm generate --model {uri} --prompt "{sample.prompt}" --length 200',
            f"charlm serve --model {uri} --port {DEFAULT_PORT}",
            f"curl -s http://127.0.0.1:{DEFAULT_PORT}/invocations -H 'Content-Type: application/json' \\",
            f"  -d '{{\"inputs\": [{example}]}}'",
            "```",
        ]
    )

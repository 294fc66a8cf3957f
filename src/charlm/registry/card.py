"""The model card: a registered version's markdown description, which a reviewer reads in the MLflow UI."""

import json
from pathlib import Path

from charlm.data.layout import SPLITS
from charlm.data.report import DataReport
from charlm.data.vocab import Vocabulary
from charlm.evaluation.baselines import BASELINES
from charlm.evaluation.report import EvalReport
from charlm.generation.samples import Sample
from charlm.model import heads
from charlm.model.directory import VOCAB_FILE, read_info
from charlm.registry.decision import Decision
from charlm.serving.interface import DEFAULT_PORT, ServedSettings

# What the served step is in each `limits.precision`, as the card states it.
STEPS = {
    "fp32": "Each served step runs in fp32, as the model was scored.",
    "int8": "Each served step runs its recurrent matrices in int8 (per output channel, the state per row);"
    " the scores above are of fp32.",
}


def model_card(
    report: EvalReport, decision: Decision, data: DataReport, sample: Sample, served: ServedSettings
) -> str:
    """The card of the model `report` scored; `sample` is the generate stage's first of it."""
    info = read_info(Path(report.model_dir))
    form = Vocabulary.load(Path(report.model_dir) / VOCAB_FILE).unicode_form
    prompts_in = "no normal form" if form == "none" else form
    uri = f"models:/{decision.registered_model}/{decision.version}"
    status = (
        f"**Champion** (`@{decision.alias}`)"
        if decision.champion_version == decision.version
        else f"Not the `@{decision.alias}`"
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
            f"# {decision.registered_model} v{decision.version}: {report.name}",
            "",
            f"A character-level language model: {info.arch.describe()};"
            f" {heads.describe(info.arch.head_cutoffs, info.vocab_size)}, `<unk>` among them;"
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
            f" training split: {report.writing.headline()}. A model with a failed text never takes"
            f" `@{decision.alias}`.",
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
            f" {prompts_in}, the corpus's Unicode form, before they meet the vocabulary."
            f" {STEPS[served.limits.precision]}",
            "",
            "```python",
            "import mlflow.pyfunc",
            "",
            f'model = mlflow.pyfunc.load_model("{uri}")',
            f"model.predict([{example}])",
            "```",
            "",
            "```bash",
            f'charlm generate --uri {uri} --prompt "{sample.prompt}" --length 200',
            f"charlm serve --uri {uri} --port {DEFAULT_PORT}",
            f"curl -s http://127.0.0.1:{DEFAULT_PORT}/invocations -H 'Content-Type: application/json' \\",
            f"  -d '{{\"inputs\": [{example}]}}'",
            "```",
        ]
    )

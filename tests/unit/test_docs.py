"""The docs are checked like code: every test, file, module and make target that README.md or
docs/ cites exists, so a rename that leaves them behind fails here."""

import importlib
import re
from pathlib import Path

import pytest

from tests.helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TEST = re.compile(r"tests/[\w/.-]+\.py(?:::\w+)?")
FILE = re.compile(
    r"`((?:src|stages|tests|benchmarks|docs|\.ci|\.dvc)/[\w/.-]*\w|[\w-]+\.(?:yaml|toml|txt|lock))`"
)
MODULE = re.compile(r"`(charlm(?:_scoring_loop)?(?:\.\w+)*)")
MAKE = re.compile(r"\bmake ([a-z][\w-]*)")
LOCAL = ".local"  # a file each user makes for themselves (`.dvc/config.local`), never committed


def cited(pattern: re.Pattern[str], text: str) -> set[str]:
    return {m.group(1) if m.groups() else m.group(0) for m in pattern.finditer(text)}


def targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))


def tag_names() -> set[str]:
    """The MLflow tags charlm sets (`charlm.val_bpc`), which read like module names."""
    from charlm.data.layout import SPLITS
    from charlm.tracking import tags
    from charlm.training.outputs import TrainSummary

    names = {value for value in vars(tags).values() if isinstance(value, str)}
    names |= {tags.trained_on(field) for field in TrainSummary.model_fields}
    return names | {f(split) for split in SPLITS for f in (tags.split_sha256, tags.split_bpc)}


def resolves(name: str) -> bool:
    """Whether a dotted name is a module of charlm, or an attribute of one."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def missing(doc: Path) -> list[str]:
    text = doc.read_text()
    gone = []
    for ref in cited(TEST, text):
        path, _, name = ref.partition("::")
        if not (REPO / path).is_file() or (
            name and not re.search(rf"^def {name}\b", (REPO / path).read_text(), re.M)
        ):
            gone.append(ref)
    gone += [path for path in cited(FILE, text) if not (REPO / path).exists() and not path.endswith(LOCAL)]
    gone += [name for name in cited(MODULE, text) - tag_names() if not resolves(name)]
    gone += [f"make {t}" for t in cited(MAKE, text) - targets()]
    return sorted(gone)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_what_the_docs_cite_exists(doc: Path) -> None:
    assert missing(doc) == []


def test_a_citation_of_something_gone_is_caught(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "See `tests/unit/test_docs.py::test_gone`, `src/charlm/gone.py`, `charlm.params.gone`,"
        " and run `make gone`; `tests/unit/test_docs.py::test_what_the_docs_cite_exists` stays."
    )
    assert missing(doc) == [
        "charlm.params.gone",
        "make gone",
        "src/charlm/gone.py",
        "tests/unit/test_docs.py::test_gone",
    ]


def test_the_readme_quotes_the_committed_sample() -> None:
    # The README shows the start of a samples file as `make run` last wrote it.
    from charlm.generation.samples import Samples

    readme = (REPO / "README.md").read_text()
    quoted = re.search(r"A sample \(`(samples/\w+\.txt)`.*?```text\n(.*?)```", readme, re.S)
    assert quoted, "README.md: no sample quoted"
    first = Samples.read(REPO / quoted.group(1)).samples[0]
    assert (first.prompt + first.text).startswith(quoted.group(2))


def test_the_readme_quotes_the_committed_comparison_table() -> None:
    # The README's results are `metrics/comparison.md` as `make run` last wrote it, copied whole,
    # so no figure in it is typed by hand (and none of it changes with the machine).
    readme = (REPO / "README.md").read_text()
    quoted = re.search(
        r"<!-- metrics/comparison.md -->\n(.*?)<!-- end of metrics/comparison.md -->", readme, re.S
    )
    assert quoted, "README.md: no comparison table quoted"
    assert quoted.group(1) == (REPO / "metrics/comparison.md").read_text()


def test_the_readme_is_one_screen_deep() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 150

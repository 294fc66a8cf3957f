"""samples: the generate stage's file reads back as it was written, whatever the prompts and texts."""

from pathlib import Path

import pytest

from charlm.errors import DataError
from charlm.generation.samples import Sample, Samples


def test_samples_round_trip(tmp_path: Path) -> None:
    texts = [
        Sample(prompt="ROMEO:", seed=1234, temperature=0.8, text=' But soft!\n\n=== {"model": "x"}\nend'),
        Sample(prompt='it\'s "quoted"', seed=None, temperature=1.0, text="\n\n"),
        Sample(prompt="JULIET:", seed=7, temperature=0.5, text=""),
    ]
    written = Samples(name="lstm", samples=tuple(texts))
    written.write(tmp_path / "lstm.txt")
    text = (tmp_path / "lstm.txt").read_text()
    header = '=== {"name":"lstm","prompt":"ROMEO:","seed":1234,"temperature":0.8,"chars":34}'
    assert text.startswith(f"{header}\nROMEO: But soft!\n")  # people read the text as generated
    assert Samples.read(tmp_path / "lstm.txt") == written


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    samples = Samples(name="lstm", samples=(Sample(prompt="A", seed=1, temperature=1.0, text="bcd"),))
    samples.write(tmp_path / "lstm.txt")
    (tmp_path / "lstm.txt").write_text((tmp_path / "lstm.txt").read_text()[:-3])
    with pytest.raises(DataError, match="not its header's prompt and length"):
        Samples.read(tmp_path / "lstm.txt")


def test_a_file_without_samples_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("just text\n")
    with pytest.raises(DataError, match="not a charlm samples file"):
        Samples.read(tmp_path / "x.txt")
    with pytest.raises(DataError, match="run the generate stage"):
        Samples.read(tmp_path / "absent.txt")

"""samples: the generate stage's file reads back as it was written, whatever the prompts and texts."""

from pathlib import Path

import pytest

from charlm.errors import DataError
from charlm.generation.samples import Sample, Samples


def test_samples_round_trip(tmp_path: Path) -> None:
    texts = [
        Sample("ROMEO:", 1234, 0.8, " But soft!\n\n=== not a header\nend"),
        Sample('it\'s "quoted"', None, 1.0, "\n\n"),
        Sample("JULIET:", 7, 0.5, ""),
    ]
    written = Samples("lstm", tuple(texts))
    written.write(tmp_path / "lstm.txt")
    text = (tmp_path / "lstm.txt").read_text()
    assert text.startswith("=== lstm | prompt 'ROMEO:' | seed 1234 | T=0.8\nROMEO: But soft!\n")
    assert Samples.read(tmp_path / "lstm.txt") == written


def test_a_file_without_samples_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("just text\n")
    with pytest.raises(DataError, match="not a charlm samples file"):
        Samples.read(tmp_path / "x.txt")
    with pytest.raises(DataError, match="run the generate stage"):
        Samples.read(tmp_path / "absent.txt")

"""The generate stage's file (`samples/<model>.txt`): seeded samples for people to read, which the model card
quotes. Each sample is a header line, `=== ` and its `Sample` record as JSON with the length of its text in
place of the text, then the prompt and the text generated after it and a newline; a blank line separates
samples. The header gives the text's length, so any text, whatever lines it holds, reads back exactly."""

import json
from pathlib import Path

from charlm.errors import CharlmError, DataError
from charlm.files import write_text
from charlm.records import Record

MARK = "=== "


class Sample(Record):
    prompt: str
    seed: int | None
    temperature: float
    text: str  # generated after the prompt


class Samples(Record):
    name: str  # the `models:` entry that wrote them
    samples: tuple[Sample, ...]

    def to_text(self) -> str:
        return "\n".join(
            f"{MARK}{json.dumps(self._header(s), ensure_ascii=False, separators=(',', ':'))}\n{s.prompt}{s.text}\n"
            for s in self.samples
        )

    def _header(self, sample: Sample) -> dict[str, object]:
        return {"name": self.name, **sample.model_dump(exclude={"text"}), "chars": len(sample.text)}

    def write(self, path: Path) -> None:
        write_text(path, self.to_text())

    @classmethod
    def read(cls, path: Path) -> "Samples":
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise DataError(f"{path}: cannot read samples ({err.strerror}); run the generate stage") from None
        samples, names, at = [], set(), 0
        while at < len(text) or not samples:
            line_end = text.find("\n", at)
            if not text.startswith(MARK, at) or line_end < 0:
                raise DataError(f"{path}: not a charlm samples file (no '{MARK}' header at character {at})")
            try:
                header = json.loads(text[at + len(MARK) : line_end])
                name, chars = header.pop("name"), header.pop("chars")
                sample = Sample.parse(header | {"text": ""})
                if not isinstance(chars, int) or isinstance(chars, bool) or chars < 0:
                    raise ValueError(f"chars: must be a count, got {chars!r}")
            except (ValueError, KeyError, TypeError, AttributeError, CharlmError) as err:
                raise DataError(f"{path}: a sample header at character {at} is malformed: {err}") from None
            end = line_end + 1 + len(sample.prompt) + chars
            body = text[line_end + 1 : end]
            if not body.startswith(sample.prompt) or text[end : end + 1] != "\n":
                raise DataError(f"{path}: the sample at character {at} is not its header's prompt and length")
            samples.append(sample.model_copy(update={"text": body[len(sample.prompt) :]}))
            names.add(name)
            at = end + 2  # past the sample's newline and the blank line
        if len(names) != 1:
            raise DataError(f"{path}: samples of several models {sorted(names)}")
        return cls(name=names.pop(), samples=tuple(samples))

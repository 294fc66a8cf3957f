"""The generate stage's file (`samples/<model>.txt`): seeded samples for people to read, which the
model card quotes.

Each sample is a header line, `=== ` and its `Header` record as JSON, then the prompt and the text
generated after it and a newline; a blank line separates samples. The header gives the text's
length, so any text, whatever lines it holds, reads back exactly.
"""

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


class Header(Record):
    """What a sample's header line says: every field of `Sample` but its text, whose length it gives."""

    model: str
    prompt: str
    seed: int | None
    temperature: float
    chars: int


class Samples(Record):
    model: str
    samples: tuple[Sample, ...]

    def to_text(self) -> str:
        headers = [
            Header(chars=len(s.text), model=self.model, **s.model_dump(exclude={"text"}))
            for s in self.samples
        ]
        return "\n".join(
            f"{MARK}{h.model_dump_json()}\n{s.prompt}{s.text}\n"
            for h, s in zip(headers, self.samples, strict=True)
        )

    def write(self, path: Path) -> None:
        write_text(path, self.to_text())

    @classmethod
    def read(cls, path: Path) -> "Samples":
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise DataError(f"{path}: cannot read samples ({err.strerror}); run the generate stage") from None
        samples, models, at = [], set(), 0
        while at < len(text) or not samples:
            line_end = text.find("\n", at)
            if not text.startswith(MARK, at) or line_end < 0:
                raise DataError(f"{path}: not a charlm samples file (no '{MARK}' header at character {at})")
            try:
                header = Header.parse(json.loads(text[at + len(MARK) : line_end]))
            except (ValueError, CharlmError) as err:
                raise DataError(f"{path}: a sample header at character {at} is malformed: {err}") from None
            end = line_end + 1 + len(header.prompt) + header.chars
            body = text[line_end + 1 : end]
            if not body.startswith(header.prompt) or text[end : end + 1] != "\n":
                raise DataError(f"{path}: the sample at character {at} is not its header's prompt and length")
            samples.append(
                Sample(**header.model_dump(exclude={"model", "chars"}), text=body[len(header.prompt) :])
            )
            models.add(header.model)
            at = end + 2  # past the sample's newline and the blank line
        if len(models) != 1:
            raise DataError(f"{path}: samples of several models {sorted(models)}")
        return cls(model=models.pop(), samples=tuple(samples))

"""The generate stage's file (`samples/<model>.txt`): seeded samples for people to read, which the
model card quotes.

Each sample is a header line, `=== <model> | prompt '<prompt>' | seed <seed> | T=<temperature>`,
then the prompt and its generated text and a newline; samples are separated by a blank line.
"""

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from charlm.errors import DataError
from charlm.files import write_text

# A header starts the file or follows a blank line; the prompt is a Python string literal.
HEADER = re.compile(
    r"(?:\A|(?<=\n\n))=== (?P<model>[^|\n]+) \| prompt (?P<prompt>'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\")"
    r" \| seed (?P<seed>-?\d+|None) \| T=(?P<temperature>[^\s|]+)\n"
)


@dataclass(frozen=True)
class Sample:
    prompt: str
    seed: int | None
    temperature: float
    text: str  # generated after the prompt


@dataclass(frozen=True)
class Samples:
    model: str
    samples: tuple[Sample, ...]

    def to_text(self) -> str:
        return "\n".join(
            f"=== {self.model} | prompt {s.prompt!r} | seed {s.seed} | T={s.temperature}\n{s.prompt}{s.text}\n"
            for s in self.samples
        )

    def write(self, path: Path) -> None:
        write_text(path, self.to_text())

    @classmethod
    def read(cls, path: Path) -> "Samples":
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise DataError(f"{path}: cannot read samples ({err.strerror}); run the generate stage") from None
        headers = list(HEADER.finditer(text))
        if not headers or headers[0].start() != 0:
            raise DataError(
                f"{path}: not a charlm samples file (it starts with no '=== <model> | prompt' header)"
            )
        samples = []
        for header, end in zip(headers, [h.start() for h in headers[1:]] + [len(text) + 1], strict=True):
            prompt = ast.literal_eval(header["prompt"])
            body = text[header.end() : end - 1].removesuffix("\n")  # the prompt and its text
            if not body.startswith(prompt):
                raise DataError(
                    f"{path}: the sample after {header[0].strip()!r} does not start with its prompt"
                )
            seed = None if header["seed"] == "None" else int(header["seed"])
            samples.append(Sample(prompt, seed, float(header["temperature"]), body[len(prompt) :]))
        return cls(headers[0]["model"], tuple(samples))

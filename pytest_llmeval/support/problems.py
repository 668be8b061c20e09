"""One way to report what is wrong with a file a person wrote (a suite, the model table,
a labels file) or with the settings: every problem found, each located where it can be."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    text: str
    file: str | None = None  # as the person who ran the command can open it
    line: int | None = None  # None where the format gives none (TOML as tomllib reads it)

    def __str__(self) -> str:
        if self.file is None:
            return self.text
        return f"{self.file}:{self.line}: {self.text}" if self.line else f"{self.file}: {self.text}"


class ConfigError(Exception):
    """A configuration that cannot be used, with every problem found."""

    def __init__(self, *problems: Problem | str) -> None:
        self.problems = tuple(p if isinstance(p, Problem) else Problem(p) for p in problems)
        super().__init__("\n".join(map(str, self.problems)))

    @property
    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]

"""Input errors reported as one clear line each (file and field), exit code 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad input from the operator: a list of one-line problems, each naming the file and field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

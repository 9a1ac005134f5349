"""User-facing errors: one line that names the problem and the fix."""

from __future__ import annotations


class W2SError(Exception):
    """An error caused by the user's input or environment, not by a bug.

    The CLI prints ``str(err)`` as one line and exits with code 2, so the message must
    name both the problem and how to fix it ("unknown dataset 'x'; known: a, b").
    """

    def __init__(self, problem: str, fix: str | None = None) -> None:
        msg = problem if fix is None else f"{problem} — {fix}"
        super().__init__(" ".join(msg.split()))  # guarantee a single line

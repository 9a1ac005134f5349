"""Assertions shared by test modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from w2s_core.errors import W2SError


def one_line_error(call: Callable[[], Any], match: str) -> str:
    """``call()`` raises a W2SError matching ``match`` whose text is one line "problem — fix"."""
    with pytest.raises(W2SError, match=match) as exc:
        call()
    msg = str(exc.value)
    assert "\n" not in msg and " — " in msg, msg
    return msg

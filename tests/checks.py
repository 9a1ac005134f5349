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


def decoder_tokens(kw: dict[str, Any]) -> tuple[int, ...]:
    """The (batch, length) of one decoder call from its keyword arguments, whether it was
    given token ids or their embeddings (the shared-prompt passes embed in one lookup)."""
    ids = kw.get("input_ids")
    return tuple(ids.shape) if ids is not None else tuple(kw["inputs_embeds"].shape[:2])

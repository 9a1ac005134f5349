"""DPO (generation): the (c)DPO runs that continue the generation run in view — SLU-F1 before →
after with paired intervals over seeds, and one DPO run's preference pairs. Its own page so
that the Generation page's utterance switch redraws no DPO tables or chart."""

from __future__ import annotations

import streamlit as st

from app_pages import _gen_dpo as gen_dpo
from app_pages import _gen_run as gen_run
from app_pages import _ui as ui


def body(c: ui.Ctx) -> None:
    st.title("DPO")
    row = gen_run.run_in_view(c)
    if row is not None:
        gen_dpo.dpo_section(c, row)


ui.guard(body)

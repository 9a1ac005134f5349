"""Lab: configure and launch a demo or a sweep as a background job, watch it, cancel it.

The app never trains here: jobs run as detached processes (w2s_core.jobs) and this page polls
their files from a fragment, so the rest of the dashboard stays responsive.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import streamlit as st

from app_pages import _ui as ui
from w2s_core import catalog, jobs
from w2s_core.experiments import store

# The lists come from the torch-free catalog the registries are built from: a model or method
# added there appears here, and this page never imports torch to list them.
DEFAULT_TEACHERS = ["tfidf-logreg", "minilm-l3", "minilm-l6"]
DEFAULT_METHODS = ["single", "naive", "vote", "bayes"]
ICONS = {"running": ":material/hourglass_top:", "starting": ":material/hourglass_top:",
         "done": ":material/check_circle:", "failed": ":material/error:",
         "cancelled": ":material/stop_circle:"}
LAUNCH = ":material/rocket_launch:"


def _engine_ready() -> bool:
    return (jobs.REPO_ROOT / "w2s_core" / "cli.py").exists()


def _launch_demo(ws: Path) -> None:
    jobs.launch_demo(ws, quick=True)
    st.toast("Demo experiment started", icon=LAUNCH)


def _cancel(job_dir: str, force: bool) -> None:
    jobs.cancel(Path(job_dir), force=force)


def _failure(job: dict[str, Any]) -> None:
    """Why a job failed, in one prominent box: the CLI's ``error: <problem> — <fix>`` line (a
    refused lock, a bad config) when it printed one, else the exit code and the log."""
    line = jobs.last_error(Path(job["dir"]))
    if line is None:
        st.error(f"Exit code {job.get('returncode')} — see the log below.", icon=ICONS["failed"])
        return
    problem, _, fix = line.partition(" — ")
    st.error(f"**{problem}**" + (f"  \n{fix}" if fix else ""), icon=ICONS["failed"])


def _job_card(ws: Path, job: dict[str, Any]) -> None:
    status = job["status"]
    started = job.get("started") or job.get("created") or 0
    when = datetime.fromtimestamp(started).strftime("%H:%M:%S") if started else "?"
    with st.container(border=True, key=f"job_{job['id']}"):
        st.markdown(f"**{ICONS.get(status, '')} {job.get('label', job['id'])}** — {status} · "
                    f"started {when} · `{job['id']}`")
        if status == "running":
            ev = jobs.progress(ws, job)  # this job's own events only, even with two running
            if ev and ev.get("fraction") is not None:
                detail = ev.get("message") or f"{ev.get('done')}/{ev.get('total')}"
                st.progress(ev["fraction"], text=f"{ev.get('stage', '')}: {detail}")
                st.caption(f"experiment `{ev['experiment_id']}`")
            else:
                st.progress(0, text="starting… (loading models and data)")
            requested = job.get("cancel_requested")
            force = bool(requested and time.time() - float(requested) > 10)
            st.button("Force stop" if force else "Cancel", key=f"cancel_{job['id']}",
                      icon=":material/stop_circle:", on_click=_cancel, args=(job["dir"], force))
        elif status == "failed":
            _failure(job)
        tail = jobs.log_tail(Path(job["dir"]), 30 if status == "running" else 15)
        if tail:
            with st.expander("log", expanded=status in ("running", "failed")):
                st.code(tail, language=None)


def _jobs_panel(ws: Path) -> None:
    all_jobs = jobs.list_jobs(ws)
    running = {j["id"] for j in all_jobs if j["status"] in ("running", "starting")}
    exps = {e.id for e in store.iter_experiments(ws)}
    before = st.session_state.get("_lab_running", set())
    exps_before = st.session_state.get("_lab_exps", exps)
    st.session_state["_lab_running"] = running
    st.session_state["_lab_exps"] = exps
    # a job ended, or a new experiment appeared: rerun the whole app so the sidebar and the
    # other pages see it (this fragment alone only redraws the job cards)
    if before - running or exps != exps_before:
        st.rerun(scope="app")
    if not all_jobs:
        st.caption("No jobs yet.")
    for job in all_jobs[:8]:
        _job_card(ws, job)


def _help(items: list[Any]) -> str:
    """A Markdown list of names and descriptions, for a widget's help tooltip."""
    return "\n".join(f"- `{i.name}`: {i.description}" for i in items)


def _sweep_form(c: ui.Ctx, ready: bool) -> None:
    datasets = {d.name: d for d in catalog.datasets()}
    models = catalog.models()
    methods = catalog.methods()
    students = [m for m in models if m.kind in ("encoder", "causal")]
    known = [m.name for m in models]
    # teachers used by earlier experiments (hub ids, local folders) are offered again
    known += sorted({t for e in c.experiments.get("teachers", []) if isinstance(e, str)
                     for t in e.split(", ") if t} - set(known))
    with st.form("sweep"):
        a, b = st.columns(2)
        name = a.text_input("Name", "my-sweep")
        dataset = b.selectbox(
            "Dataset", list(datasets), key="lab_dataset", accept_new_options=True,
            format_func=lambda n: n if n not in datasets or datasets[n].offline
            else f"{n} (needs the HF hub)", help=_help(list(datasets.values())))
        path = st.text_input("File (dataset `file` only)", "", key="lab_path",
                             placeholder="path/to/my_data.csv (.csv, .tsv or .jsonl)")
        n1, n2, n3, n4 = st.columns(4)
        n_weak = n1.number_input("weak split", 50, 100_000, 1000, step=50)
        n_transfer = n2.number_input("transfer split", 50, 100_000, 1000, step=50)
        n_test = n3.number_input("test split", 50, 100_000, 500, step=50)
        data_seed = n4.number_input("split seed", 0, 10_000, 0)
        teachers = st.multiselect("Teachers", known, [t for t in DEFAULT_TEACHERS if t in known],
                                  key="lab_teachers", accept_new_options=True,
                                  help=_help(models))
        a, b = st.columns(2)
        names = [m.name for m in students]
        student = a.selectbox("Student", names, key="lab_student", accept_new_options=True,
                              index=names.index("mpnet-base") if "mpnet-base" in names else 0,
                              help=_help(students))
        mode = b.radio("Student mode", ["probe", "full", "lora"], horizontal=True)
        method_names = [m.name for m in methods]
        picked = st.multiselect("Methods", method_names,
                                [m for m in DEFAULT_METHODS if m in method_names],
                                key="lab_methods", help=_help(methods))
        a, b = st.columns(2)
        aux = a.multiselect("Auxiliary confidence loss", [False, True], [False],
                            format_func=lambda x: "with aux" if x else "without aux")
        seeds_text = b.text_input("Seeds", "0, 1, 2")
        go = st.form_submit_button("Launch sweep", type="primary", icon=LAUNCH,
                                   disabled=not ready)
    if not go:
        return
    try:
        seeds = [int(s) for s in seeds_text.replace(",", " ").split()]
    except ValueError:
        st.error("Seeds must be whole numbers, e.g. `0, 1, 2`.")
        return
    if not teachers or not picked or not aux or not seeds:
        st.error("Pick at least one teacher, one method, one aux setting and one seed.")
        return
    if dataset == "file" and not path.strip():
        st.error("The `file` dataset needs a file: enter its path (a .csv, .tsv or .jsonl).")
        return
    data: dict[str, Any] = {"name": dataset, "n_weak": int(n_weak),
                            "n_transfer": int(n_transfer), "n_test": int(n_test),
                            "seed": int(data_seed)}
    if dataset == "file":
        data["path"] = str(Path(path.strip()).expanduser().resolve())  # the job runs elsewhere
    config = {"name": name or "sweep", "data": data, "teachers": teachers, "student": student,
              "student_mode": mode, "methods": picked, "aux": aux, "seeds": seeds}
    jobs.launch_sweep(c.ws, config)
    st.toast(f"Sweep “{config['name']}” started", icon=LAUNCH)


def body(c: ui.Ctx) -> None:
    st.title("Lab")
    ready = _engine_ready()
    if not ready:
        st.warning("The training engine (`w2s_core/cli.py`) is not installed in this checkout; "
                   "launching is disabled.", icon=ui.WARNING)
    if c.experiments.empty:
        st.info(f"The workspace `{c.ws}` has no results yet. The quick demo trains 5 small "
                "teachers and a linear-probe student on tweets (a few minutes on a 2-core CPU "
                "the first time, while the packaged models are converted; faster afterwards).",
                icon=":material/waving_hand:")
    active = [j for j in jobs.list_jobs(c.ws) if j["status"] in ("running", "starting")]
    demo_busy = any(j.get("kind") == "demo" for j in active)  # two demos would share one folder
    st.button("Run the demo experiment", key="run_demo", icon=":material/play_arrow:",
              type="primary" if c.experiments.empty else "secondary",
              disabled=not ready or demo_busy, on_click=_launch_demo, args=(c.ws,),
              help="The demo is already running" if demo_busy else None)
    st.subheader("Jobs")
    running = bool(active)
    st.fragment(run_every=1.5 if running else None)(_jobs_panel)(c.ws)
    st.subheader("Configure a sweep")
    _sweep_form(c, ready)


ui.guard(body)

"""The `w2s` command: demo, sweep, report, list, app."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from w2s_core.cli_gen import contrast_lines, gen_table
from w2s_core.errors import W2SError
from w2s_core.paths import workspace_dir


def _add_ws(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace",
                   help="results folder (default: $W2S_WORKSPACE or ./w2s_workspace)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="w2s", description="WeakS-to-Strong Lab: weak-to-strong "
                                 "generalization with an ensemble of weak teachers.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run the embedded default experiment (offline)",
                       description="Tweets sentiment; teachers tfidf-logreg, minilm-l3, minilm-l6, "
                       "mpnet-2l, mpnet-4l; student mpnet-base; all subsets, all methods ± aux.")
    d.add_argument("--quick", action="store_true", help="small slice: 1k/1k/1k examples, 2 seeds "
                   "(generation: a smoke run, 128/24/16 utterances, one subset per K, one seed)")
    d.add_argument("--task", choices=["classification", "generation"], default="classification",
                   help="generation: ATIS slot filling with causal-LM teachers (gpt-char, "
                   "gpt-word, gpt-bpe) and the SmolLM2-135M student")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_ws(d)
    s = sub.add_parser("sweep", help="run an experiment from a YAML/TOML config",
                       description="Run (or resume) the experiment described by a config file; "
                       "see configs/ for examples.")
    s.add_argument("--config", required=True, help="path to a .yaml/.yml/.toml file")
    s.add_argument("--no-progress", action="store_true")
    _add_ws(s)
    r = sub.add_parser("report", help="print the results of the experiments in a workspace")
    r.add_argument("--experiment", help="experiment id (default: all)")
    r.add_argument("--format", choices=["table", "json", "csv"], default="table")
    r.add_argument("--floor", choices=["mean", "best", "vote", "joint"], default="mean",
                   help="PGR floor convention (default: mean of the subset's teachers; vote is "
                   "classification's, joint (joint-decoded teachers) generation's)")
    _add_ws(r)
    ls = sub.add_parser("list", help="list the registered datasets, models or methods")
    ls.add_argument("what", choices=["datasets", "models", "methods"])
    a = sub.add_parser("app", help="open the dashboard (streamlit) on a workspace")
    _add_ws(a)
    return ap


def _terminate(signum: int, _frame: Any) -> None:
    """SIGTERM (the Lab's Cancel) ends a sweep like Ctrl-C: finished runs are kept, the
    experiment is marked interrupted and its lock is released."""
    raise KeyboardInterrupt


def tune_process() -> None:
    """Process settings for training and decoding, set before torch allocates large tensors.

    Training and decoding allocate large CPU tensors afresh every step (a 49k-vocabulary logit
    block, a weight's gradient); glibc maps each from the kernel in 4 KiB pages, zero-filled on
    first touch. PyTorch's own switch (Linux only) backs its allocations of ≥ 2 MiB with
    transparent huge pages instead. Measured on a 2-core CPU, one K = 3 SmolLM2-135M training
    step profiled twice per process: minor page faults 6.7 M → 2.3 M, system time 50 → 30 s,
    training tokens/s 113 → 133. A value the user set wins; it does nothing where THP is off.
    The CLI (and so every job the app launches) and the benchmarks call this."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def main(argv: list[str] | None = None) -> int:
    tune_process()
    args = build_parser().parse_args(argv)
    if args.cmd in ("demo", "sweep"):
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return _dispatch(args)
    except W2SError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are saved; rerun the same command to resume",
              file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.cmd in ("demo", "sweep"):
        from w2s_core.api import run_experiment
        from w2s_core.experiments.config import demo_config
        from w2s_core.experiments.config_files import load_configs

        cfgs = [demo_config(args.quick, args.task)] if args.cmd == "demo" \
            else load_configs(args.config)
        for i, cfg in enumerate(cfgs):
            if len(cfgs) > 1:
                print(f"== experiment {i + 1}/{len(cfgs)}: {cfg.name} ({cfg.data.name})")
            exp_id = run_experiment(cfg, args.workspace, progress=not args.no_progress)
            print(f"results: {workspace_dir(args.workspace)} (experiment {exp_id}); "
                  f"see them with `w2s report` or `w2s app`")
        return 0
    if args.cmd == "report":
        return _report(args)
    if args.cmd == "list":
        return _list(args.what)
    if args.cmd == "app":
        env = {**os.environ, "W2S_WORKSPACE": str(workspace_dir(args.workspace))}
        app = Path(__file__).resolve().parent.parent / "app.py"
        # run from the project folder so .streamlit/config.toml (loopback, no telemetry) applies
        # the loopback address explicitly: config.toml says so too, but only when streamlit
        # finds it, and a dashboard over private results must never listen on the network
        return subprocess.call([sys.executable, "-m", "streamlit", "run", str(app),
                                "--server.address", "127.0.0.1"], env=env, cwd=app.parent)
    raise AssertionError(args.cmd)


def _list(what: str) -> int:
    if what == "datasets":
        from w2s_core.data.registry import DATASETS

        for name, e in DATASETS.items():
            print(f"{name:16} {'offline' if e.offline else 'hub    '}  {e.description}")
    elif what == "models":
        from w2s_core.models.registry import MODELS

        for name, m in MODELS.items():
            print(f"{name:14} {m.kind:8} {m.description}")
    else:
        from w2s_core.catalog import gen_methods
        from w2s_core.methods.registry import METHODS

        print("classification:")
        for name, m in METHODS.items():
            print(f"  {name:16} {m.description}  [{m.paper}]")
        print("generation (task: generation):")
        for g in gen_methods():
            print(f"  {g.name:16} {g.description}  [{g.paper}]")
    return 0


def _report(args: argparse.Namespace) -> int:
    from w2s_core.experiments import report, store

    ws = workspace_dir(args.workspace)
    exps = [store.experiment_dir(ws, args.experiment)] if args.experiment \
        else list(store.iter_experiments(ws))
    if not exps or not exps[0].meta.exists():
        raise W2SError(f"no experiments in {ws}", "run `w2s demo --quick` or pass --workspace")
    reps = [report.report(e, args.floor) for e in exps]
    if args.format == "json":
        print(json.dumps(reps, indent=1, default=_num))
    elif args.format == "csv":
        import pandas as pd

        frames = [pd.DataFrame(r["recovery"]).assign(experiment=r["experiment"],
                                                     dataset=r["dataset"])
                  for r in reps if r["recovery"]]  # an empty frame would turn ints into floats
        if frames:
            pd.concat(frames).to_csv(sys.stdout, index=False)
    else:
        for r in reps:
            print(gen_table(r) if r.get("task") == "generation" else _table(r))
        if len(reps) > 1:
            print(_summary(reps))
    return 0


def _summary(reps: list[dict[str, Any]]) -> str:
    """One line per experiment × setting × aux: did the Bayesian student beat naive?"""
    lines = ["", "== bayes − naive across experiments (K ≥ 2, paired runs; PGR floor = "
             f"{reps[0]['floor']}; accuracy as a fraction) =="]
    width = max([len(v.get("label", "")) for r in reps if len(r.get("settings") or {}) > 1
                 for v in r["settings"].values()] or [0])
    for r in reps:
        for c in r.get("comparisons") or []:
            if (c["a"], c["b"]) not in (("bayes", "naive"), ("bayes", "naive-soft")):
                continue
            what = "PGR     " if c["metric"].startswith("pgr") else (
                "SLU-F1  " if c["metric"] == "slu_f1" else "accuracy")
            settings = r.get("settings") or {}
            label = settings.get(c["setting"], {}).get("label", "") if len(settings) > 1 else ""
            verdict = "n/a" if c.get("lo") is None else (
                "bayes better" if c["lo"] > 0 else "naive better" if c["hi"] < 0
                else "no clear difference")
            lines.append(f"  {r['dataset']:14} {label:{width}} {what} "
                         f"{'with' if c['aux'] else 'w/o '} aux: {_fmt(c['mean'])} {_ci(c)}"
                         f"  {verdict}  ({_units(c['n_units'], c['unit'])})")
    return "\n".join(lines)


def _num(o: Any) -> Any:
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)


def _fmt(x: Any, nd: int = 3) -> str:
    return "  n/a" if x is None or x != x else f"{x:.{nd}f}"


UNIT_NAMES = {"data_seed": "data replicate", "subset": "teacher subset", "seed": "seed"}


def _units(n: int, unit: str) -> str:
    name = UNIT_NAMES.get(unit, unit)
    return f"{n} {name}{'' if n == 1 else 's'}"


def _ci(row: dict[str, Any]) -> str:
    """"[lo, hi]", or "no interval" when the group has one unit (n = 1)."""
    if row.get("lo") is None or row.get("hi") is None:
        return "no interval"
    return f"[{_fmt(row['lo'])}, {_fmt(row['hi'])}]"


def _table(r: dict[str, Any]) -> str:
    seeds = r.get("data_seeds") or []
    lines = [f"== {r['experiment']} ({r['dataset']}, student {r['student']}, {r['status']}, "
             f"{r['n_runs']} runs) ==", f"splits: {(r.get('splits') or {}).get('sizes')}"
             + (f" × {len(seeds)} data replicates (seeds {seeds})" if len(seeds) > 1 else "")]
    for w in r["warnings"]:
        lines.append(f"warning: {w}")
    lines.append("weak floors (test accuracy" + (", mean over replicates" if len(seeds) > 1
                                                  else "") + "):")
    for t in r["teachers"]:
        lines.append(f"  {t['teacher']:14} {_fmt(t['accuracy_test'])}"
                     + ("  (given weak labels)" if t.get("given") else ""))
    ag = r.get("agreement") or {}
    if ag:
        lines.append(f"teacher agreement (test): Fleiss κ {_fmt(ag['fleiss_kappa'])}, mean "
                     f"pairwise Cohen κ {_fmt(ag['mean_pairwise_kappa'])}, mean vote entropy "
                     f"{_fmt(ag['mean_vote_entropy'])} nats")
    for c in r.get("ceiling") or []:
        lines.append(f"strong ceiling: {_fmt(c['mean'])} {_ci(c)} ({c['n']} runs)")
    settings = r.get("settings") or {}
    for setting, info in settings.items():
        rows = [x for x in r["recovery"] if x["setting"] == setting]
        head = f"option setting {setting}: {info['label']}" if len(settings) > 1 else \
            f"options: {json.dumps(info.get('options'), default=str)}"
        lines += ["", head,
                  f"PGR (floor = {r['floor']} of the subset's teachers) by method and ensemble "
                  "size K: mean [95% interval] (runs, units, undefined)",
                  f"  {'method':12} {'aux':4} {'K':>2}  {'PGR':>6}  {'interval':16} {'acc':>6}"
                  "  n"]
        for row in rows:
            und = f", {row['n_undefined']} undef." if row["n_undefined"] else ""
            lines.append(f"  {row['method']:12} {'yes' if row['aux'] else 'no':4} "
                         f"{row['k']:>2}  {_fmt(row['mean']):>6}  {_ci(row):16} "
                         f"{_fmt(row['accuracy']):>6}  {row['n']} runs, "
                         f"{_units(row['n_units'], row['unit'])}{und}")
        for c in r.get("comparisons") or []:
            if c["setting"] != setting:
                continue
            what = "PGR" if c["metric"].startswith("pgr") else "accuracy"
            lines.append(f"{c['a']} − {c['b']} (K ≥ 2, {'with' if c['aux'] else 'without'} "
                         f"aux, paired over {c['pairs']} runs): {what} {_fmt(c['mean'])} "
                         f"{_ci(c)}")
    lines += contrast_lines(r.get("contrasts") or [])
    if r.get("intervals"):
        lines += ["", r["intervals"]]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

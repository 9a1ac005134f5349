"""``w2s report``'s text for a generation (slot filling) experiment."""

from __future__ import annotations

from typing import Any


def _fmt(x: Any, nd: int = 3) -> str:
    return "  n/a" if x is None or x != x else f"{x:.{nd}f}"


def _ci(row: dict[str, Any]) -> str:
    if row.get("lo") is None or row.get("hi") is None:
        return "no interval"
    return f"[{_fmt(row['lo'])}, {_fmt(row['hi'])}]"


def _signed(x: Any) -> str:
    return "  n/a" if x is None or x != x else f"{x:+.3f}"


def _diff(row: dict[str, Any]) -> str:
    """A difference with its run-level interval, or, for a one-pair row, the test-utterance
    bootstrap interval (``gen_utterance``); its caption goes in ``_utt_note``."""
    u = row.get("utt")
    if not u:
        return f"{_fmt(row['mean'])} {_ci(row)}"
    return f"{_signed(u['mean'])} [{_signed(u['lo'])}, {_signed(u['hi'])}]"


# marks an utterance-bootstrap interval in the text; the report's closing "Intervals:" note
# explains it once (the JSON keeps the full caption on every row)
UTT_MARK = "utterance bootstrap‡"


def _utt_note(row: dict[str, Any]) -> str:
    return f"; {UTT_MARK}" if row.get("utt") else ""


def gain_lines(r: dict[str, Any], setting: str) -> list[str]:
    """Student − best single teacher of its subset (test): SLU-F1 and exact span F1."""
    rows = [g for g in r.get("gain") or [] if g["setting"] == setting]
    if not rows:
        return []
    lines = ["student − best single teacher of its subset (test; weak-to-strong gain):"]
    for g in rows:
        s, p = g["slu_f1"], g["span_f1"]
        lines.append(f"  {g['method']:17} {'with' if g['aux'] else 'w/o'} aux K={g['k']} − "
                     f"{g['teacher']}: SLU-F1 {_signed(s['mean'])} [{_signed(s['lo'])}, "
                     f"{_signed(s['hi'])}], span F1 {_signed(p['mean'])} [{_signed(p['lo'])}, "
                     f"{_signed(p['hi'])}] ({g['n']} run{'s' if g['n'] != 1 else ''}; "
                     f"{UTT_MARK if g['n'] == 1 else g['interval']})")
    return lines


def _units(n: int, unit: str) -> str:
    name = {"data_seed": "data replicate", "subset": "teacher subset", "seed": "seed"}.get(
        unit, unit)
    return f"{n} {name}{'' if n == 1 else 's'}"


def gen_table(r: dict[str, Any]) -> str:
    seeds = r.get("data_seeds") or []
    lines = [f"== {r['experiment']} (generation: {r['dataset']} slot filling, student "
             f"{r['student']}, {r['status']}, {r['n_runs']} runs) ==",
             f"splits: {(r.get('splits') or {}).get('sizes')}"
             + (f" × {len(seeds)} data replicates" if len(seeds) > 1 else "")]
    lines += [f"warning: {w}" for w in r["warnings"]]
    lines.append("weak floors (test): SLU-F1 / span F1 / JSON valid")
    for t in r["teachers"]:
        lines.append(f"  {t['teacher']:14} {_fmt(t['slu_f1_test'])} / "
                     f"{_fmt(t['span_f1_test'])} / {_fmt(t['json_validity_test'], 2)}")
    for c in r.get("ceiling") or []:
        lines.append(f"strong ceiling (SLU-F1): {_fmt(c['mean'])} {_ci(c)} ({c['n']} runs)")
    gap = [t for t in r["teachers"] if t.get("below_ceiling") is not None]
    if gap:
        over = [t["teacher"] for t in gap if not t["below_ceiling"]]
        lines.append("every teacher is below the ceiling (PGR has a gap)" if not over else
                     f"warning: {', '.join(over)} at or above the ceiling: PGR of subsets with "
                     "them is undefined or meaningless")
    score = {(x["setting"], x["method"], x["aux"], x["k"]): x for x in r.get("score") or []}
    span = {(x["setting"], x["method"], x["aux"], x["k"]): x["mean"]
            for x in r.get("span") or []}
    settings = r.get("settings") or {}
    for setting, info in settings.items():
        if len(settings) > 1:
            lines += ["", f"option setting {setting}: {info['label']}"]
        lines += ["", f"SLU-F1, exact span F1 and PGR (floor = {r['floor']} of the subset's "
                  "teachers) by method and K: mean [95% interval]",
                  f"  {'method':17} {'aux':4} {'K':>2}  {'SLU-F1':>6} {'interval':16}  "
                  f"{'span':>5}  {'PGR':>6} {'interval':16}  n"]
        for row in [x for x in r["recovery"] if x["setting"] == setting]:
            key = (setting, row["method"], row["aux"], row["k"])
            s = score.get(key, {})
            und = f", {row['n_undefined']} PGR undef." if row["n_undefined"] else ""
            lines.append(f"  {row['method']:17} {'yes' if row['aux'] else 'no':4} "
                         f"{row['k']:>2}  {_fmt(s.get('mean')):>6} {_ci(s):16}  "
                         f"{_fmt(span.get(key)):>5}  "
                         f"{_fmt(row['mean']):>6} {_ci(row):16}  {row['n']} runs, "
                         f"{_units(row['n_units'], row['unit'])}{und}")
        comps = [c for c in r.get("comparisons") or [] if c["setting"] == setting]
        if comps:
            lines.append("paired differences (a − b on matched subset, seed, data, aux):")
        for c in comps:
            lines.append(f"  {c['a']} − {c['b']} ({c['metric']}, "
                         f"{'with' if c['aux'] else 'w/o'} aux): {_diff(c)} "
                         f"({c['pairs']} pairs, {_units(c['n_units'], c['unit'])}{_utt_note(c)})")
        for a in [x for x in r.get("aux") or [] if x["setting"] == setting]:
            lines.append(f"  aux − no aux ({a['method']}, SLU-F1): {_fmt(a['mean'])} {_ci(a)} "
                         f"({a['pairs']} pairs)")
        lines += gain_lines(r, setting)
    lines += contrast_lines(r.get("contrasts") or [])
    if r.get("dpo"):
        lines += ["", "(c)DPO after transfer: SLU-F1 before → after, paired Δ over seeds"]
        for d in r["dpo"]:
            margin = "" if d.get("margin_start") is None or d.get("margin_end") is None else (
                f"; policy margin {d['margin_start']:+.2f} → {d['margin_end']:+.2f} nats")
            lines.append(f"  {d['method']:17} ε={d['eps']:10} {_fmt(d['before'])} → "
                         f"{_fmt(d['after'])}  Δ {_diff(d)} "
                         f"({d['n']} runs, {d['pairs']:.0f} pairs each{margin}{_utt_note(d)})")
    if r.get("intervals"):
        lines += ["", r["intervals"]]
    return "\n".join(lines)


def contrast_lines(contrasts: list[dict[str, Any]]) -> list[str]:
    """Settings that differ in one option, paired on matched runs (both tasks' reports)."""
    if not contrasts:
        return []
    what = {"slu_f1": "SLU-F1", "accuracy": "accuracy"}
    width = max(len(c["label"]) for c in contrasts)
    lines = ["", "one option changed, all else equal: a − b on runs matched on data, teacher "
             "subset, seed and aux"]
    for c in contrasts:
        metric = "PGR" if c["metric"].startswith("pgr") else what.get(c["metric"], c["metric"])
        lines.append(f"  {c['label']:{width}}  {c['method']:17} {'with' if c['aux'] else 'w/o'}"
                     f" aux K={c['k']}: {metric} {_diff(c)} ({c['pairs']} "
                     f"pairs, {_units(c['n_units'], c['unit'])}{_utt_note(c)})")
    return lines

"""Generation weak floors inside the one sweep: teachers trained, decoded and cross-scored once
per data replicate and cached in the workspace, so every student run and a resumed sweep reuse
them (the generation counterpart of ``Sweep._teachers``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from w2s_core.errors import W2SError
from w2s_core.experiments import gen_protocol as gp
from w2s_core.experiments import gen_store, store
from w2s_core.experiments.gen_report import teacher_warnings
from w2s_core.experiments.runspec import config_hash
from w2s_core.methods.gen_methods import pool
from w2s_core.metrics.generation import generation_metrics
from w2s_core.models.causal import CausalLM

if TYPE_CHECKING:
    from w2s_core.experiments.sweep import Sweep


class Teachers:
    """name → N-best per split, the candidate pool with every teacher's scores, and lazily
    reloaded teacher models (for DPO's ensemble scoring)."""

    def __init__(self, sw: Sweep, sp: gp.GenSplits, device: str) -> None:
        self.sw, self.sp, self.device = sw, sp, device
        self.cfg = sw.cfg
        self.ids = {s: sp.ids(s) for s in gp.SPLITS}
        self.stems: dict[str, str] = {}
        self.nbest: dict[str, dict[str, gen_store.NBest]] = {}
        self.metrics: dict[str, dict[str, Any]] = {}
        self._lms: dict[str, CausalLM] = {}
        self.pool_df: Any = None

    # ------------------------------------------------------------ floors
    def build(self) -> Teachers:
        sw, sp, cfg = self.sw, self.sp, self.cfg
        files = sw.meta["teacher_files"].setdefault(str(sp.data_seed), {})
        bar = tqdm(cfg.teachers, desc=f"weak floors (data seed {sp.data_seed})",
                   disable=not sw.progress)
        for i, name in enumerate(bar):
            ident = gp.teacher_identity(cfg, name, sp, sw.precision)
            stem = store.teacher_stem(name, ident)
            self.stems[name] = stem
            path, folder = sw.exp.teacher_preds(stem), gp.teacher_model_dir(sw.exp.root, stem)
            nb = None
            if path.exists() and (folder / "config.json").exists():
                try:
                    nb = gen_store.nbest_from_frame(store.read_parquet(path), self.ids)
                    self.metrics[name] = self._stored_metrics(name, stem, ident, nb)
                except (W2SError, KeyError, OSError) as e:  # OSError: a model that won't load
                    sw.log(f"warning: {e}; recomputing teacher {name}")
                    nb = None
            if nb is None:
                nb = self._train(name, stem, ident)
            else:  # a resumed sweep prints its floors too (the ceiling check reads them)
                met = self.metrics[name]
                sw.log(f"teacher {name}: SLU-F1 test {met['slu_f1_test']:.3f}, JSON valid "
                       f"{met['json_validity_test']:.2f} (stored)")
            self.nbest[name] = nb
            if files.get(name) != stem:
                files[name] = stem
                sw._save_meta()
            sw._event("teachers", i + 1, len(cfg.teachers), name)
        self._pool()
        return self

    def _stored_metrics(self, name: str, stem: str, ident: dict[str, Any],
                        nb: dict[str, gen_store.NBest]) -> dict[str, Any]:
        """The teacher's metadata json, rebuilt from its stored model and N-best when it is
        missing or corrupt.

        A teacher's files are written model → N-best parquet → json, each atomically, so a
        valid parquet without its json means a run stopped between the last two writes: model
        and N-best are complete, and student runs may already have trained on this N-best.
        Rebuilding the floors from it (what a re-decode would give) keeps those runs consistent
        and skips retraining; the training and decoding stats are lost (train, seconds null;
        readers treat absent decode counts as zero). A model that does not reload raises
        (W2SError/OSError), and the caller retrains.
        """
        sw, sp = self.sw, self.sp
        meta = sw.exp.teacher_meta(stem)
        try:
            return dict(store.read_json(meta))
        except (FileNotFoundError, W2SError) as e:
            why = "missing" if isinstance(e, FileNotFoundError) else "corrupt"
            sw.log(f"warning: {meta.name} is {why}; rebuilding teacher {name}'s metadata from "
                   "its stored model and N-best (training stats lost)")
        met: dict[str, Any] = {"teacher": name, "identity": ident, "seconds": None,
                               "data_seed": sp.data_seed, "train": None,
                               "max_new_tokens": gp.new_tokens_cap(self.cfg, self.lm(name), sp)}
        for s in gp.SPLITS:
            texts = [c[0].text if c else "" for c in nb[s]]
            m = generation_metrics(sp.pairs(s), texts, sp.ds.slot_types)
            met.update({f"{k}_{s}": v for k, v in m.items()})
        if sw.main:
            store.write_json(meta, store.nan_to_none(met))
        return met

    def _train(self, name: str, stem: str, ident: dict[str, Any]) -> dict[str, gen_store.NBest]:
        sw, sp, cfg = self.sw, self.sp, self.cfg
        t0 = time.time()
        lm, stats = gp.train_teacher(cfg, name, sp, self.device, sw.log, sw.progress)
        dec: dict[str, dict[str, int]] = {}
        nb = gp.decode_teacher(cfg, lm, sp, sw.progress, stats=dec)
        met: dict[str, Any] = {"teacher": name, "identity": ident, "seconds": time.time() - t0,
                               "data_seed": sp.data_seed, "train": stats,
                               "max_new_tokens": gp.new_tokens_cap(cfg, lm, sp)}
        for s in gp.SPLITS:
            texts = [c[0].text if c else "" for c in nb[s]]
            m = generation_metrics(sp.pairs(s), texts, sp.ds.slot_types)
            m.update(gp.decode_fields(dec[s]))  # cap hits, cut prompts, rebuilt offsets
            met.update({f"{k}_{s}": v for k, v in m.items()})
        for w in teacher_warnings(name, [met]):  # the lines ``w2s report`` repeats
            sw.log(f"warning: {w}")
        self._lms[name] = lm
        if sw.main:
            gp.store_teacher(lm, gp.teacher_model_dir(sw.exp.root, stem))
            frame = gen_store.nbest_frame(self.ids, nb, lambda ids: [
                lm.tokenizer.decode([t]) for t in ids])
            store.write_parquet(sw.exp.teacher_preds(stem), frame)
            store.write_json(sw.exp.teacher_meta(stem), store.nan_to_none(met))
        self.metrics[name] = met
        sw.log(f"teacher {name}: SLU-F1 test {met['slu_f1_test']:.3f}, JSON valid "
               f"{met['json_validity_test']:.2f} ({met['seconds']:.0f} s)")
        return nb

    def lm(self, name: str) -> CausalLM:
        if name not in self._lms:
            folder = gp.teacher_model_dir(self.sw.exp.root, self.stems[name])
            self._lms[name] = gp.reload_teacher(folder, name, self.device)
        return self._lms[name]

    # ------------------------------------------------------------ the pool
    def _pool(self) -> None:
        """Every teacher scores every teacher's N-best candidates (teacher forcing), once."""
        sw, sp = self.sw, self.sp
        names = list(self.cfg.teachers)
        key = config_hash({n: self.stems[n] for n in names})[:10]
        path = sw.exp.root / "teachers" / f"pool-{sp.data_seed}-{key}.parquet"
        if path.exists():
            try:
                df = store.read_parquet(path)
                gen_store.pool_arrays(df, self.ids["test"], "test", names)  # validates
                self.pool_df = df
                return
            except (W2SError, KeyError) as e:
                sw.log(f"warning: {e}; rescoring the candidate pool")
        texts: dict[str, list[list[str]]] = {}
        sources: dict[str, list[list[list[str]]]] = {}
        for s in gp.SPLITS:
            texts[s], sources[s] = [], []
            for i in range(len(self.ids[s])):
                cands = pool([[c.text for c in self.nbest[n][s][i]] for n in names])
                texts[s].append(cands)
                sources[s].append([[n for n in names if any(
                    c.text == t for c in self.nbest[n][s][i])] for t in cands])
        sw._event("pool", 0, len(names), "teachers score the pooled candidates")
        scores = {}
        for j, n in enumerate(names):
            lm = self.lm(n)
            scores[n] = gp.score_pool(lm, sp, texts, gp.score_length(lm, sp, texts))
            sw._event("pool", j + 1, len(names), n)
        self.pool_df = gen_store.pool_frame(self.ids, texts, sources, scores)
        if sw.main:
            store.write_parquet(path, self.pool_df)

    def pooled(self, split: str, sub: tuple[str, ...]
               ) -> list[tuple[list[str], np.ndarray, np.ndarray]]:
        """Per example: the candidates of ``sub``'s teachers only, with their (K, C) logp and
        norm under ``sub``'s teachers."""
        out = []
        for texts, srcs, lp, nm in gen_store.pool_arrays(self.pool_df, self.ids[split], split,
                                                         list(sub)):
            keep = [j for j, s in enumerate(srcs) if set(s) & set(sub)]
            out.append(([texts[j] for j in keep], lp[:, keep], nm[:, keep]))
        return out

    def top1(self, name: str, split: str) -> list[gen_store.Candidate]:
        return [c[0] if c else gen_store.Candidate("", 0.0, 0.0, [], [], [], [], 0.0)
                for c in self.nbest[name][split]]

    def slu(self, name: str, split: str = "test") -> float:
        return float(self.metrics[name][f"slu_f1_{split}"])

"""Segmentation: which moments of the run are application load, runtime noise or idle.

A Gaussian hidden Markov model (hmmlearn) is fitted to per-bin features: how many cores the
process tree used, how many steps completed (when there are steps), and which share of the main
threads' stack samples were importing modules or compiling. Its states are then named by what
they look like: the state(s) where steps complete at about the top rate or where a large share of
the run's steps complete (or, without steps, the busiest state that is not importing) are
*load*; states with almost nothing happening are *idle*; the rest (start-up, compilation,
teardown, GC bursts and spinning pools between phases) are *noise*.

The steady load runs from the first to the last load bin, so stalls inside the steady state stay
in it. It is a proposal: the phases (phases.py) bound it by what the agent saw (start-up ends with
the first step, the loop with the last; warm-up steps found by a change point on step durations
are dropped) and the loop phase is the analysed window. Deterministic: fixed random_state, states
sorted by their load score after fitting, covariances floored, convergence checked with
``monitor_.iter < n_iter`` (``monitor_.converged`` is also true when the iteration cap is hit).
When the fit fails or the states do not separate, the whole run is proposed and the phases say
so.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from probe.analysis.native import one_thread
from probe.analysis.phases import Phases, find_phases
from probe.analysis.stacks import STATE
from probe.analysis.timeline import Timeline

IDLE, NOISE, LOAD = 0, 1, 2
LABELS = ("idle", "noise", "load")
N_STATES = 3
N_ITER = 200
MIN_BINS = 30
MIN_COVAR = 1e-3
# A state in whose bins at least this share of the run's steps complete is application load,
# whatever its mean step rate (see _name_states).
LOAD_STEP_SHARE = 0.25


@dataclass
class Segmentation:
    labels: npt.NDArray[np.int8]  # per bin: IDLE, NOISE or LOAD
    # the analysed window, seconds: the loop phase (before the phases are named, the HMM's
    # steady load); the whole run when the run never reached its loop (see phases.window)
    window: tuple[float, float]
    method: str  # "hmm" or "whole-run"
    reason: str  # why the whole run was used, or "" with the HMM
    warmup_steps: int = 0
    warmup_end: float | None = None
    state_means: list[dict[str, float | str]] = field(default_factory=list)
    converged: bool = False
    iterations: int = 0
    states: int = 0  # how many states the HMM was fitted with (0: no HMM)
    phases: Phases | None = None  # start-up, warm-up, loop, teardown (set by segment())

    def share(self, label: int) -> float:
        return float(np.mean(self.labels == label)) if len(self.labels) else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "reason": self.reason,
            "window": [round(self.window[0], 3), round(self.window[1], 3)],
            "warmup_steps": self.warmup_steps,
            "load_share": round(self.share(LOAD), 3),
            "noise_share": round(self.share(NOISE), 3),
            "idle_share": round(self.share(IDLE), 3),
            "converged": self.converged,
            "iterations": self.iterations,
            "states": self.states,
            "phases": self.phases.to_json() if self.phases is not None else [],
        }


def features(tl: Timeline) -> tuple[npt.NDArray[np.float64], list[str]]:
    """Per-bin features for the HMM: cpu, step rate (if steps), start-up share (if stacks)."""
    n = tl.n_bins
    cols: list[npt.NDArray[np.float64]] = []
    names: list[str] = []
    cores = max(tl.effective_cores, 1.0)
    cpu = np.clip(tl.total_cpu() / cores, 0.0, 2.0)
    cols.append(cpu)
    names.append("cpu")
    if len(tl.steps):
        counts = _step_counts(tl)
        positive = counts[counts > 0]
        scale = float(np.median(positive)) if len(positive) else 1.0
        cols.append(np.clip(counts / scale, 0.0, 3.0))
        names.append("steps")
    st = tl.stacks
    main = _main_thread_mask(tl)
    if main.any():
        bins = np.clip(np.searchsorted(tl.edges, st.t[main], side="right") - 1, 0, n - 1)
        w = st.weight[main]  # each sample stands for its sampling interval
        total = np.bincount(bins, weights=w, minlength=n)
        state = st.state[main]
        startup = (state == STATE["import"]) | (state == STATE["compile"])
        hits = np.bincount(bins, weights=startup * w, minlength=n)
        share = np.divide(hits, total, out=np.zeros(n), where=total > 0)
        if share.any():
            cols.append(share)
            names.append("startup")
    return np.column_stack(cols), names


def _step_counts(tl: Timeline) -> npt.NDArray[np.float64]:
    """How many steps ended in each bin."""
    return np.histogram(tl.steps.end, bins=tl.edges)[0].astype(np.float64)


def _main_thread_mask(tl: Timeline) -> npt.NDArray[np.bool_]:
    st = tl.stacks
    mask = np.zeros(len(st), dtype=bool)
    for info in tl.processes.values():
        if info.role in ("main", "rank") and info.main_tid:
            mask |= (st.pid == info.pid) & (st.tid == info.main_tid)
    return mask


def segment(tl: Timeline) -> Segmentation:
    """The HMM's steady load, bounded by the run's phases: the analysed window."""
    seg = _steady_load(tl)
    how = "" if seg.method == "hmm" else f"the HMM could not tell the steady load: {seg.reason}"
    phases = find_phases(tl, seg.window, how)
    seg.phases = phases
    seg.window = phases.window if phases.window is not None else (0.0, tl.duration_s)
    seg.warmup_steps = phases.warmup_steps
    seg.warmup_end = phases.warmup_end
    return seg


def _steady_load(tl: Timeline) -> Segmentation:
    X, names = features(tl)
    n = len(X)
    if n < MIN_BINS:
        return _whole_run(tl, f"the run is too short to segment ({n} bins of {tl.bin_s:.2f} s)")
    usable = [i for i in range(X.shape[1]) if np.ptp(X[:, i]) > 1e-9]
    if not usable:
        return _whole_run(tl, "nothing varies over the run")
    Xu = X[:, usable]
    unames = [names[i] for i in usable]
    mu = Xu.mean(axis=0)
    sd = Xu.std(axis=0)
    Z = (Xu - mu) / np.where(sd > 0, sd, 1.0)
    fitted = None
    failure = ""  # why the first fit failed
    for k in (N_STATES, N_STATES - 1):
        # A state the fit leaves empty (a transition row of zeros) fails hmmlearn's checks: the
        # run has fewer regimes than states, so fewer states are tried before giving up.
        try:
            fitted = _fit(Z, k)
            break
        except Exception as exc:
            failure = failure or f"{type(exc).__name__}: {exc}"
    if fitted is None:
        return _whole_run(tl, f"the HMM fit failed ({failure})")
    raw, iterations, n_states = fitted
    converged = iterations < N_ITER
    if not converged:
        return _whole_run(tl, f"the HMM did not converge in {N_ITER} iterations")
    means = [
        {
            unames[j]: float(Xu[raw == s, j].mean()) if (raw == s).any() else 0.0
            for j in range(len(unames))
        }
        for s in range(n_states)
    ]
    if len(tl.steps):
        counts = _step_counts(tl)
        total = max(float(counts.sum()), 1.0)
        for s in range(n_states):
            means[s]["step_share"] = float(counts[raw == s].sum()) / total
    labels_by_state = _name_states(means, unames)
    labels = np.array([labels_by_state[s] for s in raw], dtype=np.int8)
    if not (labels == LOAD).any():
        return _whole_run(tl, "the HMM found no state that looks like application load")
    if not _separated(Z, raw, [s for s in range(n_states) if labels_by_state[s] == LOAD]):
        return _whole_run(tl, "the HMM states are not separated from each other")
    load_bins = np.flatnonzero(labels == LOAD)
    t0 = float(tl.edges[load_bins[0]])
    t1 = float(tl.edges[load_bins[-1] + 1])
    order = sorted(range(n_states), key=lambda s: (labels_by_state[s], _load_score(means[s])))
    return Segmentation(
        labels=labels,
        window=(t0, t1),
        method="hmm",
        reason="",
        state_means=[{**means[s], "label": LABELS[labels_by_state[s]]} for s in order],
        converged=converged,
        iterations=iterations,
        states=n_states,
    )


def _fit(Z: npt.NDArray[np.float64], n_states: int) -> tuple[npt.NDArray[np.int64], int, int]:
    """Fit a Gaussian HMM of ``n_states``; the state of every bin, the iterations, the states."""
    from hmmlearn.hmm import GaussianHMM

    model = GaussianHMM(
        n_components=n_states,
        covariance_type="diag",
        min_covar=MIN_COVAR,
        n_iter=N_ITER,
        tol=1e-4,
        random_state=0,
    )
    hmm_log = logging.getLogger("hmmlearn")
    level = hmm_log.level
    hmm_log.setLevel(logging.ERROR)  # it logs non-convergence itself; we check and say so
    try:
        # (again here: hmmlearn's import is what loads scikit-learn's OpenMP runtime, and a
        # limit holds only for the pools loaded when it is set)
        with one_thread(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(Z)
            raw = model.predict(Z)
    finally:
        hmm_log.setLevel(level)
    return np.asarray(raw, dtype=np.int64), int(model.monitor_.iter), n_states


def _load_score(mean: dict[str, float]) -> float:
    return mean.get("steps", 0.0) * 10 + mean.get("cpu", 0.0) - 2 * mean.get("startup", 0.0)


def _name_states(means: list[dict[str, float]], names: list[str]) -> list[int]:
    """Name each fitted state idle, noise or load from its mean features."""
    labels = [NOISE] * len(means)
    if "steps" in names:
        rates = [m.get("steps", 0.0) for m in means]
        top = max(rates)
        for s, m in enumerate(means):
            # Load: steps complete about as often as anywhere in the run, or a large part of
            # the run's steps complete in this state. The second matters when stalls fill most
            # of the steady state (a checkpoint or an index rebuild every few steps): the HMM
            # then puts the training and the stalls in one state whose mean step rate is low,
            # and a handful of bins where steps bunched up would be taken for the whole load.
            many = rates[s] >= 0.4 * top or m.get("step_share", 0.0) >= LOAD_STEP_SHARE
            if top > 0.2 and many and m.get("startup", 0.0) < 0.5:
                labels[s] = LOAD
            elif rates[s] < 0.05 and m.get("cpu", 0.0) < 0.1:
                labels[s] = IDLE
        return labels
    scores = [m.get("cpu", 0.0) * (1 - m.get("startup", 0.0)) for m in means]
    best = int(np.argmax(scores))
    for s, m in enumerate(means):
        if m.get("cpu", 0.0) < 0.05:
            labels[s] = IDLE
        elif scores[s] >= 0.6 * scores[best] and m.get("startup", 0.0) < 0.5:
            labels[s] = LOAD
    return labels


def _separated(Z: npt.NDArray[np.float64], raw: npt.NDArray[np.int64], load: list[int]) -> bool:
    """The load bins differ from the others by at least one pooled SD in some feature."""
    is_load = np.isin(raw, load)
    if is_load.all() or not is_load.any():
        return True  # one regime only: the whole run is the load
    a, b = Z[is_load], Z[~is_load]
    pooled = np.sqrt((a.var(axis=0) + b.var(axis=0)) / 2) + 1e-9
    return bool((np.abs(a.mean(axis=0) - b.mean(axis=0)) / pooled >= 1.0).any())


def _whole_run(tl: Timeline, reason: str) -> Segmentation:
    labels = np.full(tl.n_bins, LOAD, dtype=np.int8)
    return Segmentation(
        labels=labels, window=(0.0, tl.duration_s), method="whole-run", reason=reason
    )


__all__ = ["IDLE", "LABELS", "LOAD", "NOISE", "Segmentation", "features", "segment"]

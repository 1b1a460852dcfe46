"""Measured "auto": the fastest backend x artifact x thread count within the accuracy budget, on this device.

    sel, backend = choose(bundle)               # what Classifier(bundle) does: cache hit, or a short measurement
    report = tune(bundle, threads=[1, 2, 4])    # `edgecnn tune`: the full sweep, a JSON-able dict

Candidates: every installed backend x every artifact it can run (onnxruntime and OpenVINO: the ONNX
files; LiteRT: the TFLite files; OpenVINO also the fp32 ONNX with its bf16 hint where the CPU has bf16;
TensorRT: the engines built here) x thread counts (`edgecnn.threads.candidate_threads()`: 1, N/2, N).
Explicit backend / precision / threads fix that dimension; with all three given nothing is measured.

Accuracy budget: an artifact is a candidate when the export verified it within `max_drop` points
(default 1) of the PyTorch reference's top-1; fp32 always is. bf16 has no export record: it is a
candidate when its top-1 equals the fp32 file's on every sample image of the bundle (and calib.npz).

Measurement (bounded): every candidate is loaded, warmed up, then timed in ROUNDS: each round runs a
short block of single calls (`run_raw` on a real sample image, perf_counter_ns per call) of every
candidate still in the race, in a rotating order, so that a load spike on a shared machine hits all of
them alike; each block after `ROUND_WARM_MS` of untimed calls. After `MIN_ROUNDS` rounds, a candidate
whose median (of `DROP_MIN_SAMPLES` calls or more) is over `DROP_FACTOR` x the leader's leaves the race
(`POOL_DROP_FACTOR` with thread pools: interleaved, one pool's spinning slows the next candidate). It stops when `budget_s` seconds of timing are spent
and every remaining candidate has `MIN_SAMPLES` calls (at most `MAX_BUDGET_FACTOR` x the budget: on a
machine so busy that a MobileNet call took 100 ms, 3 calls each chose wrongly), or when every remaining
candidate has `TARGET_SAMPLES` calls and `MIN_TIME_FRACTION` of the budget is spent. Then the
finalists within `CONFIRM_WITHIN` (`POOL_CONFIRM_WITHIN` with pools) of the leader are timed once more,
each alone in blocks that start with untimed calls (`_confirm`).
Loads are not counted (they are reported). Winner: lowest median. If the two best are still within
`TIE_WITHIN` of each other, they get a second confirmation round (pooled): ties broken by more data.

Load: a shared machine moves single-call times more than candidates differ. Every measurement records
its spread (p10/p25/p75/p90) and the share of this machine's CPU time OTHER processes used while it ran
(`LoadMeter`: /proc/stat minus this process). At or above `UNDER_LOAD` the record is marked
"under load", and the next start that finds the machine quieter measures again.

Cached choices are re-validated at each start, cheaply: the cached best is timed for a few calls
(about `REVALIDATE_MS`, after `REVALIDATE_WARM_MS` of untimed ones). The runner-up is opened only when
that time says the cached order may have changed: the best is now slower than `REORDER_MARGIN` x the
runner-up's cached p50, or faster than its own cached p50 by that factor (the record's timings look
inflated). Then the runner-up and the best are timed once more, each alone, and the choice is measured
again (cache rewritten) when the runner-up is now faster by more than `REORDER_MARGIN`. A cached record
made under load is measured again when the machine is quiet now (the load meter over 0.1 s, waited for:
only such records pay it). Otherwise the cached best runs.
`EDGECNN_TUNE_RECHECK_MS=0` turns the start-up re-check off (the cached best runs as cached).

Cache: one JSON file per (device, bundle manifest sha256, library versions) under `cache_dir()`:
$EDGECNN_CACHE, else $XDG_CACHE_HOME/edgecnn, else ~/.cache/edgecnn. Nothing is written elsewhere.
A cache file that is corrupt or from another schema/version is ignored with a note; an unwritable
cache directory only means measuring again next time (a note says so). A cached measurement answers a
request when it measured every candidate the request needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import __version__
from ..bundle import MANIFEST, Bundle
from ..errors import EdgeCNNError
from ..labels import config_label
from ..preprocess import load_sample, model_input_shape, preprocess_item
from ..threads import candidate_threads, runtime_threads, sweep_threads
from ..utils import atomic_write_json, cache_dir, sha256_file
from .backends import (
    BACKENDS,
    FORMAT_OF,
    INSTALL_HINT,
    INT8_MAX_DROP_POINTS,
    Backend,
    Selection,
    _engines,
    available_backends,
    backend_precisions,
    check_choice,
    open_backend,
    selection_for,
)

SCHEMA = "edgecnn.tune/1"
DEFAULT_BUDGET_S = 1.0  # timing seconds for the automatic choice (loads come on top)
SWEEP_BUDGET_S = 10.0  # `edgecnn tune`'s default
MIN_ROUNDS = 3
TARGET_SAMPLES = 200
MIN_TIME_FRACTION = 0.3  # ... and at least this share of the budget: 200 calls of a 0.05 ms model are 10 ms,
# too short a window on a shared machine (a wrong pick 1 time in 6 for LeNet-5 at 2 threads)
DROP_FACTOR = 1.5
DROP_MIN_SAMPLES = 8  # a candidate leaves the race only on a median of at least this many calls
MIN_SAMPLES = 15  # no decision on fewer calls per remaining candidate, budget or not ...
MAX_BUDGET_FACTOR = 5.0  # ... up to this many times the budget (a machine 20x busier than usual)
BLOCK_MS = 5.0  # one candidate's share of a round, timed ...
ROUND_WARM_MS = 1.0  # ... after at least one untimed call and this long of them: the candidate that ran just
# before may still spin its thread pool (MobileNetV2-128, 2 threads, after OpenVINO in the same process: LiteRT
# int8 timed 1.74 ms interleaved, 0.63 ms alone, and left the race)
CONFIRM_WITHIN = 1.3  # finalists within this factor of the leader are timed once more, each alone ...
# ... and with thread pools (2+ threads) these wider factors: interleaved, each pool's spinning slows the next
# candidate unevenly (MobileNetV2-128, 2 threads, LiteRT int8: 1.1-1.3 ms in one measurement, 0.62 ms in the
# next and alone), so the race keeps more of them and the alone-timing decides
POOL_DROP_FACTOR = 2.5
POOL_CONFIRM_WITHIN = 2.0
CONFIRM_MS = 90.0  # ... for about this long in all,
CONFIRM_PASSES = 3  # ... in this many blocks each,
CONFIRM_WARM_MS = 25.0  # ... each block after this long of untimed calls
BF16_CHECK_IMAGES = 64
TIE_WITHIN = 1.03  # the two best after the confirmation within this factor: a second round, pooled
UNDER_LOAD = 0.25  # other processes used at least this share of the CPU's time: "under load"
# a cached choice's best is timed about this long at start (0: no start-up re-check) ...
REVALIDATE_MS = float(os.environ.get("EDGECNN_TUNE_RECHECK_MS", "10"))
REVALIDATE_WARM_MS = 2.0  # ... after this long of untimed calls (a new thread pool's first calls are slower),
REORDER_MARGIN = 1.25  # ... and the runner-up opened, then measured again, only past this factor: a few calls
# at start read a 2-thread LiteRT LeNet-5 7-42% slower than the tune's confirmed p50, so the earlier 1.10
# re-measured (1 s) every other start on a near tie (1 thread vs 2, 2% apart) and chose the same again

# ---------------------------------------------------------------- where and under which key


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_record() -> dict[str, Any]:
    """What identifies 'this device' for a measurement: CPU, cores usable, board, OS kernel."""
    try:
        board = Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n ")
    except OSError:
        board = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    return {"machine": platform.machine(), "cpu": _cpu_model(), "logical_cpus": os.cpu_count(),
            "usable_cpus": affinity, "board": board, "system": platform.system()}


def versions_record() -> dict[str, Any]:
    """edgecnn, Python, numpy and every backend's version: a new version means measuring again."""
    return {"edgecnn": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "backends": available_backends()}


def cache_key(bundle: Bundle) -> dict[str, Any]:
    return {"schema": SCHEMA, "bundle_sha256": sha256_file(bundle.path / MANIFEST),
            "device": device_record(), "versions": versions_record()}


def cache_path(bundle: Bundle, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in bundle.name)[:60]
    return cache_dir() / "tune" / f"{safe}-{digest}.json"


def read_cache(path: Path, key: dict[str, Any], notes: list[str]) -> dict | None:
    """The cached measurement at `path` for `key`, or None (missing; corrupt or foreign: with a note)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        notes.append(f"ignoring the tune cache {path}: unreadable ({type(e).__name__}); measuring again")
        return None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        notes.append(f"ignoring the tune cache {path}: schema {found!r}, not {SCHEMA}; measuring again")
        return None
    if data.get("key") != key:
        notes.append(f"ignoring the tune cache {path}: made for another device, bundle or library versions; "
                     "measuring again")
        return None
    results = data.get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) and isinstance(r.get("id"), str)
                                                for r in results):
        notes.append(f"ignoring the tune cache {path}: no valid results list; measuring again")
        return None
    return data


def write_cache(path: Path, data: dict, notes: list[str]) -> bool:
    try:
        atomic_write_json(path, data)
        return True
    except OSError as e:
        notes.append(f"cannot write the tune cache {path} ({e.strerror or type(e).__name__}); "
                     "the next run measures again")
        return False


class LoadMeter:
    """The share of this machine's CPU time that OTHER processes used since the meter was made.

    /proc/stat's busy time of all CPUs minus this process's own CPU time (os.times(), every thread),
    over wall time x CPUs. None where /proc/stat is missing (not Linux) or the window is too short for
    its clock ticks (10 ms) to say anything.
    """

    MIN_WINDOW_S = 0.1

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                values = [int(v) for v in f.readline().split()[1:9]]
            busy = sum(values) - values[3] - values[4]  # all but idle and iowait
            tick = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None
        own = os.times()
        return busy / tick, own.user + own.system, time.monotonic()

    def others_busy(self) -> float | None:
        end = self._read()
        if self.start is None or end is None or end[2] - self.start[2] < self.MIN_WINDOW_S:
            return None
        others = (end[0] - self.start[0]) - (end[1] - self.start[1])
        return round(min(1.0, max(0.0, others / ((end[2] - self.start[2]) * (os.cpu_count() or 1)))), 3)


def load_record(others: float | None) -> dict[str, Any]:
    """{"others_busy": share or None, "under_load": bool} as recorded with a measurement."""
    return {"others_busy": others, "under_load": others is not None and others >= UNDER_LOAD}


# ---------------------------------------------------------------- candidates


@dataclass
class Candidate:
    """One backend x artifact (x bf16 hint) x thread count."""

    selection: Selection
    threads: int | None

    @property
    def id(self) -> str:
        t = "-" if self.threads is None else str(self.threads)
        return f"{self.selection.backend}:{self.selection.artifact.info['file']}:{self.selection.precision}:t{t}"

    @property
    def label(self) -> str:
        return config_label(self.selection.backend, self.selection.precision, threads=self.threads)


def accuracy_drop(info: dict) -> float | None:
    """Points of top-1 the export measured this artifact losing against PyTorch (None if not verified)."""
    v = info.get("verified") or {}
    if v.get("drop_points") is not None:
        return float(v["drop_points"])
    if v.get("accuracy") is not None and v.get("reference_accuracy") is not None:
        return 100.0 * (float(v["reference_accuracy"]) - float(v["accuracy"]))
    return None


def within_budget(bundle: Bundle, sel: Selection, max_drop: float) -> tuple[bool, str]:
    """(eligible, reason) for the accuracy budget, from the bundle's own verification record."""
    if sel.precision in ("fp32", "fp16"):
        return True, ""
    if sel.precision == "bf16":
        return True, ""  # no export record: checked against fp32 on the bundle's samples when measured
    info = sel.artifact.info
    if sel.backend == "tensorrt":  # an int8 engine: the export verified its QDQ ONNX source
        info = ((bundle.manifest.get("tensorrt") or {}).get("onnx_int8")) or {}
    drop = accuracy_drop(info)
    if drop is None and (bundle.manifest.get("source") or {}).get("imported"):
        return False, (f"int8 not considered: {info.get('file', 'the file')} was imported without measured accuracy "
                       f"(`edgecnn verify {bundle.path} --data D --write` measures it)")
    if drop is None:
        return False, "int8 not verified by the export"
    if drop > max_drop:
        return False, f"loses {drop:.2f} points of top-1 (budget {max_drop:g})"
    return True, ""


def plan(bundle: Bundle, backend: str = "auto", precision: str = "auto",
         threads: int | Sequence[int] | None = None, max_drop: float = INT8_MAX_DROP_POINTS,
         include_over_budget: bool = False) -> tuple[list[Candidate], list[dict]]:
    """The candidates to measure, and the ones left out with the reason (not installed, over budget...)."""
    check_choice(backend, precision)
    present = available_backends()
    names = [n for n in BACKENDS if n != "tensorrt"] if backend == "auto" else [backend]
    engines = _engines(bundle) if (backend in ("auto", "tensorrt") and present["tensorrt"]) else {}
    if backend == "auto" and engines:
        names.append("tensorrt")
    if threads is None:
        thread_list: list[int] = candidate_threads()
    elif isinstance(threads, int):
        thread_list = [threads]
    else:
        thread_list = list(dict.fromkeys(int(t) for t in threads))
    if any(t < 1 for t in thread_list):
        raise EdgeCNNError(f"threads must be at least 1, got {min(thread_list)}")
    out: list[Candidate] = []
    left: list[dict] = []
    for name in names:
        if not present[name]:
            if backend != "auto":
                raise EdgeCNNError(f"backend '{name}' is not installed: {INSTALL_HINT[name]}")
            if bundle.find(FORMAT_OF[name]):
                left.append({"candidate": name, "reason": "not installed"})
            continue
        have = backend_precisions(bundle, name, engines)
        wanted = have if precision == "auto" else [p for p in have if p == precision]
        for p in wanted:
            sel = selection_for(bundle, name, p, engines)
            ok, why = within_budget(bundle, sel, max_drop)
            if not ok and precision == "auto" and not include_over_budget:
                left.append({"candidate": sel.label, "artifact": sel.artifact.info["file"], "reason": why})
                continue
            for t in ([None] if name == "tensorrt" else thread_list):
                out.append(Candidate(sel, t))
    if not out and left and precision == "auto" and not include_over_budget \
            and not any(a.precision in ("fp32", "fp16") for a in bundle.artifacts):
        # int8 files only (as the rule `select` does): run them rather than nothing, and say so
        out, _ = plan(bundle, backend, precision, thread_list, max_drop, include_over_budget=True)
        return out, [*left, {"candidate": "all", "reason": "the bundle has only int8 artifacts outside the "
                             "accuracy budget (or unverified): measured anyway"}]
    if not out:
        formats = sorted({a.format for a in bundle.artifacts}) or ["no artifacts"]
        want = "" if precision == "auto" else f" at precision {precision}"
        extra = "; ".join(f"{x['candidate']}: {x['reason']}" for x in left)
        raise EdgeCNNError(f"{bundle.path}: nothing can run this bundle here{want} (bundle has {', '.join(formats)}; "
                           f"installed: {', '.join(n for n, v in present.items() if v) or 'none'})"
                           + (f"; left out: {extra}" if extra else ""))
    return out, left


# ---------------------------------------------------------------- measuring


def sample_inputs(bundle: Bundle, limit: int = 1) -> np.ndarray:
    """Real inputs (float32 NCHW): the bundle's sample images, then calib.npz, else seeded noise."""
    spec = bundle.input
    if spec.get("kind") == "features":  # an imported non-image model: nothing to read, seeded values
        return np.random.default_rng(0).standard_normal((limit, *spec["shape"])).astype(np.float32)
    files = [bundle.path / s["file"] for s in bundle.manifest.get("samples") or [] if isinstance(s, dict)]
    images = [preprocess_item(load_sample(str(f), spec), spec, "BGR") for f in files[:limit] if f.is_file()]
    if len(images) < limit and (bundle.path / "calib.npz").is_file():
        with np.load(bundle.path / "calib.npz") as z:
            images += list(z["x"][: limit - len(images)].astype(np.float32))
    if images:
        return np.stack(images).astype(np.float32)
    shape = (limit, *model_input_shape(spec))
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


@dataclass
class Entry:
    """A candidate being measured."""

    cand: Candidate
    backend: Backend | None = None
    x: Any = None
    load_ms: float | None = None
    samples_ns: list[int] = field(default_factory=list)
    status: str = "measured"  # measured | dropped (clearly slower) | failed
    reason: str = ""
    block: int = 1

    def median_ms(self) -> float:
        return float(np.median(self.samples_ns)) / 1e6 if self.samples_ns else float("inf")


def _check_bf16(entry: Entry, bundle: Bundle, threads: int | None) -> str | None:
    """bf16's accuracy check: top-1 equal to the fp32 file's on the bundle's samples (reason if not)."""
    x = sample_inputs(bundle, BF16_CHECK_IMAGES)
    ref = open_backend(entry.cand.selection.artifact, "openvino", threads)
    try:
        a = np.concatenate([entry.backend.infer(x[i : i + 1]) for i in range(len(x))]).argmax(1)
        b = np.concatenate([ref.infer(x[i : i + 1]) for i in range(len(x))]).argmax(1)
    finally:
        ref.close()
    agree = float((a == b).mean())
    return None if agree == 1.0 else f"bf16 top-1 differs from fp32 on {100 * (1 - agree):.1f}% of {len(x)} samples"


def measure(bundle: Bundle, candidates: list[Candidate], *, budget_s: float = DEFAULT_BUDGET_S,
            target_samples: int = TARGET_SAMPLES, drop_factor: float | None = DROP_FACTOR,
            check_integrity: bool = True, backend_options: dict | None = None,
            progress: Callable[[str], None] | None = None, load: dict | None = None) -> tuple[list[Entry], float]:
    """Load every candidate and time them round-robin; returns the entries (backends still open) and seconds.

    `load` (a dict), when given, receives `load_record` of the timing window (other processes' CPU share)."""
    x1 = sample_inputs(bundle, 1)
    checked: dict[Path, bool] = {}
    entries = [Entry(c) for c in candidates]
    for e in entries:
        sel = e.cand.selection
        path = sel.artifact.path
        if check_integrity and sel.engine is None:
            if path not in checked:
                checked[path] = path.is_file() and sha256_file(path) == sel.artifact.info["sha256"]
            if not checked[path]:
                e.status, e.reason = "failed", f"{sel.artifact.info['file']}: sha256 does not match the manifest"
                continue
        t0 = time.perf_counter()
        try:
            e.backend = open_backend(sel.artifact, sel.backend, e.cand.threads,
                                     **{**(backend_options or {}), **sel.options})
            e.load_ms = 1e3 * (time.perf_counter() - t0)
            e.x = e.backend.prepare(x1)
            e.backend.run_raw(e.x)  # cold call, not timed
            t0 = time.perf_counter_ns()
            for _ in range(3):
                e.backend.run_raw(e.x)
            warm = (time.perf_counter_ns() - t0) / 3e6
            e.block = int(np.clip(round(BLOCK_MS / max(warm, 1e-3)), 1, 50))
            if sel.precision == "bf16":
                bad = _check_bf16(e, bundle, e.cand.threads)
                if bad:
                    raise EdgeCNNError(bad)
        except EdgeCNNError as err:
            e.status, e.reason = "failed", str(err)
            if e.backend is not None:
                e.backend.close()
                e.backend = None
        if progress:
            progress(f"loaded {e.cand.label} ({e.status})")
    clock = time.perf_counter_ns
    pools = any((e.cand.threads or 1) > 1 for e in entries)
    if pools and drop_factor:
        drop_factor = max(drop_factor, POOL_DROP_FACTOR)
    within = POOL_CONFIRM_WITHIN if pools else CONFIRM_WITHIN
    meter = LoadMeter()
    start = clock()
    rounds = 0
    while True:
        racing = [e for e in entries if e.status == "measured"]
        if not racing:
            break
        shift = rounds % len(racing)
        for e in racing[shift:] + racing[:shift]:  # rotating order: no candidate always runs first
            e.samples_ns += _timed_calls(e.backend.run_raw, e.x, e.block, ROUND_WARM_MS)
        rounds += 1
        if rounds >= MIN_ROUNDS:
            best = min(e.median_ms() for e in racing)
            for e in racing:
                if drop_factor and len(e.samples_ns) >= DROP_MIN_SAMPLES and e.median_ms() > drop_factor * best:
                    e.status, e.reason = "dropped", f"over {drop_factor:g}x the leader after {rounds} rounds"
            racing = [e for e in racing if e.status == "measured"]
            spent = (clock() - start) / 1e9
            enough = all(len(e.samples_ns) >= MIN_SAMPLES for e in racing)
            if (spent >= budget_s and enough) or spent >= MAX_BUDGET_FACTOR * budget_s \
                    or (spent >= MIN_TIME_FRACTION * budget_s
                        and all(len(e.samples_ns) >= target_samples for e in racing)):
                break
    _confirm([e for e in entries if e.status == "measured"], within=within)
    ranked = sorted((e for e in entries if e.status == "measured"), key=Entry.median_ms)
    if len(ranked) >= 2 and ranked[1].median_ms() <= TIE_WITHIN * ranked[0].median_ms():
        _confirm(ranked[:2], pool=True)  # a near tie: a second round, added to the first
        for e in ranked[:2]:
            e.reason = e.reason or "near tie: a second confirmation round"
    if load is not None:
        load.update(load_record(meter.others_busy()))
    return entries, (clock() - start) / 1e9


def _timed_calls(run: Callable[[Any], Any], x: Any, n: int, warm_ms: float, warm_calls: int = 1) -> list[int]:
    """n single calls of run(x), ns each, after `warm_calls` untimed calls and at least `warm_ms` of them."""
    clock = time.perf_counter_ns
    warm_until = clock() + int(warm_ms * 1e6)
    for _ in range(warm_calls):
        run(x)
    while clock() < warm_until:
        run(x)
    out = []
    for _ in range(n):
        t0 = clock()
        run(x)
        out.append(clock() - t0)
    return out


def _confirm(racing: list[Entry], pool: bool = False, within: float = CONFIRM_WITHIN) -> None:
    """Time the close finalists once more in long blocks, each alone (their p50 from then on).

    Round-robin blocks are short; the thread pools of the candidate that ran just before can still spin
    and slow the next one (on 2 cores, LiteRT at 2 threads measured 0.054 ms interleaved with
    onnxruntime, 0.025 ms alone). A backend runs alone in use, so the decision among near-equals is made
    on blocks that start with untimed calls; CONFIRM_PASSES passes in rotating order, pooled, so that a
    load spike during one block does not decide.
    """
    if len(racing) < 2:
        return
    best = min(e.median_ms() for e in racing)
    finalists = [e for e in racing if e.median_ms() <= within * best]
    if len(finalists) < 2:
        return
    pooled: dict[int, list[int]] = {id(e): list(e.samples_ns) if pool else [] for e in finalists}
    for k in range(CONFIRM_PASSES):
        for e in finalists[k % len(finalists):] + finalists[: k % len(finalists)]:
            n = int(np.clip(CONFIRM_MS / CONFIRM_PASSES / max(e.median_ms(), 1e-3), 5, TARGET_SAMPLES))
            # 3 untimed calls and at least CONFIRM_WARM_MS of them: other pools stop spinning
            pooled[id(e)] += _timed_calls(e.backend.run_raw, e.x, n, CONFIRM_WARM_MS, warm_calls=3)
    for e in finalists:
        e.samples_ns = pooled[id(e)]


def _result(e: Entry, eligible: bool, note: str = "") -> dict[str, Any]:
    sel = e.cand.selection
    ms = np.asarray(e.samples_ns, dtype=np.float64) / 1e6
    return {
        "id": e.cand.id, "label": e.cand.label, "backend": sel.backend, "artifact": sel.artifact.info["file"],
        "precision": sel.precision, "threads": e.cand.threads, "options": {k: str(v) for k, v in sel.options.items()},
        "status": e.status, "reason": e.reason or note, "within_budget": eligible,
        "p50_ms": float(np.median(ms)) if len(ms) else None,
        "p90_ms": float(np.percentile(ms, 90)) if len(ms) else None,
        # the spread, so that a table says how far apart two p50s must be to mean anything
        **{f"p{q}_ms": float(np.percentile(ms, q)) if len(ms) else None for q in (10, 25, 75)},
        "samples": int(len(ms)), "load_ms": e.load_ms,
    }


def _fmt(ms: float) -> str:
    return f"{ms:.3g}" if ms < 1 else f"{ms:.2f}"


def why_text(chosen: dict, results: list[dict], *, cached: str | None = None, seconds: float | None = None,
             shown: int = 4, load: dict | None = None) -> str:
    """'measured: litert int8 (2 threads) 2.16 ms vs openvino int8 (2 threads) 2.92 ms, ... (0.8 s, round-robin)'."""
    ranked = sorted((r for r in results if r["p50_ms"] is not None and r["within_budget"]
                     and r["id"] != chosen["id"]), key=lambda r: r["p50_ms"])
    parts = [f"{chosen['label']} {_fmt(chosen['p50_ms'])} ms"]
    others = [f"{r['label']} {_fmt(r['p50_ms'])} ms" for r in ranked[: shown - 1]]
    more = f", +{len(ranked) - shown + 1} more" if len(ranked) > shown - 1 else ""
    text = parts[0] + (" vs " + ", ".join(others) + more if others else " (the only candidate)")
    busy = ""
    if load and load.get("under_load"):
        busy = (f"; measured under load (other processes used {100 * load['others_busy']:.0f}% of the CPU): "
                "measured again when the machine is quieter")
    if cached:
        return f"fastest measured here on {cached} (cached): {text}{busy}"
    timing = f"; {seconds:.2f} s of round-robin timing" if seconds is not None else ""
    return f"fastest measured: {text} (p50 of single calls{timing}){busy}"


# ---------------------------------------------------------------- the two entry points


def _pick(results: list[dict], wanted: set[str]) -> dict | None:
    # `wanted` holds the candidates within the caller's accuracy budget (the record's flag is the sweep's).
    pool = [r for r in results if r["id"] in wanted and r["p50_ms"] is not None
            and r["status"] in ("measured", "dropped")]
    return min(pool, key=lambda r: r["p50_ms"]) if pool else None


def _left_note(left: list[dict]) -> str:
    """What the accuracy budget kept out of the race, for `why` (e.g. unmeasured imported int8 files)."""
    out = [f"{x['candidate']} {x['artifact']}: {x['reason']}" for x in left if x.get("artifact")]
    return ("; left out: " + "; ".join(dict.fromkeys(out))) if out else ""


def _emit(notes: list[str]) -> None:
    if notes:
        import logging  # only when there is something to say: ~2 ms of a cold start otherwise

        for n in notes:
            logging.getLogger("edgecnn.runtime.tune").warning(n)


def choose(bundle: Bundle, backend: str = "auto", precision: str = "auto", threads: int | None = None, *,
           tune: bool | str = True, budget_s: float = DEFAULT_BUDGET_S, max_drop: float = INT8_MAX_DROP_POINTS,
           check_integrity: bool = True, backend_options: dict | None = None) -> tuple[Selection, Backend]:
    """The Selection to run and its opened backend (what `Classifier` calls).

    All of backend, precision and threads given: exactly that, nothing measured. Otherwise the fastest
    measured candidate (cache first; `tune="fresh"` measures again; `tune=False` uses the rule `select`).
    """
    from .backends import select

    check_choice(backend, precision)
    opts = dict(backend_options or {})
    if not tune or (backend != "auto" and precision != "auto"):
        sel = select(bundle, backend, precision)
        t = threads if threads is not None else (None if sel.backend == "tensorrt" else runtime_threads())
        if check_integrity and sel.engine is None and sha256_file(sel.artifact.path) != sel.artifact.info["sha256"]:
            # Only the artifact we run: a corrupt or replaced model file fails here, not with odd labels.
            raise EdgeCNNError(f"{sel.artifact.path}: sha256 does not match the manifest (file corrupt or replaced)")
        if backend != "auto" and precision != "auto":
            sel.reason = "asked for"
        if threads is None and t is not None:
            sel.reason += f"; threads {t} (all usable cores)"
        sel.threads = t
        return sel, open_backend(sel.artifact, sel.backend, t, **{**opts, **sel.options})
    meter = LoadMeter()  # from here to the end of a re-validation: is the machine quiet now?
    cands, left = plan(bundle, backend, precision, threads, max_drop)
    wanted = {c.id for c in cands}
    notes: list[str] = []
    key = cache_key(bundle)
    path = cache_path(bundle, key)
    cached = read_cache(path, key, notes) if tune != "fresh" else None
    if cached is not None and wanted <= {r["id"] for r in cached["results"]}:
        hit = _cached_choice(bundle, cached, cands, wanted, check_integrity, opts, meter, notes)
        if hit is not None:
            _emit(notes)
            sel, engine, check = hit
            sel.reason = why_text(_pick(cached["results"], wanted) or {}, [r for r in cached["results"]
                                                                          if r["id"] in wanted],
                                  cached=str(cached.get("created", "?"))[:10], load=cached.get("load")) \
                + _left_note(left)
            sel.measurement = {"cache": str(path), "hit": True, "notes": notes, "revalidation": check}
            return sel, engine
    load: dict[str, Any] = {}
    entries, seconds = measure(bundle, cands, budget_s=budget_s, check_integrity=check_integrity,
                               backend_options=opts, load=load)
    results = [_result(e, True) for e in entries]
    best = _pick(results, wanted)
    failed = [r for r in results if r["status"] == "failed"]
    notes += [f"{r['label']}: {r['reason']}" for r in failed]
    if best is None:
        _close(entries)
        _emit(notes)
        raise EdgeCNNError(f"{bundle.path}: no candidate could run here ({failed[0]['reason'] if failed else '?'})")
    # Merge: keep what an earlier sweep measured for candidates outside this request.
    previous = [r for r in (cached or {}).get("results", []) if r["id"] not in wanted]
    record = {"schema": SCHEMA, "key": key, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "budget_s": budget_s, "seconds": seconds, "load": load, "results": results + previous, "left_out": left}
    wrote = write_cache(path, record, notes)
    _emit(notes)
    winner = next(e for e in entries if e.cand.id == best["id"])
    for e in entries:
        if e is not winner and e.backend is not None:
            e.backend.close()
    sel = winner.cand.selection
    sel.threads = winner.cand.threads
    sel.reason = why_text(best, results, seconds=seconds, load=load) + _left_note(left)
    sel.measurement = {"cache": str(path) if wrote else None, "hit": False, "notes": notes, "load": load,
                       "results": results, "left_out": left, "timing_s": seconds,
                       "load_s": sum(r["load_ms"] or 0.0 for r in results) / 1e3}
    return sel, winner.backend


def _p50_alone(engine: Backend, x: np.ndarray, cached_ms: float) -> float:
    """p50 ms of a few single calls of one open candidate (about REVALIDATE_MS, after REVALIDATE_WARM_MS untimed:
    the first calls of a new pool, or the other candidate's pool still spinning)."""
    n = int(np.clip(REVALIDATE_MS / max(cached_ms, 1e-3), 5, 100))
    return float(np.median(_timed_calls(engine.run_raw, x, n, REVALIDATE_WARM_MS))) / 1e6


def _cached_choice(bundle: Bundle, cached: dict, cands: list[Candidate], wanted: set[str], check_integrity: bool, opts: dict,
                   meter: LoadMeter, notes: list[str]) -> tuple[Selection, Backend, dict] | None:
    """The cached best, opened and re-checked (the runner-up only when needed); None: measure again (notes say why)."""
    pool = sorted((r for r in cached["results"] if r["id"] in wanted and r["p50_ms"] is not None
                   and r["status"] in ("measured", "dropped")), key=lambda r: r["p50_ms"])
    if not pool:
        return None
    best = pool[0]
    cand = next(c for c in cands if c.id == best["id"])
    try:
        engine = _open_candidate(cand, check_integrity, opts)
    except EdgeCNNError as e:
        notes.append(f"cached choice {best['label']} failed to load ({e}); measuring again")
        return None
    check: dict[str, Any] = {"best": best["label"]}
    runner = pool[1] if len(pool) > 1 else None
    if runner is not None and REVALIDATE_MS > 0:
        x1 = sample_inputs(bundle, 1)
        x = engine.prepare(x1)
        a = _p50_alone(engine, x, best["p50_ms"])
        check.update({"best_ms": a, "best_cached_ms": best["p50_ms"], "runner_up": runner["label"],
                      "runner_up_cached_ms": runner["p50_ms"]})
        # The order can only have changed when the best's own time moved past the margin: slower than the
        # runner-up was, or much faster than it was itself (the record's timings inflated, maybe unevenly).
        if a > REORDER_MARGIN * runner["p50_ms"] or a * REORDER_MARGIN < best["p50_ms"]:
            other = next(c for c in cands if c.id == runner["id"])
            try:  # only timed, never used for a result: no sha256 of its file (cold start)
                second = _open_candidate(other, False, opts)
            except EdgeCNNError:
                second = None  # a runner-up that no longer loads cannot overtake the best
            if second is not None:
                try:
                    b = _p50_alone(second, second.prepare(x1), runner["p50_ms"])
                finally:
                    second.close()
                a = min(a, _p50_alone(engine, x, best["p50_ms"]))  # the best again, after the runner-up
                check.update({"best_ms": a, "runner_up_ms": b})
                if b * REORDER_MARGIN < a:
                    notes.append(f"cached choice re-checked: {runner['label']} {_fmt(b)} ms now beats "
                                 f"{best['label']} {_fmt(a)} ms; measuring again")
                    engine.close()
                    return None
    was = cached.get("load") or {}
    if REVALIDATE_MS <= 0:  # re-check turned off: the cached best as it is
        was = {}
    if was.get("under_load") and meter.start is not None:
        # Made under load: is it quiet now? A window shorter than the meter's minimum says nothing; wait it
        # out. (The 1-minute load average would be free to read, but it lags a minute behind: a quiet start
        # right after a busy spell would keep a choice the load distorted.)
        time.sleep(max(0.0, LoadMeter.MIN_WINDOW_S - (time.monotonic() - meter.start[2])))
    now = meter.others_busy()
    check["others_busy"] = now
    # "quieter": under the threshold AND at most half the load it was made under (no re-measuring on
    # every start of a machine that hovers around the threshold)
    if was.get("under_load") and now is not None and now < UNDER_LOAD and now <= was["others_busy"] / 2:
        notes.append(f"cached choice was measured under load (other processes {100 * was['others_busy']:.0f}% of "
                     f"the CPU), the machine is quieter now ({100 * now:.0f}%); measuring again")
        engine.close()
        return None
    sel = cand.selection
    sel.threads = cand.threads
    return sel, engine, check


def cached_choice(bundle: Bundle, backend: str = "auto", precision: str = "auto",
                  threads: int | Sequence[int] | None = None, max_drop: float = INT8_MAX_DROP_POINTS) -> str:
    """One line on what the automatic choice is here, from the cache only (nothing measured)."""
    notes: list[str] = []
    try:
        cands, _ = plan(bundle, backend, precision, threads, max_drop)
    except EdgeCNNError as e:
        return f"the runtime's automatic choice: none ({e})"
    key = cache_key(bundle)
    cached = read_cache(cache_path(bundle, key), key, notes)
    wanted = {c.id for c in cands}
    best = _pick(cached["results"], wanted) if cached and wanted <= {r["id"] for r in cached["results"]} else None
    if best is None:
        return ("the runtime's automatic choice: not measured here yet (`edgecnn tune BUNDLE` measures it; "
                "`edgecnn run` does on first use)" + (f"; {notes[0]}" if notes else ""))
    results = [r for r in cached["results"] if r["id"] in wanted]
    return f"the runtime's automatic choice: {why_text(best, results, cached=str(cached.get('created', '?'))[:10])}"


def _open_candidate(cand: Candidate, check_integrity: bool, opts: dict) -> Backend:
    sel = cand.selection
    if check_integrity and sel.engine is None and sha256_file(sel.artifact.path) != sel.artifact.info["sha256"]:
        raise EdgeCNNError(f"{sel.artifact.path}: sha256 does not match the manifest (file corrupt or replaced)")
    return open_backend(sel.artifact, sel.backend, cand.threads, **{**opts, **sel.options})


def _close(entries: list[Entry]) -> None:
    for e in entries:
        if e.backend is not None:
            e.backend.close()
            e.backend = None


def tune(bundle: str | Path | Bundle, *, backend: str = "auto", precision: str = "auto",
         threads: int | Sequence[int] | None = None, budget_s: float = SWEEP_BUDGET_S,
         max_drop: float = INT8_MAX_DROP_POINTS, write: bool = True,
         log_fn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The full sweep (`edgecnn tune`): every candidate, over-budget ones too (marked), cache written.

    Returns a JSON-able report: {schema, bundle, device, versions, settings, results[], choice, why,
    left_out[], notes[], cache}. Runs anywhere the runtime runs (e.g. on a remote device over SSH).
    """
    b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    if budget_s <= 0:
        raise EdgeCNNError(f"--budget-s must be positive, got {budget_s:g}")
    thread_list = sweep_threads() if threads is None else threads
    cands, left = plan(b, backend, precision, thread_list, max_drop, include_over_budget=True)
    eligible = {c.id: within_budget(b, c.selection, max_drop) for c in cands}
    # No candidate leaves the race early: the sweep's table gives every one the same rounds.
    load: dict[str, Any] = {}
    entries, seconds = measure(b, cands, budget_s=budget_s, target_samples=4 * TARGET_SAMPLES, drop_factor=None,
                               progress=log_fn, load=load)
    try:
        results = [_result(e, eligible[e.cand.id][0], "" if eligible[e.cand.id][0] else eligible[e.cand.id][1])
                   for e in entries]
    finally:
        _close(entries)
    notes = [f"{r['label']}: {r['reason']}" for r in results if r["status"] == "failed"]
    best = _pick(results, {c.id for c in cands if eligible[c.id][0]})
    key = cache_key(b)
    path = cache_path(b, key)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    wrote = False
    if write and best is not None:
        wrote = write_cache(path, {"schema": SCHEMA, "key": key, "created": created, "budget_s": budget_s,
                                   "seconds": seconds, "load": load, "results": results, "left_out": left}, notes)
    return {
        "schema": "edgecnn.tune-report/1", "created": created, "bundle": str(b.path), "name": b.name,
        "device": key["device"], "versions": key["versions"],
        "settings": {"backend": backend, "precision": precision, "threads": list(thread_list),
                     "budget_s": budget_s, "max_drop_points": max_drop, "python": sys.version.split()[0]},
        "seconds": seconds, "load": load, "results": results, "left_out": left, "notes": notes,
        "choice": best, "why": why_text(best, results, seconds=seconds, load=load) if best else "nothing could run",
        "cache": str(path) if wrote else None,
    }


def format_table(report: dict) -> str:
    """The tune report as an aligned text table, fastest first."""
    rows = sorted(report["results"], key=lambda r: (r["p50_ms"] is None, r["p50_ms"] or 0))
    header = ["backend", "precision", "threads", "artifact", "p50 ms", "p10-p90 ms", "samples", "load ms", "status"]
    body = []
    for r in rows:
        status = r["status"] if r["within_budget"] else "over budget"
        if r is report.get("choice") or (report.get("choice") and r["id"] == report["choice"]["id"]):
            status = "CHOSEN"
        body.append([r["backend"], r["precision"], "-" if r["threads"] is None else str(r["threads"]), r["artifact"],
                     _fmt(r["p50_ms"]) if r["p50_ms"] is not None else "-",
                     _spread(r), str(r["samples"]),
                     f"{r['load_ms']:.0f}" if r["load_ms"] is not None else "-",
                     status + (f" ({r['reason']})" if r["reason"] and status != "CHOSEN" else "")])
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *body]]
    out = [lines[0], "  ".join("-" * w for w in widths), *lines[1:]]
    load = report.get("load") or {}
    if load.get("others_busy") is not None:
        state = "UNDER LOAD: the choice is measured again when the machine is quieter" if load["under_load"] \
            else "quiet enough"
        out.append(f"other processes used {100 * load['others_busy']:.0f}% of the CPU while this was timed ({state})")
    return "\n".join(out)


def _spread(r: dict) -> str:
    """'0.95-1.31': the p10 to p90 of a candidate's single calls ('-' when it has none)."""
    if r.get("p10_ms") is None or r.get("p90_ms") is None:
        return "-"
    return f"{_fmt(r['p10_ms'])}-{_fmt(r['p90_ms'])}"

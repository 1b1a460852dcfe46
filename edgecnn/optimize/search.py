"""The search: prune ratios x (float | QAT) x format x precision x backend x threads, measured.

Order (each step cached, each trial logged, see stages.py and trials.py):
  for each prune ratio, smallest first (0 = the checkpoint as it is):
    1. prune + fine-tune (ratio > 0), export every format x precision, each artifact verified on the test
       split: its accuracy is the trial's accuracy (the artifact's own output, not PyTorch's);
    2. time every artifact x installed backend x thread count on the target (trial = one of these);
    3. if every int8 artifact of this ratio loses more than the budget while fp32 stays within it: QAT
       this ratio's weights, export int8 again, time those;
    4. if even fp32 at this ratio is over budget, larger ratios are skipped (they only lose more).
  The budget in minutes (--budget-min) stops the search before it starts a step once it is spent; what
  was measured is kept and reported, and a rerun with a larger budget continues.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import EdgeCNNError
from ..utils import atomic_write_json, sha256_file
from .trials import TrialLog, trial_key

SEARCH_SCHEMA = "edgecnn.optimize-search/1"
PRECISIONS = ("fp32", "fp16", "int8")
FORMATS = ("onnx", "tflite")


@dataclass
class SearchSpace:
    ratios: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75])
    finetune_epochs: int = 3
    qat_epochs: int = 2  # 0: never QAT
    formats: list[str] = field(default_factory=lambda: list(FORMATS))
    precisions: list[str] = field(default_factory=lambda: list(PRECISIONS))
    backends: list[str] | None = None  # None: every backend the target has
    threads: list[int] | None = None  # None: 1, 2, 4 ... the target's cores
    round_to: int | None = None

    def check(self) -> None:
        if not self.ratios:
            raise EdgeCNNError("--ratios is empty")
        bad = [r for r in self.ratios if not 0.0 <= r < 1.0]
        if bad:
            raise EdgeCNNError(f"--ratios must be in [0, 1) (0 = not pruned), got {bad[0]}")
        if self.finetune_epochs < 0 or self.qat_epochs < 0:
            raise EdgeCNNError("--finetune-epochs and --qat-epochs must be >= 0")
        for name, got, allowed in (("--formats", self.formats, FORMATS), ("--precisions", self.precisions, PRECISIONS)):
            if not got:
                raise EdgeCNNError(f"{name} is empty; choose from {', '.join(allowed)}")
            unknown = [g for g in got if g not in allowed]
            if unknown:
                raise EdgeCNNError(f"{name}: unknown '{unknown[0]}'; choose from {', '.join(allowed)}")
        if self.threads is not None and (not self.threads or min(self.threads) < 1):
            raise EdgeCNNError("--threads must list positive integers")


@dataclass
class SearchRun:
    checkpoint: Path
    data: str
    out: Path
    max_drop: float = 1.0
    target: str = "this"
    budget_min: float | None = None
    data_root: str | None = None
    test_limit: int | None = None
    calib_size: int = 200
    runs: int = 200
    warmup: int = 20
    lr: float | None = None
    train_limit: int | None = None
    train_threads: int | None = None


class Interrupts:
    """Ctrl-C that no library can swallow: the handler raises KeyboardInterrupt AND remembers it, and the
    search re-raises at the next step boundary (torch-pruning's tracer, for one, has a bare `except:`)."""

    def __init__(self) -> None:
        self.hit = False
        self._old = None

    def _handler(self, signum, frame) -> None:
        self.hit = True
        raise KeyboardInterrupt

    def __enter__(self) -> Interrupts:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not \
                signal.SIG_IGN:
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            import signal

            signal.signal(signal.SIGINT, self._old)

    def check(self) -> None:
        if self.hit:
            raise KeyboardInterrupt


class Clock:
    """Elapsed time against the optional budget."""

    def __init__(self, budget_min: float | None):
        self.start = time.monotonic()
        self.budget_s = None if budget_min is None else budget_min * 60.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float | None:
        return None if self.budget_s is None else self.budget_s - self.elapsed

    def spent(self) -> bool:
        left = self.left()
        return left is not None and left <= 0


def _check_run_file(out: Path, identity: dict, log: Callable[[str], None]) -> dict:
    """OUT/search.json ties the folder to one checkpoint + dataset + test split; refuse to mix searches."""
    path = out / "search.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            saved = {}
        same = {k: saved.get(k) for k in identity} == identity
        if not same:
            raise EdgeCNNError(f"{out} holds a search of another checkpoint, dataset or test split "
                               f"({saved.get('checkpoint_sha256', '?')[:12]}...); choose another --out or delete it")
        return saved
    if out.exists() and any(out.iterdir()):
        raise EdgeCNNError(f"--out {out} exists and is not an edgecnn optimize folder; choose another --out")
    return {}


def _baseline_accuracy(ckpt: dict, ds, test_limit: int | None) -> tuple[float, int]:
    """PyTorch top-1 of the input checkpoint on the test split (the budget's reference), as export measures."""
    from ..data import preprocessed
    from ..export.verify import accuracy, torch_logits
    from ..train.checkpoint import model_from_checkpoint

    x, y = preprocessed(ds, "test", ckpt["input"], test_limit)
    return accuracy(torch_logits(model_from_checkpoint(ckpt), x), y), int(len(y))


def run_search(run: SearchRun, space: SearchSpace, log: Callable[[str], None] = print,
               progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the search; return the state the report is made from (see report.py)."""
    with Interrupts() as interrupts:
        return _search(run, space, log, progress, interrupts)


def _search(run: SearchRun, space: SearchSpace, log: Callable[[str], None], progress: bool,
            interrupts: Interrupts) -> dict[str, Any]:
    import torch

    from ..data import load_dataset
    from ..runtime.backends import BACKENDS, FORMAT_OF
    from ..train.checkpoint import read_checkpoint
    from .progress import SearchProgress
    from .stages import exported_bundle, pruned_checkpoint, qat_checkpoint, stage_dir
    from .targets import default_threads, make_target

    space.check()
    if run.max_drop < 0:
        raise EdgeCNNError(f"--max-drop must be >= 0 points, got {run.max_drop}")
    if run.budget_min is not None and run.budget_min <= 0:
        raise EdgeCNNError(f"--budget-min must be positive, got {run.budget_min:g}")
    if run.runs < 1:
        raise EdgeCNNError(f"--runs must be at least 1, got {run.runs}")
    ckpt_path = Path(run.checkpoint)
    src = read_checkpoint(ckpt_path)
    if src.get("qat"):
        raise EdgeCNNError(f"{ckpt_path}: is a QAT checkpoint; optimize the float checkpoint (QAT is one of the steps)")
    dataset = str(src.get("dataset") or "")
    if run.data != dataset:
        raise EdgeCNNError(f"--data {run.data}: the checkpoint was trained on '{dataset or '?'}'; optimize measures "
                           "accuracy on the checkpoint's own test split")
    if run.train_threads:  # else torch's own default (OMP_NUM_THREADS where set)
        torch.set_num_threads(run.train_threads)
    target = make_target(run.target, log)  # first: an unreachable board fails before any work
    out = Path(run.out)
    identity = {"schema": SEARCH_SCHEMA, "checkpoint_sha256": sha256_file(ckpt_path), "data": dataset,
                "test_limit": run.test_limit}
    saved = _check_run_file(out, identity, log)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(run.data, run.data_root, input_spec=src.get("input"))
    if saved.get("baseline_accuracy") is None:
        base_acc, n_test = _baseline_accuracy(src, ds, run.test_limit)
    else:
        base_acc, n_test = float(saved["baseline_accuracy"]), int(saved["test_images"])
    atomic_write_json(out / "search.json", {**identity, "checkpoint": str(ckpt_path.resolve()),
                                            "baseline_accuracy": base_acc, "test_images": n_test})
    log(f"baseline: {src['model']['name']} fp32 (PyTorch) test top-1 {100 * base_acc:.2f}% on {n_test} images; "
        f"budget: at most {run.max_drop:g} point(s) below")

    clock = Clock(run.budget_min)
    threads = space.threads or default_threads(target.cpus)
    wanted_backends = space.backends or [b for b in BACKENDS if b in target.backends]
    missing = [b for b in wanted_backends if b not in target.backends]
    if missing:
        raise EdgeCNNError(f"--backends: {missing[0]} is not installed on {target.label} "
                           f"(there: {', '.join(target.backends) or 'none'})")
    backends = [b for b in wanted_backends if FORMAT_OF.get(b) in space.formats]
    formats = [f for f in space.formats if any(FORMAT_OF.get(b) == f for b in backends)]
    if not backends:
        raise EdgeCNNError(f"no backend on {target.label} runs {', '.join(space.formats)} "
                           f"(installed there: {', '.join(target.backends) or 'none'})")
    log(f"target {target.label}: backends {', '.join(f'{b} {target.backends[b]}' for b in backends)}; "
        f"threads {', '.join(map(str, threads))}")

    trials = TrialLog(out / "trials.jsonl")
    if trials.resumed:
        log(f"resuming: {trials.resumed} trial(s) already in {trials.path}")
    per_bundle = sum(len(space.precisions) * len(threads) for b in backends)
    bar = SearchProgress(len(space.ratios) * per_bundle, clock, enabled=progress)
    log = bar.wrap(log)
    bar.update(sum(1 for t in trials.trials.values() if t.get("target") == target.name))
    work = out / "work"
    notes: list[str] = []
    stopped: str | None = None

    def measure_bundle(bundle, ratio: float, variant: str, qat_epochs: int | None, precisions: list[str]) -> list[dict]:
        """Time what is not yet in the log; returns every trial (old and new) of this bundle."""
        todo, records = [], []
        for art in bundle.artifacts:
            if art.format not in formats or art.precision not in precisions:
                continue
            v = art.info.get("verified") or {}
            for backend in backends:
                if FORMAT_OF[backend] != art.format:
                    continue
                for t in threads:
                    key = {"ratio": ratio, "finetune_epochs": space.finetune_epochs if ratio else 0,
                           "variant": variant, "qat_epochs": qat_epochs, "format": art.format,
                           "precision": art.precision, "backend": backend, "threads": t, "target": target.name}
                    old = trials.get(key)
                    if old is not None:
                        records.append(old)
                        continue
                    acc = v.get("accuracy")
                    todo.append((key, art, acc, v))
        interrupts.check()
        if todo:
            bar.stage(f"timing {len(todo)} on {target.label}")
            t0 = time.perf_counter()
            results, failures = target.measure(bundle.path, [(a.info["file"], k["backend"], k["threads"])
                                                             for k, a, _, _ in todo],
                                               runs=run.runs, warmup=run.warmup, log=log)
            got = {(r["artifact"], r["backend"], r["threads"]): r for r in results}
            fails = {(f["artifact"], f["backend"], f["threads"]): f["reason"] for f in failures}
            each = (time.perf_counter() - t0) / len(todo)
            for key, art, acc, v in todo:
                cfg = (art.info["file"], key["backend"], key["threads"])
                rec = {**key, "artifact": str(art.path.relative_to(out)), "size_bytes": art.info["size_bytes"],
                       "accuracy": acc, "drop_points": None if acc is None else round(100.0 * (base_acc - acc), 6),
                       "agreement": v.get("top1_agreement"), "seconds": round(each, 2),
                       "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                r = got.get(cfg)
                if r is None or acc is None:
                    rec.update(status="failed", reason=fails.get(cfg) or "no accuracy recorded for this artifact")
                else:
                    rec.update(status="ok", latency_ms=r["latency_ms"], throughput=r["throughput"],
                               cold_start=r["cold_start"], backend_version=r.get("backend_version"))
                records.append(trials.add(rec))
                bar.update(1)
        return records

    def drops(records: list[dict], precision: str) -> list[float]:
        return [r["drop_points"] for r in records if r["precision"] == precision and r["drop_points"] is not None]

    for ratio in sorted(set(space.ratios)):
        interrupts.check()
        if clock.spent():
            stopped = f"the {run.budget_min:g}-minute budget was spent before prune ratio {ratio:.2f}"
            break
        d = stage_dir(work, ratio, space.finetune_epochs)
        if ratio:
            bar.stage(f"prune {ratio:.0%} + fine-tune")
            ckpt = pruned_checkpoint(ckpt_path, ratio, space.finetune_epochs, ds, d / "model.pt",
                                     round_to=space.round_to, lr=run.lr, train_limit=run.train_limit, log=log,
                                     check=interrupts.check)
        else:
            ckpt = ckpt_path
        interrupts.check()
        bar.stage(f"export {ratio:.0%}")
        try:
            bundle = exported_bundle(ckpt, d / "bundle", formats=formats, fp16="fp16" in space.precisions,
                                     int8="int8" in space.precisions, data=dataset, data_root=run.data_root,
                                     calib_size=run.calib_size, test_limit=run.test_limit, log=log)
        except EdgeCNNError as e:  # e.g. a converter that cannot take this pruned graph: the other ratios still run
            notes.append(f"ratio {ratio:.2f}: export failed, no trials ({e})")
            log(notes[-1])
            continue
        records = measure_bundle(bundle, ratio, "float", None, space.precisions)
        fp32, int8 = drops(records, "fp32"), drops(records, "int8")
        if space.qat_epochs and int8 and min(int8) > run.max_drop and (not fp32 or min(fp32) <= run.max_drop):
            if clock.spent():
                stopped = f"the {run.budget_min:g}-minute budget was spent before QAT at ratio {ratio:.2f}"
                break
            notes.append(f"ratio {ratio:.2f}: int8 PTQ loses {min(int8):.2f} points (> {run.max_drop:g}): QAT tried")
            log(notes[-1])
            qd = stage_dir(work, ratio, space.finetune_epochs, space.qat_epochs)
            bar.add_total(per_bundle // len(space.precisions))
            bar.stage(f"QAT {ratio:.0%}")
            try:
                qckpt = qat_checkpoint(ckpt, space.qat_epochs, ds, qd / "model.pt", lr=run.lr,
                                       train_limit=run.train_limit, log=log)
                qbundle = exported_bundle(qckpt, qd / "bundle", formats=formats, fp16=False, int8=True,
                                          data=dataset, data_root=run.data_root, calib_size=run.calib_size,
                                          test_limit=run.test_limit, log=log)
            except EdgeCNNError as e:
                notes.append(f"ratio {ratio:.2f}: QAT failed, no QAT trials ({e})")
                log(notes[-1])
            else:
                interrupts.check()
                measure_bundle(qbundle, ratio, "qat", space.qat_epochs, ["int8"])
        if fp32 and min(fp32) > run.max_drop:
            larger = [r for r in space.ratios if r > ratio]
            if larger:
                notes.append(f"ratio {ratio:.2f}: even fp32 loses {min(fp32):.2f} points (> {run.max_drop:g}); "
                             f"larger ratios ({', '.join(f'{r:.2f}' for r in larger)}) skipped")
                log(notes[-1])
            break
    bar.close()
    interrupts.check()
    return {"run": run, "space": space, "target": target, "threads": threads, "backends": backends,
            "baseline_accuracy": base_acc, "test_images": n_test, "trials": trials, "notes": notes,
            "stopped": stopped, "elapsed_s": clock.elapsed, "model": src["model"]["name"], "dataset": dataset,
            "settings": {"run": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(run).items()},
                         "space": asdict(space)},
            "trial_key": trial_key}

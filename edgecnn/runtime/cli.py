"""`edgecnn run` (real-time classification) and `edgecnn classify` (image files). No torch here."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any

BACKEND_CHOICES = ("auto", "onnxruntime", "litert", "tensorrt", "openvino")
PRECISION_CHOICES = ("auto", "fp32", "fp16", "int8", "bf16")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="bundle directory written by `edgecnn export`")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default=None,
                   help="inference backend (default auto: the fastest measured here, see `edgecnn tune`)")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                   help="artifact precision (default auto: the fastest measured within 1 point of accuracy; "
                        "bf16 = OpenVINO on the fp32 ONNX with its bf16 hint)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the backend (default: measured with auto, else all usable cores)")
    p.add_argument("--top-k", type=int, default=5, help="labels to report per image (default 5)")
    p.add_argument("--device", metavar="PROFILE", default=None,
                   help="apply a device profile (edgecnn info lists them): backend, precision, threads, camera")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `run` and `classify`; handlers import the backends only when they run."""
    p = sub.add_parser("run", help="classify a camera, stream, video or image folder in real time",
                       description="Real-time classification. SOURCE: camera index or /dev/videoN, csi://0 "
                                   "(Jetson), picamera2://0 (Pi), rtsp://... or http://..., a video file, "
                                   "an image folder or glob.")
    _add_model_args(p)
    p.add_argument("--source", action="append", default=None,
                   help="frame source URI (default: the device profile's camera); repeat it for several cameras, "
                        "which share one loaded model (each result names its source)")
    p.add_argument("--latency-mode", choices=("fresh", "throughput"), default=None,
                   help="fresh: every stage keeps only the newest frame (results stay recent; older frames are "
                        "dropped and counted); throughput: queues, no frame dropped between stages (default: "
                        "fresh for cameras and streams, throughput for files)")
    p.add_argument("--predictions", metavar="FILE.jsonl", default=None,
                   help="append one JSON line per result to FILE, rotated by size (see --predictions-max-mb)")
    p.add_argument("--predictions-max-mb", metavar="MB", type=float, default=10.0,
                   help="with --predictions: start a new file past this size (default 10)")
    p.add_argument("--predictions-keep", metavar="N", type=int, default=5,
                   help="with --predictions: rotated files kept, FILE.1 .. FILE.N (default 5)")
    p.add_argument("--headless", action="store_true", help="no window: one JSON line per frame on stdout")
    p.add_argument("--save", metavar="OUT.mp4", default=None, help="also write the annotated video here")
    p.add_argument("--serve", metavar="HOST:PORT", nargs="?", const="127.0.0.1:8080", default=None,
                   help="serve the live dashboard over HTTP: page, MJPEG /stream, /api/stats, /api/latest, "
                        "/api/events (default 127.0.0.1:8080, localhost only; needs the serve extra)")
    p.add_argument("--max-viewers", type=int, default=4,
                   help="with --serve: concurrent video viewers (and as many event clients) (default 4)")
    p.add_argument("--serve-token", metavar="TOKEN", default=None,
                   help="with --serve: require this token (?token=TOKEN or an X-Edgecnn-Token header)")
    p.add_argument("--realtime", action="store_true",
                   help="play files/folders at their frame rate like a camera (late frames are dropped)")
    p.add_argument("--roi", metavar="X,Y,W,H", default=None, help="classify only this region of each frame")
    p.add_argument("--center-crop", action="store_true", help="classify the central square of the frame (or ROI)")
    p.add_argument("--smooth", metavar="ALPHA", type=float, default=None,
                   help="EMA smoothing of probabilities over frames; ALPHA in (0,1] is the newest frame's weight")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--size", metavar="WxH", default=None, help="camera capture size, e.g. 1280x720")
    p.add_argument("--reconnect-timeout", type=float, default=30.0,
                   help="seconds to keep retrying a live source that is not there yet or was lost, at most ~1 s "
                        "apart, before giving up (default 30; 0 = retry forever); a stream that sends nothing "
                        "for this long (at most 10 s) counts as lost")
    p.add_argument("--loop", action="store_true",
                   help="play a video file or image folder again from the start at its end (e.g. a soak test)")
    p.add_argument("--report", metavar="PATH.json", default=None, help="write the run summary as JSON")
    p.add_argument("--health", metavar="HOST:PORT", default=None,
                   help="serve GET /healthz here without the dashboard (with --serve it is on that server too): "
                        "200 while results flow, 503 when none for --stale-after seconds")
    p.add_argument("--stale-after", metavar="S", type=float, default=5.0,
                   help="no result for this long: /healthz answers 503 and the systemd watchdog is no longer "
                        "fed (default 5)")
    from .series_cli import add_series_args

    add_series_args(p)
    p.set_defaults(func=cmd_run)

    c = sub.add_parser("classify", help="classify image files (or .npy features) with a bundle",
                       description="Classify image files; prints the top-k labels per file. A features bundle "
                       "(input.kind features) takes .npy arrays: one sample, or N samples (one line each).")
    _add_model_args(c)
    c.add_argument("images", nargs="+", help="image files (.npy arrays for a features bundle)")
    c.add_argument("--json", action="store_true", help="one JSON line per image")
    c.set_defaults(func=cmd_classify)

    from .tune_cli import register as register_tune

    register_tune(sub)


class _IsoFormatter(logging.Formatter):
    """`2026-12-07T06:41:02.123+00:00 WARNING edgecnn: ...`: ISO 8601 with the UTC offset, then the level
    (journald keeps the line as it is and adds its own fields)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        from datetime import datetime

        return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (not the stream of the first call: in-process
    callers and tests replace sys.stderr between runs)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging() -> None:
    import os

    # FFmpeg's own messages ("moov atom not found") would repeat our one-line errors.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    logger = logging.getLogger("edgecnn.runtime")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(_IsoFormatter("%(asctime)s %(levelname)s edgecnn: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:  # OpenCV's own warnings (failed opens) would repeat our one-line errors
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):
        pass


def _apply_device_profile(args: argparse.Namespace) -> dict | None:
    """--device PROFILE: fill unset backend/precision/threads/source from edgecnn.devices."""
    if not args.device:
        return None
    from ..errors import EdgeCNNError

    try:
        from ..devices.profiles import apply_profile, load_profile
    except ImportError:
        raise EdgeCNNError("--device needs edgecnn.devices, which this installation lacks") from None
    profile = load_profile(args.device)
    applied = apply_profile(args, profile)
    if applied:
        shown = ", ".join(f"{k}={v}" for k, v in applied.items())
        print(f"edgecnn: device profile {args.device}: {shown}", file=sys.stderr)
    return profile


def _open_classifier(args: argparse.Namespace, profile: dict | None) -> Any:
    from ..errors import EdgeCNNError
    from .classifier import Classifier

    backend = args.backend or "auto"
    precision = args.precision or "auto"
    try:
        return Classifier(args.bundle, backend=backend, precision=precision, threads=args.threads, top_k=args.top_k)
    except EdgeCNNError as e:
        fallback = ((profile or {}).get("runtime") or {}).get("fallback_backend")
        if not fallback or fallback == backend:
            raise
        print(f"edgecnn: {e}; trying the profile's fallback backend {fallback}", file=sys.stderr)
        return Classifier(args.bundle, backend=fallback, precision="auto", threads=args.threads, top_k=args.top_k)


def _stop_on_signals(stop: Any) -> None:
    """SIGTERM (`kill`, systemd stop) and SIGINT (Ctrl-C) set `stop`: the run ends between two results
    (summary printed, video saved, no record half written); a second signal interrupts at once."""

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    try:
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass


def _size(text: str | None) -> tuple[int | None, int | None]:
    from ..errors import EdgeCNNError

    if not text:
        return None, None
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or int(w) < 1 or int(h) < 1:
        raise EdgeCNNError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720")
    return int(w), int(h)


def cmd_run(args: argparse.Namespace) -> int:
    import os
    import threading

    from ..errors import EdgeCNNError
    from .app import RunOptions, check_options, open_run_sources, parse_roi, run

    _setup_logging()
    profile = _apply_device_profile(args)
    if isinstance(args.source, str):  # a device profile's camera
        args.source = [args.source]
    if not args.source:
        raise EdgeCNNError("--source is required (a camera index, /dev/videoN, csi://0, a video, a folder, a URL)")
    from .series_cli import run_if_series

    status = run_if_series(args, profile, _open_classifier, _stop_on_signals)  # series bundles run there
    if status is not None:
        return status
    width, height = _size(args.size)
    sources = [str(s) for s in args.source]
    opts = RunOptions(
        source=sources[0] if len(sources) == 1 else sources, top_k=args.top_k, headless=args.headless,
        save=args.save, serve=args.serve,
        realtime=args.realtime, roi=parse_roi(args.roi) if args.roi else None, center_crop=args.center_crop,
        smooth=args.smooth, max_frames=args.max_frames, report=args.report,
        reconnect_timeout=args.reconnect_timeout, width=width, height=height,
        max_viewers=args.max_viewers, serve_token=args.serve_token, device=args.device, loop=args.loop,
        health=args.health, stale_after=args.stale_after, latency_mode=args.latency_mode,
        predictions=args.predictions, predictions_max_bytes=int(args.predictions_max_mb * 2**20),
        predictions_keep=args.predictions_keep,
    )
    check_options(opts)
    from ..bundle import Bundle

    if Bundle.load(args.bundle).input.get("kind") == "features":  # a bad bundle is reported before a camera opens
        raise EdgeCNNError(f"{args.bundle}: this bundle takes features, not frames: classify .npy arrays with "
                           f"`edgecnn classify {args.bundle} x.npy` (or Classifier.predict_features)")
    stop = threading.Event()
    _stop_on_signals(stop)  # from here on a stop request is honoured: sources connect in their threads
    sources = open_run_sources(opts)
    try:
        clf = _open_classifier(args, profile)
    except BaseException:
        for s in sources:
            s.close()
        raise
    d = clf.describe()
    shown = "; ".join(f"{s.describe}{f', {s.frame_count} frames' if s.frame_count else ''}" for s in sources)
    opts.banner = (f"edgecnn: {d['name']}: {d['backend']} {d['version']}, {d['artifact']} ({d['precision']}, "
                   f"threads {d['threads'] or 'default'}; {d['why']}); source: {shown}")
    error: EdgeCNNError | None = None
    try:
        run(clf, opts, sources, stop=stop)
    except EdgeCNNError as e:
        error = e
    finally:
        clf.close()
    if any(s.abandoned for s in sources):
        # A capture thread is still blocked in a read (FFmpeg, a driver): the summary and the report are
        # written; leave now, without running the libraries' exit handlers under that thread.
        if error is not None:
            print(f"edgecnn: error: {error}", file=sys.stderr)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2 if error is not None else 0)
    if error is not None:
        raise error
    return 0


def _classified(clf, paths: list[str]):
    """(name, Prediction) per image file, or per sample of each .npy file for a features bundle."""
    import numpy as np

    from ..errors import EdgeCNNError
    from ..preprocess import input_kind, preprocess_features

    if input_kind(clf.input_spec) != "features":
        for path in paths:
            yield path, clf.predict(path)
        return
    for path in paths:
        if not str(path).endswith(".npy"):
            raise EdgeCNNError(f"{path}: this bundle takes features (.npy arrays of shape {clf.input_spec['shape']} "
                               "or [N, ...]), not images")
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise EdgeCNNError(f"{path}: not a readable .npy array ({str(e).splitlines()[0][:120]}); this bundle "
                               f"takes features of shape {clf.input_spec['shape']}") from None
        batch = preprocess_features(arr, clf.input_spec)
        for i, sample in enumerate(batch):
            yield (path if len(batch) == 1 else f"{path}[{i}]"), clf.predict_features(sample)


def cmd_classify(args: argparse.Namespace) -> int:
    from ..errors import EdgeCNNError

    _setup_logging()
    profile = _apply_device_profile(args)
    if args.top_k < 1:
        raise EdgeCNNError(f"--top-k must be at least 1, got {args.top_k}")
    clf = _open_classifier(args, profile)
    try:
        for path, result in _classified(clf, args.images):
            if args.json:
                print(json.dumps({"file": path, **result.to_dict()}, separators=(",", ":")), flush=True)
            else:
                shown = ", ".join(f"{label} {100 * p:.1f}%" for label, p in result.top)
                print(f"{path}: {shown}", flush=True)
        d = clf.describe()  # after the results, so that a bad image stays a one-line error
        print(f"edgecnn: classified with {d['backend']} {d['precision']} {d['artifact']}, threads "
              f"{d['threads'] or 'default'}: {d['why']}", file=sys.stderr)
    finally:
        clf.close()
    return 0

"""The series side of `edgecnn run`: its flags, and the dispatch from the image app. No torch here.

`runtime/cli.py` calls `add_series_args(run_parser)` and, in `cmd_run`, `run_if_series(...)`, which runs a
series bundle (edgecnn.runtime.series_app) and refuses a series source for an image bundle, or image-only
flags for a series bundle, with one line.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any, Callable

# image-only flags of `run`: (dest, flag, its "unset" value)
_IMAGE_ONLY = (("roi", "--roi", None), ("center_crop", "--center-crop", False), ("save", "--save", None),
               ("size", "--size", None), ("smooth", "--smooth", None), ("latency_mode", "--latency-mode", None))
_SERIES_ONLY = (("hop", "--hop", None), ("average", "--average", None), ("threshold", "--threshold", None),
                ("suppress", "--suppress", None), ("resample", "--resample", False))


def add_series_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("series bundles (sensors, audio): SOURCE csv:FILE, wav:FILE, "
                             "serial:///dev/ttyUSB0?baud=115200, mic://")
    g.add_argument("--hop", type=int, default=None,
                   help="samples between the starts of two windows (default: a quarter of the bundle's window)")
    g.add_argument("--average", metavar="N", type=int, default=None,
                   help="smoothing: mean of the probabilities of the last N windows (default 3)")
    g.add_argument("--threshold", metavar="P", type=float, default=None,
                   help="smoothing: averaged probability a detection must exceed (default 0.5)")
    g.add_argument("--suppress", metavar="SECONDS", type=float, default=None,
                   help="smoothing: the same label is not detected again for this long (default: one window)")
    g.add_argument("--resample", action="store_true",
                   help="convert a WAV at another sample rate to the bundle's (refused without this flag)")


def _given(args: argparse.Namespace, flags: tuple) -> list[str]:
    return [flag for dest, flag, unset in flags if getattr(args, dest, unset) != unset]


def run_if_series(args: argparse.Namespace, profile: dict | None,
                  open_classifier: Callable[[argparse.Namespace, dict | None], Any],
                  stop_on_signals: Callable[[threading.Event], None] = lambda stop: None) -> int | None:
    """Run `args` if the bundle is a series bundle (exit status); None for an image bundle (after
    refusing a series source or series flags for it). `open_classifier` and `stop_on_signals` (SIGTERM
    and Ctrl-C set the event: the run ends between two windows) are the image app's, so that both kinds
    behave alike."""
    from ..bundle import Bundle
    from ..errors import EdgeCNNError
    from ..series import is_series
    from .series_sources import is_series_uri

    bundle = Bundle.load(args.bundle)
    sources = [args.source] if isinstance(args.source, str) else list(args.source)
    if not is_series(bundle.input):
        for uri in sources:
            if is_series_uri(uri):
                raise EdgeCNNError(f"{bundle.name} is an image bundle; {uri} is a sensor/audio source "
                                   "(a series bundle reads it)")
        wrong = _given(args, _SERIES_ONLY)
        if wrong:
            raise EdgeCNNError(f"{wrong[0]} is for series bundles; {bundle.name} is an image bundle")
        return None
    wrong = _given(args, _IMAGE_ONLY)
    if wrong:
        raise EdgeCNNError(f"{wrong[0]} is for image bundles; {bundle.name} takes series windows")
    if len(sources) != 1:
        raise EdgeCNNError(f"a series run reads one --source, got {len(sources)}")

    from .series_app import SeriesOptions, check_series_options, open_run_series_source, run_series

    opts = SeriesOptions(
        source=str(sources[0]), hop=args.hop, average=3 if args.average is None else args.average,
        threshold=0.5 if args.threshold is None else args.threshold, suppress=args.suppress,
        resample=args.resample, top_k=args.top_k, headless=args.headless, serve=args.serve,
        max_viewers=args.max_viewers, serve_token=args.serve_token, device=args.device, realtime=args.realtime,
        loop=args.loop, max_windows=args.max_frames, report=args.report, reconnect_timeout=args.reconnect_timeout,
        health=args.health, stale_after=args.stale_after, predictions=args.predictions,
        predictions_max_bytes=int(args.predictions_max_mb * 2**20), predictions_keep=args.predictions_keep,
    )
    check_series_options(opts)  # bad options are reported before a port or a model is opened
    if opts.suppress is not None and not bundle.input.get("sample_rate"):
        raise EdgeCNNError("--suppress is in seconds, and this bundle records no sample rate")
    stop = threading.Event()
    stop_on_signals(stop)
    source = open_run_series_source(bundle.input, opts)
    try:
        clf = open_classifier(args, profile)
    except BaseException:
        source.close()
        raise
    d = clf.describe()
    opts.banner = (f"edgecnn: {d['name']}: {d['backend']} {d['version']}, {d['artifact']} ({d['precision']}, "
                   f"threads {d['threads'] or 'default'}; {d['why']}); source: {source.describe}, windows of "
                   f"{clf.input_spec['length']} samples every {source.windows.hop}")
    try:
        run_series(clf, opts, source, stdout=sys.stdout, stderr=sys.stderr, stop=stop)
    finally:
        clf.close()
    return 0

"""Profile reports: the versioned JSON schema "edgecnn.profile/1", console/Markdown tables, comparisons.

A report (one `edgecnn profile` run) is a JSON object:

    schema        "edgecnn.profile/1"
    tool          "edgecnn 0.1.0"
    created       ISO 8601 UTC time
    bundle        {path, name, model, input: {height, width, channels} | {kind: features, shape}, params, macs}
    environment   see environment.environment_record (board, CPU, governor/clock, temperatures, OS, versions)
    settings      {runs (int|null), duration_s (float|null), warmup, batch, per_op, device_profile (str|null)}
    results       one per configuration (artifact x backend x threads):
        artifact, format, precision, backend, backend_version, threads (int|null = backend default), batch,
        options {backend options as opened}, file_size_bytes,
        cold_start    {load_ms, first_inference_ms}
        latency_ms    {count, p50, p90, p99, mean, std, min, max}   (model time only: run_raw on a prepared input)
        throughput    {inferences_per_s, images_per_s}              (1000 / mean latency, x batch)
        memory        {rss_before_load_mb, rss_after_load_mb, peak_rss_mb (whole process),
                       model_rss_mb (peak minus before load: what this model added; null without psutil),
                       method ("psutil" | "getrusage": lifetime peak only)}
        samples_ms    every measured latency, in order (for plots and re-analysis)
        per_op        null (not asked) | {available: true, source, runs, total_ms_per_run, by_type[], top_nodes[]}
                      | {available: false, reason}
    skipped       [{artifact, backend, reason}]: configurations that could not run here, listed, not hidden
    remote        (only in reports fetched by `edgecnn profile --on ssh://...`) {target, board, hostname, python, edgecnn}

`read_report` validates a file and says in one line what is wrong with it (another tool's JSON, an
older or newer schema, a missing field).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..errors import EdgeCNNError
from ..utils import atomic_write_json, atomic_write_text
from .environment import environment_summary
from .stats import STAT_KEYS, format_ms

SCHEMA = "edgecnn.profile/1"
SCHEMA_FAMILY = "edgecnn.profile/"


def _need(d: Any, key: str, where: str, types: type | tuple, nullable: bool = False) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise EdgeCNNError(f"{where}: missing field '{key}'")
    v = d[key]
    if v is None and nullable:
        return None
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,))):
        raise EdgeCNNError(f"{where}: field '{key}' has the wrong type ({type(v).__name__})")
    return v


def validate_report(report: Any, where: str = "report") -> dict:
    """Check a report against edgecnn.profile/1; raise EdgeCNNError with one line naming the problem."""
    if not isinstance(report, dict):
        raise EdgeCNNError(f"{where}: not an edgecnn profile report (the JSON is not an object)")
    schema = report.get("schema")
    if not isinstance(schema, str) or not schema.startswith(SCHEMA_FAMILY):
        raise EdgeCNNError(
            f"{where}: not an edgecnn profile report (schema {schema!r}, expected {SCHEMA!r}); "
            "was it written by another tool?"
        )
    if schema != SCHEMA:
        raise EdgeCNNError(f"{where}: report schema {schema!r} is not supported by this edgecnn (reads {SCHEMA!r}); "
                           "re-run `edgecnn profile` with this version")
    _need(report, "bundle", where, dict)
    _need(report, "environment", where, dict)
    _need(report, "settings", where, dict)
    _need(report, "skipped", where, list)
    results = _need(report, "results", where, list)
    for i, r in enumerate(results):
        w = f"{where}: results[{i}]"
        for key in ("artifact", "format", "precision", "backend"):
            _need(r, key, w, str)
        _need(r, "threads", w, int, nullable=True)
        _need(r, "batch", w, int)
        _need(r, "file_size_bytes", w, int)
        _need(r, "cold_start", w, dict)
        lat = _need(r, "latency_ms", w, dict)
        for key in STAT_KEYS:
            _need(lat, key, f"{w}.latency_ms", (int, float))
        if lat["count"] < 1:
            raise EdgeCNNError(f"{w}.latency_ms: count must be at least 1")
        if not lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]:
            raise EdgeCNNError(f"{w}.latency_ms: percentiles are not ordered (min <= p50 <= p90 <= p99 <= max)")
        _need(r, "throughput", w, dict)
        _need(r, "memory", w, dict)
        samples = _need(r, "samples_ms", w, list)
        if len(samples) != lat["count"]:
            raise EdgeCNNError(f"{w}: samples_ms has {len(samples)} values but latency_ms.count is {lat['count']}")
        _need(r, "per_op", w, dict, nullable=True)
    return report


def read_report(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise EdgeCNNError(f"report not found: {path}")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EdgeCNNError(f"{path}: not a JSON file ({e})") from None
    return validate_report(report, str(path))


def write_report(path: str | Path, report: dict) -> Path:
    validate_report(report, "report being written")
    atomic_write_json(path, report)
    return Path(path)


def new_report(bundle: dict, environment: dict, settings: dict, results: list[dict], skipped: list[dict],
               created: str) -> dict:
    return {"schema": SCHEMA, "tool": f"edgecnn {__version__}", "created": created, "bundle": bundle,
            "environment": environment, "settings": settings, "results": results, "skipped": skipped}


# ---------------------------------------------------------------- tables


def _threads(r: dict) -> str:
    return "default" if r.get("threads") is None else str(r["threads"])


def _mb(nbytes: float | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 1e6:.3f}"


def _peak(r: dict) -> str:
    peak = (r.get("memory") or {}).get("peak_rss_mb")
    return "-" if peak is None else f"{peak:.0f}"


def _model_mb(r: dict) -> str:
    added = (r.get("memory") or {}).get("model_rss_mb")
    return "-" if added is None else f"{added:.1f}"


RESULT_HEADER = ["artifact", "backend", "precision", "threads", "batch", "size MB", "load ms", "first ms",
                 "p50 ms", "p90 ms", "p99 ms", "mean ms", "std ms", "FPS", "peak RSS MB", "+model MB"]


def result_row(r: dict) -> list[str]:
    lat, cold = r["latency_ms"], r["cold_start"]
    return [r["artifact"], r["backend"], r["precision"], _threads(r), str(r["batch"]), _mb(r["file_size_bytes"]),
            format_ms(cold.get("load_ms")), format_ms(cold.get("first_inference_ms")),
            format_ms(lat["p50"]), format_ms(lat["p90"]), format_ms(lat["p99"]), format_ms(lat["mean"]),
            format_ms(lat["std"]), f"{r['throughput']['images_per_s']:.1f}", _peak(r), _model_mb(r)]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned table for the console."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _skipped_lines(report: dict) -> list[str]:
    return [f"skipped {s.get('artifact', '?')} on {s.get('backend', '?')}: {s.get('reason', '')}"
            for s in report.get("skipped", [])]


def _settings_line(report: dict) -> str:
    s = report["settings"]
    how = f"{s['runs']} runs" if s.get("runs") else f"{s.get('duration_s')} s per configuration"
    return (f"{how} after {s.get('warmup')} warm-up runs, batch {s.get('batch')}; latency = model call only "
            "(input prepared beforehand)")


def model_line(bundle: dict) -> str:
    """'model ad01: input features [640], 270,400 parameters, 264,192 MACs' (counts when known)."""
    inp = bundle.get("input") or {}
    shown = (f"features {inp.get('shape')}" if inp.get("kind") == "features" else
             f"{inp.get('channels')}x{inp.get('height')}x{inp.get('width')}")
    counts = "parameters and MACs not counted" if bundle.get("params") is None else \
        f"{bundle['params']:,} parameters, {bundle['macs']:,} MACs per sample"
    return f"model {bundle.get('model')}: input {shown}, {counts}"


def console_summary(report: dict) -> str:
    lines = [f"{report['bundle'].get('name')}: {environment_summary(report['environment'])}",
             model_line(report["bundle"]), _settings_line(report), ""]
    lines.append(text_table(RESULT_HEADER, [result_row(r) for r in report["results"]]))
    for r in report["results"]:
        op = r.get("per_op")
        if op is None:
            continue
        lines.append("")
        lines.append(f"per-op {r['artifact']} ({r['backend']}, threads {_threads(r)}):")
        if not op.get("available"):
            lines.append(f"  not available: {op.get('reason')}")
            continue
        rows = [[t["op_type"], str(t["nodes"]), format_ms(t["ms_per_run"]), f"{t['percent']:.1f}"]
                for t in op["by_type"]]
        lines.append(text_table(["op type", "nodes", "ms/run", "%"], rows))
    lines += [""] + _skipped_lines(report) if report.get("skipped") else []
    return "\n".join(lines)


def markdown_report(report: dict) -> str:
    b, env = report["bundle"], report["environment"]
    lines = [f"# Latency profile: {b.get('name')}", "",
             f"- created: {report.get('created')} by {report.get('tool')}",
             f"- bundle: `{b.get('path')}` ({model_line(b)})",
             f"- environment: {environment_summary(env)}",
             f"- libraries: {', '.join(f'{k} {v}' for k, v in (env.get('libraries') or {}).items())}",
             f"- method: {_settings_line(report)}", "",
             markdown_table(RESULT_HEADER, [result_row(r) for r in report["results"]])]
    for r in report["results"]:
        op = r.get("per_op")
        if op is None:
            continue
        lines += ["", f"## Per-operator: {r['artifact']} on {r['backend']} (threads {_threads(r)})", ""]
        if not op.get("available"):
            lines.append(f"Not available: {op.get('reason')}")
            continue
        lines.append(f"{op['source']}, mean of {op['runs']} runs; node time {format_ms(op['total_ms_per_run'])} ms/run.")
        lines += ["", markdown_table(["op type", "nodes", "ms/run", "%"],
                                     [[t["op_type"], t["nodes"], format_ms(t["ms_per_run"]), f"{t['percent']:.1f}"]
                                      for t in op["by_type"]])]
        lines += ["", markdown_table(["slowest nodes", "op type", "ms/run", "%"],
                                     [[n["name"], n["op_type"], format_ms(n["ms_per_run"]), f"{n['percent']:.1f}"]
                                      for n in op["top_nodes"]])]
    if report.get("skipped"):
        lines += ["", "## Not run here", ""] + [f"- {s}" for s in _skipped_lines(report)]
    return "\n".join(lines) + "\n"


def write_markdown(path: str | Path, report: dict) -> Path:
    atomic_write_text(path, markdown_report(report))
    return Path(path)


# ---------------------------------------------------------------- comparisons (edgecnn report)


def device_label(report: dict) -> str:
    env = report["environment"]
    cpu = (env.get("cpu") or {}).get("model")
    label = env.get("board") or cpu or env.get("hostname") or "?"
    remote = report.get("remote")  # fetched from a board by `profile --on`: say which one
    return f"{label} @ {remote.get('board') or remote.get('target')}" if isinstance(remote, dict) else label


COMPARE_HEADER = ["device", "bundle", "artifact", "backend", "precision", "threads", "batch", "p50 ms", "p90 ms",
                  "p99 ms", "FPS", "load ms", "peak RSS MB", "size MB"]


def compare_rows(reports: Sequence[dict]) -> list[list[str]]:
    rows = []
    for rep in reports:
        for r in rep["results"]:
            lat = r["latency_ms"]
            rows.append([device_label(rep), rep["bundle"].get("name") or "?", r["artifact"], r["backend"],
                         r["precision"], _threads(r), str(r["batch"]), format_ms(lat["p50"]), format_ms(lat["p90"]),
                         format_ms(lat["p99"]), f"{r['throughput']['images_per_s']:.1f}",
                         format_ms(r["cold_start"].get("load_ms")), _peak(r), _mb(r["file_size_bytes"])])
    return rows


def compare_markdown(reports: Sequence[dict], sources: Sequence[str]) -> str:
    lines = ["# Latency comparison", ""]
    for src, rep in zip(sources, reports):
        lines.append(f"- `{src}`: {environment_summary(rep['environment'])} ({rep.get('created')}, "
                     f"{_settings_line(rep)})")
    lines += ["", markdown_table(COMPARE_HEADER, compare_rows(reports))]
    skipped = [f"{device_label(rep)}: {s}" for rep in reports for s in _skipped_lines(rep)]
    if skipped:
        lines += ["", "Not run:", ""] + [f"- {s}" for s in skipped]
    return "\n".join(lines) + "\n"

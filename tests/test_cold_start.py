"""Cold start (issue 26): no work at import time, only the backend a start uses is imported, versions read
without importlib.metadata. Each check runs in a fresh interpreter: what this one imported counts for nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from edgecnn.runtime import Classifier
from edgecnn.runtime.backends import _version, available_backends

REPO = Path(__file__).resolve().parents[1]
BACKEND_MODULES = {"onnxruntime": ("onnxruntime",), "litert": ("ai_edge_litert", "tflite_runtime"),
                   "openvino": ("openvino",), "tensorrt": ("tensorrt", "tensorrt_rtx")}
# Imported by nothing on the device side's import chain: backends, torch, and what rare features need.
NOT_AT_IMPORT = ("onnxruntime", "ai_edge_litert", "tflite_runtime", "openvino", "tensorrt", "torch",
                 "importlib.metadata", "email", "logging", "tempfile", "shutil")
RUN_NOT_AT_IMPORT = ("onnxruntime", "ai_edge_litert", "tflite_runtime", "openvino", "tensorrt", "torch",
                     "importlib.metadata", "email", "http", "logging.handlers")


def _child(code: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])


def _loaded(names) -> str:
    return (f"sorted(m for m in sys.modules if any(m == n or m.startswith(n + '.') for n in {tuple(names)!r}))")


def test_device_side_imports_do_no_heavy_work():
    """`from edgecnn.runtime import Classifier` (and the bundle, preprocess, series modules) imports no
    backend, nor importlib.metadata, logging or tempfile: those come when a feature that needs them runs."""
    got = _child(f"""
import json, sys
from edgecnn.runtime import Classifier
import edgecnn.bundle, edgecnn.preprocess, edgecnn.series, edgecnn.runtime.tune
print(json.dumps({{"loaded": {_loaded(NOT_AT_IMPORT)}}}))
""")
    assert got["loaded"] == []


def test_edgecnn_run_modules_import_no_backend_and_no_server():
    """`edgecnn run`'s parser and app modules: no backend, no http.server (only `--health` starts one), no
    logging.handlers (only `--predictions` rotates a file), no importlib.metadata."""
    got = _child(f"""
import json, sys
from edgecnn.cli import build_parser
build_parser()
import edgecnn.runtime.app, edgecnn.runtime.sinks, edgecnn.runtime.health
print(json.dumps({{"loaded": {_loaded(RUN_NOT_AT_IMPORT)}}}))
""")
    assert got["loaded"] == []


def test_a_cached_start_imports_only_the_backends_it_opens(digits_bundle):
    """With the tune cached, `Classifier(bundle)` opens its chosen backend; the runner-up's only when the
    start-up re-check needed it; no other backend module is even imported."""
    Classifier(digits_bundle).close()  # the tune over every installed backend, cached
    got = _child(f"""
import json, sys
from edgecnn.runtime import Classifier
clf = Classifier({str(digits_bundle)!r})
m = clf.selection.measurement
print(json.dumps({{"hit": m["hit"], "check": m.get("revalidation"), "backend": clf.describe()["backend"],
                  "loaded": {_loaded([n for v in BACKEND_MODULES.values() for n in v])}}}))
""")
    assert got["hit"] is True
    allowed = set(BACKEND_MODULES[got["backend"]])
    if "runner_up_ms" in got["check"]:  # the runner-up was opened and timed: its backend too
        allowed |= {n for b, names in BACKEND_MODULES.items() if got["check"]["runner_up"].startswith(b)
                    for n in names}
    top = {m.split(".")[0] for m in got["loaded"]}
    assert top & set(BACKEND_MODULES[got["backend"]]) and top <= allowed, got


@pytest.mark.parametrize("backend", [b for b, v in available_backends().items() if v])
def test_backend_versions_equal_importlib_metadata(backend):
    """The fast path (the wheel's NAME-VERSION.dist-info directory) says what importlib.metadata says."""
    dist = {"onnxruntime": "onnxruntime", "litert": "ai-edge-litert", "openvino": "openvino",
            "tensorrt": "tensorrt"}[backend]
    module = BACKEND_MODULES[backend][0]
    assert _version(module, dist) == metadata.version(dist)
    assert available_backends()[backend].split()[-1] == metadata.version(dist)


@pytest.mark.skipif(not available_backends()["openvino"], reason="needs OpenVINO (the dev extra installs it)")
def test_opening_openvino_leaves_its_model_converter_unimported():
    """OpenVINO's __init__ imports its converter (absl, numpy.ma...: ~125 ms); the runtime hides it for that
    import, runs the model, and `openvino.convert_model` still resolves when someone asks for it."""
    got = _child(f"""
import json, sys
import numpy as np
from edgecnn.runtime import Classifier
with Classifier({str(REPO / 'export' / 'lenet5-digits')!r}, backend="openvino", precision="fp32", threads=1) as c:
    label = c.predict({str(REPO / 'export' / 'lenet5-digits' / 'samples' / '0_0.png')!r}).label
loaded = {_loaded(["openvino.tools.ovc", "absl"])}
import openvino
from openvino import convert_model
print(json.dumps({{"label": label, "loaded": loaded, "convert_model": convert_model.__module__,
                  "same": openvino.convert_model is convert_model}}))
""")
    assert got == {"label": "0", "loaded": [], "convert_model": "openvino.tools.ovc.convert", "same": True}

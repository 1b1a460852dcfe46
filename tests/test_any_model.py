"""Any model in (issue 12): the registry, export_model of a user's module, portable checkpoints,
import-model of foreign ONNX/TFLite files (Teachable Machine included), bare-file profiling, timm."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from torch import nn

from edgecnn.data import load_dataset
from edgecnn.errors import EdgeCNNError

REPO = Path(__file__).resolve().parents[1]
MEAN, STD = 0.1323, 0.2918  # the embedded digits' statistics


class UserNet(nn.Module):
    """What a user writes: conv-BN-ReLU, a residual block with an add, global pooling, linear."""

    def __init__(self, width: int = 12):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                   nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.relu = nn.ReLU()
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * width, 10))

    def forward(self, x):
        x = self.stem(x)
        return self.head(self.relu(x + self.block(x)))


def _tensor(images: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(np.asarray(images)).float()[:, None] / 255.0 - MEAN) / STD


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    xtr, ytr = (np.asarray(v) for v in ds.split("train"))
    xte, yte = (np.asarray(v) for v in ds.split("test"))
    return ds, xtr, ytr, xte, yte


@pytest.fixture(scope="module")
def user_model(digits):
    """UserNet trained in a plain torch loop (2 epochs of the 3,600 real training digits)."""
    _, xtr, ytr, _, _ = digits
    torch.manual_seed(0)
    model = UserNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = _tensor(xtr), torch.from_numpy(ytr).long()
    for _ in range(2):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def _torch_acc(model, images, labels) -> float:
    with torch.no_grad():
        return float((model(_tensor(images)).argmax(1).numpy() == labels).mean())


# ------------------------------------------------------------------ registry


def test_register_model_user_builder_and_torchvision_by_name():
    from edgecnn.models import MODELS, build_model, get_spec, list_models, register_model

    @register_model(name="test_usernet", input_size=20, in_channels=1, classifier="head.3")
    def usernet(num_classes=10, in_channels=1):
        """A user's residual net."""
        return UserNet()

    try:
        spec = get_spec("test_usernet")
        assert (spec.source, spec.color, spec.default_input_size, spec.description) == (
            "user", "GRAY", 20, "A user's residual net.")
        assert isinstance(build_model("test_usernet", 10, 1).get_submodule(spec.classifier), nn.Linear)  # head.3
        with pytest.raises(EdgeCNNError, match="already registered"):
            register_model(usernet, name="test_usernet")
    finally:
        MODELS.pop("test_usernet")
    import torchvision.models as tvm

    every = list_models(all=True)
    assert set(tvm.list_models(module=tvm)) <= set(every)
    sq = get_spec("squeezenet1_1")
    assert (sq.source, sq.mean, sq.classifier) == ("torchvision", (0.485, 0.456, 0.406), "classifier.1")
    m = build_model("squeezenet1_1", 7, 1, small_input=True).eval()
    assert m(torch.zeros(1, 1, 32, 32)).shape == (1, 7)
    assert m.get_submodule("classifier.1").out_channels == 7
    with pytest.raises(EdgeCNNError, match="unknown model 'nosuchnet'"):
        get_spec("nosuchnet")


def test_no_import_circles():
    """Module-level and function-level imports inside edgecnn form no cycle between two modules."""
    mods = {}
    for p in (REPO / "edgecnn").rglob("*.py"):
        parts = list(p.relative_to(REPO).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph: dict[str, set[str]] = {}
    for mod, p in mods.items():
        base = mod.split(".") if p.name == "__init__.py" else mod.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                pkg = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module or ""
                deps |= {f"{pkg}.{a.name}" if f"{pkg}.{a.name}" in mods else pkg for a in node.names}
        graph[mod] = {d for d in deps if d in mods and d != mod and mods[d].name != "__init__.py"}

    def reaches(a: str, b: str) -> bool:
        seen, stack = set(), [a]
        while stack:
            for y in graph.get(stack.pop(), ()):
                if y == b:
                    return True
                if y not in seen:
                    seen.add(y)
                    stack.append(y)
        return False

    cycles = sorted({tuple(sorted((m, d))) for m in graph for d in graph[m] if reaches(d, m)})
    assert cycles == []


# ------------------------------------------------------------------ export_model + portable checkpoints


def test_export_model_user_module_verified_int8_and_cli_verify(user_model, digits, tmp_path):
    import edgecnn

    ds, xtr, ytr, xte, yte = digits
    # test= by name: the manifest records the accuracy on 'digits', which `edgecnn verify --data digits`
    # compares with on a device that has no PyTorch model (numpy arrays would leave it nothing to compare)
    out = edgecnn.export_model(user_model, tmp_path / "bundle", input_size=(1, 20, 20), classes=ds.classes,
                               mean=[MEAN], std=[STD], calib=xtr[:200], test="digits", int8=True,
                               formats=("onnx", "tflite"))
    manifest = json.loads((out / "manifest.json").read_text())
    acc = _torch_acc(user_model, xte, yte)
    assert acc > 0.5  # trained on real data, not chance
    arts = {a["file"]: a["verified"] for a in manifest["artifacts"]}
    assert set(arts) == {"model.onnx", "model.int8.onnx", "model.tflite", "model.int8.tflite"}
    for f in ("model.onnx", "model.tflite"):
        assert abs(arts[f]["accuracy"] - acc) <= 0.001 and arts[f]["top1_agreement"] >= 0.999
    for f in ("model.int8.onnx", "model.int8.tflite"):  # export_model fails above max_drop=1.0
        assert arts[f]["drop_points"] <= 1.0
    assert manifest["model"]["name"] == "UserNet" and manifest["source"]["module"].endswith("UserNet")
    assert "live module" in (out / "REPORT.md").read_text()
    assert run_cli("verify", out, "--data", "digits", "--eval-limit", "300") == 0


def test_export_model_without_test_is_parity_only(user_model, digits, tmp_path):
    import edgecnn

    ds, xtr, *_ = digits
    out = edgecnn.export_model(user_model, tmp_path / "b", input_size=(1, 20, 20), classes=ds.classes,
                               mean=[MEAN], std=[STD], calib=xtr[:100], formats="onnx")
    manifest = json.loads((out / "manifest.json").read_text())
    v = manifest["artifacts"][0]["verified"]
    assert manifest["verification"]["accuracy_measured"] is False and v["accuracy"] is None
    assert v["top1_agreement"] == 1.0 and v["samples"] == 100
    assert "Accuracy was not measured" in (out / "REPORT.md").read_text()


def test_portable_checkpoint_runs_without_the_users_code(user_model, digits, tmp_path):
    import edgecnn

    ds, *_ , xte, yte = digits
    ckpt = edgecnn.save_checkpoint(user_model, tmp_path / "usernet.pt", input_size=(1, 20, 20), classes=ds.classes,
                                   mean=[MEAN], std=[STD], dataset="digits")
    assert torch.load(ckpt, weights_only=True)["model"]["kind"] == "exported_program"
    # A fresh interpreter that has never seen UserNet's code evaluates it.
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "edgecnn", "eval", str(ckpt), "--json"], capture_output=True,
                       text=True, env=env, cwd=tmp_path, timeout=1200)
    assert p.returncode == 0, p.stderr
    assert abs(json.loads(p.stdout)["top1"] - _torch_acc(user_model, xte, yte)) < 1e-6  # the same images right


def test_export_model_bad_input_is_one_clear_error(tmp_path):
    import edgecnn

    class Branchy(nn.Module):  # data-dependent control flow: torch.export cannot trace it
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(400, 10)

        def forward(self, x):
            if x.sum() > 0:
                return self.fc(x.flatten(1))
            return -self.fc(x.flatten(1))

    kw = dict(input_size=(1, 20, 20), classes=[str(i) for i in range(10)], mean=[0.1], std=[0.3], calib="digits")
    with pytest.raises(EdgeCNNError, match="does not trace with torch.export"):
        edgecnn.export_model(Branchy(), tmp_path / "x", **kw)
    with pytest.raises(EdgeCNNError, match="outputs 10 classes but `classes` names 3"):
        edgecnn.export_model(UserNet(), tmp_path / "x", **{**kw, "classes": ["a", "b", "c"]})
    with pytest.raises(EdgeCNNError, match="int8 needs calibration"):
        edgecnn.export_model(UserNet(), tmp_path / "x", **{**kw, "calib": None}, test="digits", int8=True)
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def test_a_model_the_tflite_converter_cannot_lower_is_one_line_and_leaves_nothing(tmp_path):
    import edgecnn

    class Erfinv(nn.Module):  # aten.erfinv has no TFLite lowering in litert-torch (a real converter failure)
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(400, 10)

        def forward(self, x):
            return self.fc(torch.special.erfinv(x.clamp(-0.5, 0.5)).flatten(1))

    with pytest.raises(EdgeCNNError) as err:
        edgecnn.export_model(Erfinv(), tmp_path / "x", input_size=(1, 20, 20), classes=[str(i) for i in range(10)],
                             mean=[0.1], std=[0.3], calib="digits", formats=("tflite",))
    msg = str(err.value)
    assert "litert-torch cannot convert this model to TFLite fp32" in msg and "erfinv" in msg, msg
    assert "\n" not in msg and "site-packages" not in msg
    assert list(tmp_path.iterdir()) == []  # no half bundle, no staging directory


def test_linear_over_a_1x1_map_converts_to_tflite(tmp_path):
    """ConvNeXt's block (permute, LayerNorm, Linear over N,H,W,C) and Swin's bias-free patch merging on a
    1x1 map: what ConvNeXt and Swin have at 32 px. litert-torch rejected both (rank-4 batch_matmul);
    edgecnn converts the Linear over rows (bias-free: as a 1x1 convolution)."""
    from torchvision.models.convnext import CNBlock

    from edgecnn.export.tflite import export_tflite, run_tflite

    torch.manual_seed(0)
    class Merge(nn.Module):  # Swin's PatchMerging reduction: a bias-free Linear over N,H,W,C
        def __init__(self):
            super().__init__()
            self.reduction = nn.Linear(8, 8, bias=False)

        def forward(self, x):
            return self.reduction(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    model = nn.Sequential(nn.Conv2d(1, 8, 16), CNBlock(8, 1.0, 0.0), Merge(), nn.Flatten(), nn.Linear(8, 3)).eval()
    x = np.random.default_rng(0).random((4, 1, 16, 16), dtype=np.float32)
    export_tflite(model, x, tmp_path / "m.tflite")
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.abs(run_tflite(tmp_path / "m.tflite", x) - want).max() < 1e-4
    assert nn.Linear.forward.__qualname__ == "Linear.forward"  # the patch is undone after the conversion


def test_import_is_lazy_and_torch_free():
    code = ("import sys, edgecnn; assert 'torch' not in sys.modules; assert 'export_model' in dir(edgecnn); "
            "edgecnn.Classifier; assert 'torch' not in sys.modules; print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


# ------------------------------------------------------------------ import-model, profile of bare files


def test_import_model_plain_onnx_matches_torch(user_model, digits, tmp_path):
    from edgecnn.runtime import Classifier

    ds, *_, xte, yte = digits
    onnx_file = tmp_path / "user.onnx"
    torch.onnx.export(user_model, (torch.zeros(1, 1, 20, 20),), str(onnx_file), dynamo=True,
                      input_names=["pixels"], output_names=["scores"])
    (tmp_path / "labels.txt").write_text("\n".join(ds.classes) + "\n")
    out = tmp_path / "imported"
    assert run_cli("import-model", onnx_file, "--labels", tmp_path / "labels.txt", "--channels", "1",
                   "--mean", MEAN, "--std", STD, "--data", "digits", "--out", out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    art = manifest["artifacts"][0]
    assert (art["layout"], art["input"]["name"], art["output"]["kind"]) == ("NCHW", "pixels", "logits")
    assert (manifest["input"]["height"], manifest["input"]["width"]) == (20, 20)  # read from the file
    clf = Classifier(out)
    # torch.onnx.export fixed the batch at 1, as the user exported it: one image per call ...
    pred = np.array([clf.predict(im, color_order="RGB").index for im in xte])
    assert abs(float((pred == yte).mean()) - _torch_acc(user_model, xte, yte)) <= 0.001
    # ... and predict_batch runs any batch on it in chunks (7 images: a padded last chunk for any size).
    for backend in ("onnxruntime", "openvino"):
        with Classifier(out, backend=backend, threads=1) as fixed:
            assert fixed.backend.fixed_batch == 1
            batch = [p.index for p in fixed.predict_batch(list(xte[:7]), color_order="RGB")]
            assert batch == list(pred[:7]), backend
    assert abs(art["verified"]["accuracy"] - _torch_acc(user_model, xte, yte)) <= 0.001

    # Bad input: class count against labels, missing labels file; nothing written.
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    assert run_cli("import-model", onnx_file, "--labels", tmp_path / "three.txt", "--out", tmp_path / "n1") == 2
    assert run_cli("import-model", onnx_file, "--labels", tmp_path / "none.txt", "--out", tmp_path / "n2") == 2
    assert not (tmp_path / "n1").exists() and not (tmp_path / "n2").exists()

    assert run_cli("profile", onnx_file, "--runs", "5", "--warmup", "1", "--no-progress") == 0


class _TeachableLike(nn.Module):
    """The shape of a Teachable Machine image model: 224x224 RGB in, class probabilities out."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 8, stride=8)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        return torch.softmax(self.fc(torch.relu(self.conv(x)).mean((2, 3))), dim=1)


def _litert_convert(module: nn.Module, args: tuple, path: Path) -> None:
    import litert_torch

    from edgecnn.export.tflite import _quiet

    with _quiet():
        litert_torch.convert(module.eval(), args).export(str(path))


def test_teachable_machine_tflite_is_a_named_case(tmp_path):
    """A float TFLite that ends in softmax (NHWC, like model_unquant.tflite) + "0 Name" labels."""
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.runtime import Classifier

    torch.manual_seed(0)
    tm = tmp_path / "tm"
    tm.mkdir()
    nhwc = litert_torch.to_channel_last_io(_TeachableLike(), args=[0])
    _litert_convert(nhwc, (torch.zeros(1, 224, 224, 3),), tm / "model_unquant.tflite")
    (tm / "labels.txt").write_text("0 Cat\n1 Dog\n2 Background noise\n")
    out = tmp_path / "bundle"
    assert run_cli("import-model", tm / "model_unquant.tflite", "--labels", tm / "labels.txt", "--out", out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    art, inp = manifest["artifacts"][0], manifest["input"]
    assert manifest["classes"] == ["Cat", "Dog", "Background noise"]
    assert manifest["source"]["teachable_machine"] is True
    assert (art["layout"], art["output"]["kind"]) == ("NHWC", "probs")
    assert (inp["height"], inp["width"], inp["mean"], inp["std"], inp["resize"]) == (
        224, 224, [0.5] * 3, [0.5] * 3, "center_crop")
    # The runtime reports the model's own probabilities (softmax not applied twice).
    img = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    # LiteRT fp32 named: auto may pick OpenVINO bf16 here (top-1 checked, probabilities ~1e-3 apart)
    pred = Classifier(out, backend="litert", precision="fp32").predict(img, color_order="RGB")
    from edgecnn.preprocess import preprocess

    it = Interpreter(model_path=str(tm / "model_unquant.tflite"))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], preprocess(img, inp, "RGB").transpose(1, 2, 0)[None])
    it.invoke()
    direct = it.get_tensor(it.get_output_details()[0]["index"])[0]
    np.testing.assert_allclose(pred.probs, direct, atol=1e-5)


def test_import_tflite_with_two_inputs_is_refused(tmp_path):
    class Two(nn.Module):
        def forward(self, a, b):
            return a.mean((1, 2)) + b.mean((1, 2))

    f = tmp_path / "two.tflite"
    _litert_convert(Two(), (torch.zeros(1, 8, 8, 3), torch.zeros(1, 8, 8, 3)), f)
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    from edgecnn.export.importer import import_model

    with pytest.raises(EdgeCNNError, match="has 2 inputs and 1 outputs"):
        import_model([f], tmp_path / "out", labels=tmp_path / "labels.txt", log=lambda s: None)
    assert run_cli("import-model", f, "--labels", tmp_path / "labels.txt", "--out", tmp_path / "out") == 2
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ timm


def test_timm_model_through_the_registry_exports(digits, tmp_path):
    pytest.importorskip("timm")  # the optional extra edgecnn[timm]; installed in the dev environment
    import edgecnn
    from edgecnn.models import build_model, get_spec

    spec = get_spec("timm:test_efficientnet")
    assert (spec.source, spec.classifier, spec.default_input_size) == ("timm", "classifier", 160)
    model = build_model("timm:test_efficientnet", 10, 1).eval()  # architecture only: offline
    ds, xtr, *_ = digits
    import cv2

    calib = np.stack([cv2.resize(im, (32, 32), interpolation=cv2.INTER_LINEAR) for im in xtr[:50]])
    out = edgecnn.export_model(model, tmp_path / "timm", input_size=(1, 32, 32), classes=ds.classes, mean=[MEAN],
                               std=[STD], calib=calib, formats="onnx", log=lambda s: None)
    v = json.loads((out / "manifest.json").read_text())["artifacts"][0]["verified"]
    assert v["top1_agreement"] == 1.0 and v["max_abs_diff"] < 1e-3

"""The bars of "any model in" (issue 12), measured on real held-out data.

    python benchmarks/any_model_bars.py [--data fashion-mnist] [--epochs 2] [--train-limit 5000] [--out DIR]

1. A plain `torch.onnx.export` file of the module through `edgecnn import-model`:
   `Classifier` accuracy on the test split vs torch's (bar: within 0.1 point).
2. A user's own module (BatchNorm + residual add, 1x28x28), trained in a plain torch loop (no
   edgecnn code), exported with `edgecnn.export_model(..., int8=True, formats=("onnx", "tflite"))`:
   every fp32 artifact's test top-1 vs torch's (bar: within 0.1 point), int8 loss (bar: <= 1 point),
   then `edgecnn verify BUNDLE --data D` must pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


class ResNetLite(nn.Module):
    """What a user writes: conv-BN-ReLU stem, two residual blocks with an add, global pool, linear."""

    def __init__(self, classes: int = 10, width: int = 24):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                    nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(width))
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * width), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(2 * width), nn.ReLU(),
                                    nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(2 * width))
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.pool = nn.Sequential(nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(3), nn.Flatten())
        self.fc = nn.Linear(2 * width * 9, classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.relu1(x + self.block1(x))
        x = self.down(x)
        x = self.relu2(x + self.block2(x))
        return self.fc(self.pool(x))


def plain_training(model: nn.Module, images: np.ndarray, labels: np.ndarray, mean: float, std: float,
                   epochs: int, seed: int = 0) -> None:
    """A plain torch loop, as a user has it: Adam, cross-entropy, shuffled mini-batches."""
    torch.manual_seed(seed)
    x = (torch.from_numpy(images).float()[:, None] / 255.0 - mean) / std
    y = torch.from_numpy(labels).long()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def torch_accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, mean: float, std: float) -> float:
    x = (torch.from_numpy(images).float()[:, None] / 255.0 - mean) / std
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 512]).argmax(1) for i in range(0, len(x), 512)]).numpy()
    return float((pred == labels).mean())


def main() -> int:
    import edgecnn
    from edgecnn.cli import main as cli
    from edgecnn.data import load_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-limit", type=int, default=5000)
    ap.add_argument("--width", type=int, default=16, help="channels of the first stage")
    ap.add_argument("--out", help="working folder (default: a temporary one)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(a.out or tempfile.mkdtemp(prefix="edgecnn-any-model-"))
    work.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(a.data)
    xtr, ytr = ds.split("train")
    xtr, ytr = np.asarray(xtr)[: a.train_limit], np.asarray(ytr)[: a.train_limit]
    xte, yte = (np.asarray(v) for v in ds.split("test"))
    mean, std = float(xtr.mean() / 255.0), float(xtr.std() / 255.0)
    model = ResNetLite(len(ds.classes), a.width)
    t0 = time.perf_counter()
    plain_training(model, xtr, ytr, mean, std, a.epochs)
    acc = torch_accuracy(model, xte, yte, mean, std)
    print(f"plain torch loop: {len(xtr)} images x {a.epochs} epochs in {time.perf_counter() - t0:.0f} s; "
          f"torch test top-1 {100 * acc:.2f}% on {len(yte)} {a.data} test images")

    torch.save(model.state_dict(), work / "model_state.pt")
    results = {"torch_test_acc": acc, "artifacts": {}}
    onnx_file = work / "plain.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(onnx_file), dynamo=True, input_names=["x"],
                      output_names=["y"])
    (work / "labels.txt").write_text("\n".join(ds.classes) + "\n")
    rc = cli(["import-model", str(onnx_file), "--labels", str(work / "labels.txt"), "--size", "28x28",
              "--channels", "1", "--mean", str(mean), "--std", str(std), "--data", a.data,
              "--out", str(work / "imported"), "--force"])
    from edgecnn.runtime import Classifier

    clf = Classifier(work / "imported")
    correct = sum(clf.predict(xte[i], color_order="RGB").index == int(yte[i]) for i in range(len(yte)))
    imp = correct / len(yte)
    print(f"import-model (exit {rc}) + Classifier on {len(yte)} test images: top-1 {100 * imp:.2f}% "
          f"(torch {100 * acc:.2f}%, diff {100 * (imp - acc):+.2f} pts, bar 0.1)")
    results["imported_classifier_acc"] = imp
    bundle = edgecnn.export_model(model, work / "bundle", input_size=(1, 28, 28), classes=ds.classes, mean=[mean],
                                  std=[std], calib=(xtr[:1000], ytr[:1000]), test=(xte, yte), int8=True,
                                  formats=("onnx", "tflite"), force=True)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for art in manifest["artifacts"]:
        v = art["verified"]
        results["artifacts"][art["file"]] = {"accuracy": v["accuracy"], "drop_points": v["drop_points"],
                                             "agreement": v["top1_agreement"]}
        bar = 0.1 if art["precision"] == "fp32" else 1.0
        print(f"{art['file']}: top-1 {100 * v['accuracy']:.2f}% (torch {100 * acc:.2f}%), drop "
              f"{v['drop_points']:.2f} pts (bar <= {bar}), agreement {100 * v['top1_agreement']:.2f}%")
    rc = cli(["verify", str(bundle), "--data", a.data])
    print(f"edgecnn verify {bundle} --data {a.data}: exit {rc}")
    results["verify_rc"] = rc

    (work / "bars.json").write_text(json.dumps(results, indent=2))
    print(f"results: {work / 'bars.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Quantization-aware training through torchao's pt2e flow, stored as data and rebuilt for export.

Flow: torch.export the float model (dynamic batch) -> `prepare_qat_pt2e` with torchao's
X86InductorQuantizer (conv+BN folding simulated during training, per-channel symmetric int8
weights) configured for SIGNED int8 activations -> fine-tune with fake quantization -> `convert_pt2e`.
Signed activations are the one scheme both targets take as real integer kernels: torch.onnx turns
the converted graph into QDQ ONNX (QuantizeLinear/DequantizeLinear around Conv/Gemm, which
onnxruntime and TensorRT fuse), and litert-torch turns it into a full-integer TFLite model
(int8 CONV_2D/FULLY_CONNECTED, int8 input). (litert-torch's own PT2EQuantizer cannot do QAT with
this torch: its conv+BN QAT annotator fails to trace; its PTQ config is what `edgecnn export` uses.)

The checkpoint stays data, loadable with `torch.load(weights_only=True)`:
    state_dict   the QAT-fine-tuned FLOAT weights under the registry model's keys (it is an ordinary
                 fp32 checkpoint too: fp32 exports and `edgecnn eval` use it unchanged)
    qat          {"scheme", "quantizer", "fake_quant": {activation_post_process_N.*: tensor}, ...}
`quantized_graph(ckpt)` rebuilds the int8 graph: float model -> same export + prepare (the graph
and therefore the numbering of the fake-quant modules are deterministic) -> load the recorded
scales, zero points and observer ranges -> convert. Nothing is re-calibrated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import EdgeCNNError
from ..threads import with_host_threads

SCHEME = "pt2e-x86inductor-int8act/2"
FQ_PREFIX = "activation_post_process_"


def qat_quantizer(is_qat: bool = True):
    """X86InductorQuantizer with int8 (signed, affine) activations; per-channel symmetric int8 weights.

    Its conv(+BN)+add[+relu] fusion patterns are skipped: they leave the conv output unquantized for
    Inductor's fused kernel, which ONNX/TFLite runtimes do not have (the residual blocks' projection
    convs would run in float). Without them every conv is int8 and only the residual add is float.
    """
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    class EdgeQuantizer(X86InductorQuantizer):
        def _annotate_qat_conv2d_bn_binary_unary(self, *args, **kwargs) -> None:
            pass

        def _annotate_qat_conv2d_bn_binary(self, *args, **kwargs) -> None:
            pass

        def _annotate_conv2d_binary_unary(self, *args, **kwargs) -> None:
            pass

        def _annotate_conv2d_binary(self, *args, **kwargs) -> None:
            pass

    cfg = get_default_x86_inductor_quantization_config(is_qat=is_qat)
    act = dataclasses.replace(cfg.input_activation, dtype=torch.int8, quant_min=-128, quant_max=127)
    cfg = dataclasses.replace(cfg, input_activation=act, output_activation=act)
    return EdgeQuantizer().set_global(cfg)


def export_graph(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """torch.export with a dynamic batch axis (so training batches and batch-1 inference both run)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        return torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},)).module()
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise EdgeCNNError(f"torch.export cannot capture this model for quantization ({type(e).__name__}: {first})") \
            from None


def _set_mode(graph: nn.Module, train: bool) -> None:
    """Exported graphs switch dropout/BN via torchao; observers learn ranges only while training."""
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.fake_quantize import disable_observer, enable_observer

    if train:
        move_exported_model_to_train(graph)
        graph.apply(enable_observer)
    else:
        move_exported_model_to_eval(graph)
        graph.apply(disable_observer)


def prepare_qat(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """The float model as a pt2e graph with fake quantization, ready to train."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    graph = prepare_qat_pt2e(export_graph(model, example), qat_quantizer(is_qat=True))
    # Plain .train()/.eval() (used by the evaluation helpers) then do what torchao's movers do.
    return allow_exported_model_train_eval(graph)


def fake_quant_state(prepared: nn.Module) -> dict[str, torch.Tensor]:
    """Scales, zero points, observer ranges and flags of every fake-quant module (plain tensors)."""
    return {k: v.detach().cpu().clone() for k, v in prepared.state_dict().items() if k.startswith(FQ_PREFIX)}


def float_state(prepared: nn.Module, model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained float weights under `model`'s own state_dict keys (the exported graph keeps the names)."""
    trained = prepared.state_dict()
    out = {}
    for key, value in model.state_dict().items():
        out[key] = (trained[key] if key in trained else value).detach().cpu().clone()
    return out


def convert(prepared: nn.Module, fold_weights: bool = False) -> torch.fx.GraphModule:
    """Fake quantization -> explicit quantize/dequantize ops.

    `fold_weights` stores weights as int8 constants (what ONNX wants: a 4x smaller file); litert-torch
    instead pattern-matches the unfolded float-weight -> quantize -> dequantize chains.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    _set_mode(prepared, False)
    return convert_pt2e(prepared, fold_quantize=fold_weights)


def quantized_graph(ckpt: dict, fold_weights: bool = False) -> torch.fx.GraphModule:
    """Rebuild the int8 graph of a QAT checkpoint (for export): float weights + recorded fake-quant state."""
    from ..train.checkpoint import model_from_checkpoint
    from .common import example_input

    qat = ckpt.get("qat")
    if not qat:
        raise EdgeCNNError("checkpoint has no QAT state (make one with `edgecnn qat`)")
    if qat.get("scheme") != SCHEME:
        raise EdgeCNNError(f"QAT scheme '{qat.get('scheme')}' is not one this edgecnn rebuilds ({SCHEME})")
    model = model_from_checkpoint(ckpt)
    prepared = prepare_qat(model, example_input(ckpt))
    recorded = qat["fake_quant"]
    expected = set(fake_quant_state(prepared))
    if expected != set(recorded):
        raise EdgeCNNError(f"QAT state does not fit this model's graph ({len(recorded)} recorded vs {len(expected)} "
                           "fake-quant tensors); was it made by another torch/torchao version?")
    prepared.load_state_dict(recorded, strict=False)
    graph = convert(prepared, fold_weights)
    for m in graph.modules():  # the graph is already in eval form; say so to exporters that check the flag
        m.training = False
    return graph


# --------------------------------------------------------------------------------------------
# export hooks for edgecnn.export (int8 artifacts of a QAT checkpoint)


def export_qat_onnx(ckpt: dict, sample: np.ndarray, path: str | os.PathLike) -> dict:
    """int8 QDQ ONNX of a QAT checkpoint, through the same exporter as fp32 (dynamic batch, opset 18)."""
    from ..export.onnx import export_fp32

    return export_fp32(quantized_graph(ckpt, fold_weights=True), sample, path)


def export_qat_tflite(ckpt: dict, sample: np.ndarray, path: str | os.PathLike) -> None:
    """Full-integer TFLite (NHWC, int8 input) of a QAT checkpoint through litert-torch."""
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    graph = quantized_graph(ckpt)
    wrapped = litert_torch.to_channel_last_io(graph, args=[0])
    x = torch.from_numpy(np.ascontiguousarray(sample[:1].transpose(0, 2, 3, 1)))
    # QuantConfig's static pt2e mode makes the converter fuse Q/DQ pairs into integer kernels;
    # the quantizer object only declares "static": the graph is already quantized.
    static = QuantConfig(pt2e_quantizer=PT2EQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)))
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        edge = litert_torch.convert(wrapped, (x,), quant_config=static)
    from ..utils import atomic_write_bytes

    atomic_write_bytes(path, edge.model_content())  # Python's writer: a full disk is an OSError naming the path


# --------------------------------------------------------------------------------------------
# PTQ with the same scheme (the baseline QAT must beat)


def ptq_graph(model: nn.Module, example: torch.Tensor, calib: np.ndarray, batch: int = 64) -> torch.fx.GraphModule:
    """Post-training quantization with the same quantizer (histogram observers), calibrated on `calib`."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(export_graph(model, example), qat_quantizer(is_qat=False))
    with torch.no_grad():
        for i in range(0, len(calib), batch):
            prepared(torch.from_numpy(calib[i : i + batch]))
    return convert_pt2e(prepared, fold_quantize=False)


@torch.no_grad()
def graph_accuracy(graph: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 of a (float or quantized) graph on preprocessed arrays."""
    correct = 0
    for i in range(0, len(y), batch):
        correct += int((graph(torch.from_numpy(x[i : i + batch])).argmax(1).numpy() == y[i : i + batch]).sum())
    return correct / max(1, len(y))


# --------------------------------------------------------------------------------------------
# `edgecnn qat`


def qat_train(model: nn.Module, ds, ckpt: dict, epochs: int, *, lr: float | None = None,
              train_limit: int | None = None, progress: bool = True) -> tuple[torch.fx.GraphModule, list[dict]]:
    """Prepare `model` for QAT and fine-tune it; returns (prepared graph, history)."""
    from .common import example_input, finetune, finetune_hyperparameters

    if epochs < 1:
        raise EdgeCNNError(f"QAT needs at least 1 epoch, got {epochs}")
    prepared = prepare_qat(model, example_input(ckpt))
    # QAT starts from a trained model: a tenth of the training rate keeps it near its optimum.
    lr = lr if lr is not None else finetune_hyperparameters(ckpt)["lr"] / 3
    history = finetune(prepared, ds, ckpt, epochs, lr=lr, train_limit=train_limit, progress=progress,
                       set_train_mode=_set_mode)
    _set_mode(prepared, False)
    return prepared, history


def qat_checkpoint_dict(model: nn.Module, prepared: nn.Module, src: dict, **extra) -> dict:
    """The QAT checkpoint: the source's identity and structure, trained float weights, fake-quant state."""
    import torchao

    from .common import derived_checkpoint

    float_model = model
    float_model.load_state_dict(float_state(prepared, model))
    return derived_checkpoint(
        float_model.eval(), src,
        structure=src.get("structure"),
        qat={"scheme": SCHEME, "quantizer": "torchao X86InductorQuantizer, int8 activations, no conv+add fusion",
             "torch": str(torch.__version__), "torchao": str(torchao.__version__),
             "fake_quant": fake_quant_state(prepared)},
        **extra,
    )


@with_host_threads
def qat_checkpoint(checkpoint: str | os.PathLike, *, epochs: int, out: str | os.PathLike, data: str | None = None,
                   data_root: str | None = None, lr: float | None = None, train_limit: int | None = None,
                   eval_limit: int | None = None, calib_size: int = 512,
                   log: Callable[[str], None] = print) -> Path:
    """`edgecnn qat`: QAT-fine-tune a checkpoint; write qat.pt and qat_report.json into `out`.

    The report compares, on the test split: the source fp32 model, PTQ int8 of the source (same
    quantization scheme, calibrated on `calib_size` training images) and the QAT int8 model.
    """
    from ..data import preprocessed
    from ..train.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
    from ..utils import atomic_write_json, staged_directory
    from .common import checkpoint_dataset, example_input, test_arrays

    src = read_checkpoint(checkpoint)
    if src.get("qat"):
        raise EdgeCNNError(f"{checkpoint}: is already a QAT checkpoint")
    model = model_from_checkpoint(src)
    ds = checkpoint_dataset(src, data, data_root)
    x_test, y_test = test_arrays(ds, src["input"], eval_limit)
    fp32_acc = graph_accuracy(model, x_test, y_test)
    x_cal, _ = preprocessed(ds, "train", src["input"], calib_size, seed=1)
    ptq_acc = graph_accuracy(ptq_graph(model, example_input(src), x_cal), x_test, y_test)
    log(f"source fp32 top-1 {fp32_acc:.4f}; PTQ int8 (same scheme, {len(x_cal)} calibration images) {ptq_acc:.4f}")

    prepared, history = qat_train(model, ds, src, epochs, lr=lr, train_limit=train_limit)
    qat_int8 = graph_accuracy(convert(_copy_graph(prepared)), x_test, y_test)
    ckpt = qat_checkpoint_dict(model, prepared, src, compress={"step": "qat", "epochs": epochs,
                                                               "source": str(checkpoint)})
    qat_fp32 = graph_accuracy(model_from_checkpoint(ckpt), x_test, y_test)
    ckpt["metrics"] = {"test_acc": qat_fp32, "int8_test_acc": qat_int8}
    report = {"schema": "edgecnn.qat-report/1", "model": src["model"]["name"], "dataset": ds.name,
              "test_images": len(y_test), "epochs": epochs, "history": history,
              "accuracy": {"source_fp32": fp32_acc, "ptq_int8": ptq_acc, "qat_int8": qat_int8, "qat_fp32": qat_fp32},
              "int8_is": "pt2e converted graph (quantize/dequantize ops) evaluated in torch"}
    with staged_directory(out) as stage:
        save_checkpoint(ckpt, stage / "qat.pt")
        atomic_write_json(stage / "qat_report.json", report)
    log(f"QAT int8 top-1 {qat_int8:.4f} (fp32 source {fp32_acc:.4f}, PTQ int8 {ptq_acc:.4f}); "
        f"wrote {Path(out) / 'qat.pt'}")
    return Path(out) / "qat.pt"


def _copy_graph(prepared: nn.Module) -> nn.Module:
    """convert_pt2e rewrites its input; keep the trained prepared graph intact for the checkpoint."""
    import copy

    return copy.deepcopy(prepared)

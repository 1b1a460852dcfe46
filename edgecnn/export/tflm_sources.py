"""C/C++ sources of the TFLM target: the model as an aligned const array, its op resolver, its I/O contract.

Written into BUNDLE/tflm/:
  model_data.h / model_data.cc  the .tflite bytes as `alignas(16) const unsigned char[]` (flash)
  model_ops.h                   `MicroMutableOpResolver<N>` with exactly the model's N ops
  model_io.h                    sizes, layout, int8 scale/zero-point, class names, arena size and the
                                MCU preprocessing (a uint8 pixel -> int8 input lookup table); plain C
  main.cc                       one inference on a real test image, checked against the host's answer
  README.md                     how to build them into firmware

model_data.* and model_io.h need no TFLM headers (they compile alone); model_ops.h and main.cc do.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..utils import atomic_write_text
from .tflm_ops import TFLM_OPS, c_float, quantize_input

SAMPLE_MAX_BYTES = 64 * 1024  # main.cc embeds its test image only when it is at most this big


def _c_string(s: str) -> str:
    return json.dumps(s, ensure_ascii=True)  # a valid C string literal for printable/escaped text


def is_image(spec: dict) -> bool:
    """An image input (uint8 pixels, the lookup table); other kinds (features) are fed as quantized numbers."""
    return spec.get("kind", "image") == "image"


def _byte_rows(data: bytes, per_row: int = 16) -> str:
    rows = []
    for i in range(0, len(data), per_row):
        rows.append("    " + ", ".join(f"0x{b:02x}" for b in data[i : i + per_row]) + ",")
    return "\n".join(rows)


def _int_rows(values: np.ndarray, per_row: int = 16) -> str:
    vals = [int(v) for v in values.ravel()]
    return "\n".join("    " + ", ".join(f"{v:4d}" for v in vals[i : i + per_row]) + ","
                     for i in range(0, len(vals), per_row))


def pixel_lut(spec: dict, input_quant: dict) -> np.ndarray:
    """int8[C][256]: the model input for each uint8 pixel value of each channel.

    The same float32 arithmetic as edgecnn.preprocess (x * scale, minus mean, over std) followed by
    the same quantization as the verification, so the MCU feeds bit-identical inputs.
    """
    p = np.arange(256, dtype=np.uint8).astype(np.float32) * np.float32(spec["scale"])
    mean = np.asarray(spec["mean"], np.float32)[:, None]
    std = np.asarray(spec["std"], np.float32)[:, None]
    x = (p[None, :] - mean) / std
    return quantize_input(x.astype(np.float32), input_quant["scale"], input_quant["zero_point"])


def _preprocessing_comment(spec: dict) -> str:
    h, w = spec["height"], spec["width"]
    color = {"GRAY": "greyscale (from RGB: 0.299 R + 0.587 G + 0.114 B, OpenCV's weights)",
             "RGB": "RGB order (swap a BGR camera's channels)"}[spec["color"]]
    if spec["resize"] == "center_crop":
        size = (f"scale the shorter side so the image covers {w}x{h}, then cut the centre {w}x{h}")
    else:
        size = f"stretch to {w}x{h} (aspect ratio not kept)"
    interp = "area averaging when shrinking, bilinear otherwise" if spec["interpolation"] == "area" else "bilinear"
    return "\n".join([
        "/* Preprocessing to do on the MCU, in this order (what edgecnn's runtime and verification do):",
        f"     1. colour: {color}",
        f"     2. size: {size}; {interp}",
        "     3. each uint8 pixel p of channel c becomes the int8 input kEdgecnnPixelToInput[c][p], i.e.",
        f"        clip(round(((p * {spec['scale']:.9g}) - mean[c]) / std[c] / input_scale) + input_zero_point, -128, 127)",
        f"        with mean {spec['mean']}, std {spec['std']} (float32, as on the host).",
        "     The input tensor is NHWC: index (y * WIDTH + x) * CHANNELS + c.",
        "   Output: int8 logits, real = output_scale * (q - output_zero_point); the class is the argmax of q. */",
    ])


def _input_block(spec: dict, shape: list[int]) -> str:
    """The input part of model_io.h: image size + pixel lookup table, or a feature tensor's shape."""
    if is_image(spec):
        c, h, w = spec["channels"], spec["height"], spec["width"]
        return f"""/* Input: one image, NHWC int8, 1 x {h} x {w} x {c}. */
#define EDGECNN_INPUT_HEIGHT {h}
#define EDGECNN_INPUT_WIDTH {w}
#define EDGECNN_INPUT_CHANNELS {c}
#define EDGECNN_INPUT_BYTES ({h} * {w} * {c})"""
    dims = " x ".join(str(int(d)) for d in shape)
    return f"""/* Input: one feature tensor (not an image), int8, {dims} in the model's own layout:
   q = clip(round(x / kEdgecnnInputScale) + kEdgecnnInputZeroPoint, -128, 127). */
#define EDGECNN_INPUT_BYTES {int(np.prod(shape))}"""


def model_io_h(spec: dict, classes: list[str], inp: dict, out: dict, arena_bytes: int, tflm_version: str | None,
               source: str, input_shape: list[int] | None = None) -> str:
    qi, qo = inp["quant"], out["quant"]
    names = ",\n".join(f"    {_c_string(n)}" for n in classes)
    if is_image(spec):
        lut = pixel_lut(spec, qi)
        lut_rows = ",\n".join("  {\n" + _int_rows(lut[ch]) + "\n  }" for ch in range(spec["channels"]))
        prep = (f"{_preprocessing_comment(spec)}\n"
                "static const int8_t kEdgecnnPixelToInput[EDGECNN_INPUT_CHANNELS][256] = {\n" + lut_rows + "\n};\n")
    else:
        prep = ""
    return f"""/* Generated by edgecnn from {source}: the model's input/output contract for the MCU. Plain C or C++. */
#ifndef EDGECNN_MODEL_IO_H_
#define EDGECNN_MODEL_IO_H_

#include <stdint.h>

/* Smallest tensor arena the TFLM interpreter allocated this model in, measured with tflite-micro
   {tflm_version or '?'} on a 64-bit host (32-bit MCUs need the same activation memory and slightly less
   bookkeeping). Give the arena alignas(16). */
#define EDGECNN_TENSOR_ARENA_BYTES {arena_bytes}

{_input_block(spec, list(input_shape or []))}
static const float kEdgecnnInputScale = {c_float(qi['scale'])};
static const int32_t kEdgecnnInputZeroPoint = {qi['zero_point']};

/* Output: {len(classes)} int8 logits. */
#define EDGECNN_NUM_CLASSES {len(classes)}
static const float kEdgecnnOutputScale = {c_float(qo['scale'])};
static const int32_t kEdgecnnOutputZeroPoint = {qo['zero_point']};
static const char* const kEdgecnnClassNames[EDGECNN_NUM_CLASSES] = {{
{names}
}};

{prep}
#endif /* EDGECNN_MODEL_IO_H_ */
"""


def model_data_h() -> str:
    return """/* Generated by edgecnn: the TFLite flatbuffer of the model, to be placed in flash. */
#ifndef EDGECNN_MODEL_DATA_H_
#define EDGECNN_MODEL_DATA_H_

extern const unsigned char g_edgecnn_model_data[];
extern const unsigned int g_edgecnn_model_data_len;

#endif /* EDGECNN_MODEL_DATA_H_ */
"""


def model_data_cc(model: bytes, file: str, sha256: str) -> str:
    return f"""/* Generated by edgecnn from {file} (sha256 {sha256}), {len(model)} bytes.
   TFLM reads the flatbuffer in place, so it stays const (flash) and must be 16-byte aligned. */
#include "model_data.h"

alignas(16) const unsigned char g_edgecnn_model_data[] = {{
{_byte_rows(model)}
}};
const unsigned int g_edgecnn_model_data_len = {len(model)};
"""


def model_ops_h(ops: list[str]) -> str:
    adds = "\n".join(f"  if (resolver.{TFLM_OPS[op]}() != kTfLiteOk) return kTfLiteError;  // {op}" for op in ops)
    return f"""/* Generated by edgecnn: an op resolver with exactly the {len(ops)} ops this model uses, so the
   firmware links only those kernels. */
#ifndef EDGECNN_MODEL_OPS_H_
#define EDGECNN_MODEL_OPS_H_

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

constexpr unsigned int kEdgecnnOpCount = {len(ops)};
using EdgecnnOpResolver = tflite::MicroMutableOpResolver<kEdgecnnOpCount>;

inline TfLiteStatus EdgecnnRegisterOps(EdgecnnOpResolver& resolver) {{
{adds}
  return kTfLiteOk;
}}

#endif  // EDGECNN_MODEL_OPS_H_
"""


def main_cc(sample: np.ndarray | None, sample_label: str | None, expected: str | None,
            image: bool = True, series: tuple[str, str] | None = None) -> str:
    """One inference. With a sample it checks the class TFLM gave on the host.

    image: `sample` is uint8 HxWxC after colour + resize, fed through the pixel lookup table; else
    `sample` is the model's int8 input itself (a feature tensor, already quantized).
    `series`: (declarations, fill statement) of a series bundle's window (export/tflm_series.py)."""
    if series is not None:
        sample_block, fill = series
        check = ("  MicroPrintf(\"predicted %s (host TFLM: %s)\", kEdgecnnClassNames[best], kExpected);\n"
                 "  return strcmp(kEdgecnnClassNames[best], kExpected) == 0 ? 0 : 1;") if expected else \
            "  MicroPrintf(\"predicted %s\", kEdgecnnClassNames[best]);\n  return 0;"
        if expected:
            sample_block += f"static const char* const kExpected = {_c_string(expected)};\n"
    elif sample is not None:
        what = ("A real test image ({label!r}), already colour-converted and resized on the host" if image else
                "A real test input ({label!r}), already quantized to int8 on the host").format(label=sample_label)
        ctype = "uint8_t" if image else "int8_t"
        sample_block = (f"// {what};\n"
                        f"// the TFLM interpreter on the host classified it as {expected!r}.\n"
                        f"static const {ctype} kSample[EDGECNN_INPUT_BYTES] = {{\n{_int_rows(sample.ravel())}\n}};\n"
                        f"static const char* const kExpected = {_c_string(expected or '')};\n")
        fill = ("input->data.int8[i] = kEdgecnnPixelToInput[i % EDGECNN_INPUT_CHANNELS][kSample[i]];" if image
                else "input->data.int8[i] = kSample[i];")
        check = ("  MicroPrintf(\"predicted %s (host TFLM: %s)\", kEdgecnnClassNames[best], kExpected);\n"
                 "  return strcmp(kEdgecnnClassNames[best], kExpected) == 0 ? 0 : 1;")
    else:
        if image:
            sample_block = ("// The input image is too large to embed here: fill the input from your camera instead\n"
                            "// (preprocessing: see model_io.h). This example feeds a mid-grey image.\n")
            fill = "input->data.int8[i] = kEdgecnnPixelToInput[i % EDGECNN_INPUT_CHANNELS][128];"
        else:
            sample_block = ("// No test input embedded: fill the input from your sensor instead (quantization:\n"
                            "// see model_io.h). This example feeds the zero point (the real value 0).\n")
            fill = "input->data.int8[i] = static_cast<int8_t>(kEdgecnnInputZeroPoint);"
        check = "  MicroPrintf(\"predicted %s\", kEdgecnnClassNames[best]);\n  return 0;"
    return f"""// Generated by edgecnn: one inference with TensorFlow Lite Micro. Build it with the TFLM library
// (see README.md); the model, its op resolver and its I/O contract come from the files next to it.
#include <stdint.h>
#include <string.h>

#include "model_data.h"
#include "model_io.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

{sample_block}
alignas(16) static uint8_t tensor_arena[EDGECNN_TENSOR_ARENA_BYTES];

int main() {{
  tflite::InitializeTarget();
  const tflite::Model* model = tflite::GetModel(g_edgecnn_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {{
    MicroPrintf("model schema %d, this TFLM expects %d", static_cast<int>(model->version()), TFLITE_SCHEMA_VERSION);
    return 1;
  }}
  static EdgecnnOpResolver resolver;
  if (EdgecnnRegisterOps(resolver) != kTfLiteOk) return 1;
  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, EDGECNN_TENSOR_ARENA_BYTES);
  if (interpreter.AllocateTensors() != kTfLiteOk) {{
    MicroPrintf("AllocateTensors failed: EDGECNN_TENSOR_ARENA_BYTES too small for this TFLM build?");
    return 1;
  }}
  TfLiteTensor* input = interpreter.input(0);
  for (int i = 0; i < EDGECNN_INPUT_BYTES; ++i) {{
    {fill}
  }}
  if (interpreter.Invoke() != kTfLiteOk) return 1;
  const TfLiteTensor* output = interpreter.output(0);
  int best = 0;
  for (int k = 1; k < EDGECNN_NUM_CLASSES; ++k) {{
    if (output->data.int8[k] > output->data.int8[best]) best = k;
  }}
{check}
}}
"""


def readme_md(ops: list[str], arena_bytes: int, flash_bytes: int) -> str:
    return f"""# TensorFlow Lite Micro sources (generated by edgecnn)

- `model_data.cc/.h`: the int8 model ({flash_bytes:,} bytes of flash), 16-byte aligned.
- `model_ops.h`: `EdgecnnOpResolver` = `tflite::MicroMutableOpResolver<{len(ops)}>` with {', '.join(ops)}.
- `model_io.h`: input size and layout, int8 scale/zero-point, class names, the arena size
  ({arena_bytes:,} bytes, measured with the TFLM interpreter) and the preprocessing to do on the MCU.
- `main.cc`: one inference; returns 0 when it predicts what TFLM predicted on the host.

Build: add the four files to a project that builds the TFLM library for your board (e.g. the
tflite-micro repository's Makefile, `tensorflow/lite/micro/tools/make/Makefile TARGET=cortex_m_generic
TARGET_ARCH=cortex-m4`, or your vendor's TFLM port) and compile them with the same flags. `model_data.cc`
and `model_io.h` need no TFLM headers: `arm-none-eabi-g++ -mcpu=cortex-m4 -mthumb -c model_data.cc`.
"""


def write_sources(out_dir: Path, *, model: bytes, file: str, sha256: str, ops: list[str], spec: dict,
                  classes: list[str], inp: dict, out: dict, arena_bytes: int, tflm_version: str | None,
                  source: str, sample: np.ndarray | None, sample_label: str | None,
                  expected: str | None, input_shape: list[int] | None = None) -> list[str]:
    """Write the sources into `out_dir`; return their file names.

    `input_shape` (the model's input tensor) describes a non-image input in model_io.h."""
    if sample is not None and sample.size > SAMPLE_MAX_BYTES:
        sample = None
    if spec.get("kind") == "series":  # a window of sensor samples / audio features: export/tflm_series.py
        from . import tflm_series

        io_text = tflm_series.model_io_h(spec, classes, inp, out, arena_bytes, tflm_version, source)
        main_text = main_cc(None, sample_label, expected if sample is not None else None,
                            series=tflm_series.sample_block(spec, sample, sample_label, expected))
    else:
        io_text = model_io_h(spec, classes, inp, out, arena_bytes, tflm_version, source, input_shape)
        main_text = main_cc(sample, sample_label, expected, image=is_image(spec))
    files = {
        "model_data.h": model_data_h(),
        "model_data.cc": model_data_cc(model, file, sha256),
        "model_ops.h": model_ops_h(ops),
        "model_io.h": io_text,
        "main.cc": main_text,
        "README.md": readme_md(ops, arena_bytes, len(model)),
    }
    for name, text in files.items():
        atomic_write_text(out_dir / name, text)
    return list(files)

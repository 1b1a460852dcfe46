"""Classify a camera (or a video / image folder) live on a device, with the Python API and no torch.

Shows the torch-free runtime: a bundle -> `Classifier`, a frame source -> `predict`, the overlay,
and an annotated video. Only numpy, OpenCV and one backend (onnxruntime or ai-edge-litert) are needed.

Run:
    python examples/webcam_classify.py                                  # camera 0, window if a display
    python examples/webcam_classify.py --source video.mp4 --save out.mp4 --headless
    python examples/webcam_classify.py --bundle export/lenet5-digits --source images/ --max-frames 50
"""

from __future__ import annotations

import argparse
import json
import time

from edgecnn.errors import run_script


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="export/lenet5-digits", help="bundle folder (default: export/lenet5-digits)")
    p.add_argument("--source", default="0", help="camera index, /dev/videoN, video file, image folder or URI")
    p.add_argument("--backend", default="auto", help="auto, onnxruntime, litert or tensorrt")
    p.add_argument("--precision", default="auto", help="auto, fp32, fp16 or int8")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--save", default=None, help="write the annotated frames to this video file")
    p.add_argument("--headless", action="store_true", help="no window (always so without a display)")
    p.add_argument("--fast", action="store_true", help="stop after 10 frames, headless (used by the tests)")
    args = p.parse_args(argv)
    if args.fast:
        args.max_frames, args.headless = args.max_frames or 10, True

    import cv2

    from edgecnn.runtime import Classifier
    from edgecnn.runtime.overlay import draw_overlay
    from edgecnn.runtime.sinks import VideoSink, WindowSink, display_available
    from edgecnn.runtime.sources import open_source

    clf = Classifier(args.bundle, backend=args.backend, precision=args.precision, threads=args.threads)
    d = clf.describe()
    print(f"bundle {d['name']}: backend {d['backend']} {d.get('precision', '')} ({d['why']})")
    sinks = []
    if not args.headless and display_available():
        sinks.append(WindowSink("edgecnn webcam_classify (q quits)"))
    video = None
    n, t_start, fps = 0, time.perf_counter(), None
    try:
        with open_source(args.source) as source:
            print(f"source: {source.describe}")
            for frame in source:
                t0 = time.perf_counter()
                pred = clf.predict(frame.image)  # preprocess exactly as in training + infer + softmax
                infer_ms = 1000 * (time.perf_counter() - t0)
                annotated = draw_overlay(frame.image, pred.top[:3], fps=fps, stage_ms=pred.timings)
                if args.save and video is None:  # the overlay may enlarge small frames: size the video from it
                    video = VideoSink(args.save, fps=10.0)
                    sinks.append(video)
                record = {"frame": frame.index, "name": frame.name, "label": pred.label, "confidence": round(pred.confidence, 4),
                          "predict_ms": round(infer_ms, 3)}
                print(json.dumps(record), flush=True)
                if not all(s.write(annotated, record) for s in sinks):
                    break  # the window was closed
                n += 1
                fps = n / (time.perf_counter() - t_start)
                if args.max_frames and n >= args.max_frames:
                    break
    finally:
        for s in sinks:
            s.close()
        clf.close()
        cv2.destroyAllWindows() if not args.headless and display_available() else None
    print(f"{n} frames, {fps or 0:.1f} FPS end to end (measured)" + (f"; annotated video: {args.save}" if video else ""))
    return 0


if __name__ == "__main__":
    run_script(main)

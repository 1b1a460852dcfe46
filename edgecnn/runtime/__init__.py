"""The device runtime: torch-free inference on a bundle (numpy + OpenCV + one backend).

    from edgecnn.runtime import Classifier
    clf = Classifier("export/lenet5-digits", backend="auto", precision="auto", threads=2)
    print(clf.predict(frame).top)

`edgecnn run BUNDLE --source SRC` is the real-time camera/video app (edgecnn.runtime.app).
"""

from .backends import Backend, available_backends, open_backend, open_bundle, select
from .classifier import Classifier, Prediction

__all__ = ["Backend", "Classifier", "Prediction", "available_backends", "open_backend", "open_bundle", "select"]

"""Runs seg-model's ONNX exports with onnxruntime and compares them with `Predictor`'s answers
(written by crates/seg-model/tests/onnx_export.rs):

    python onnxruntime_check.py DIR

DIR/cases.json lists cases; each has <name>.onnx, <name>.input (uint8 NHWC), <name>.probabilities
(float32 LE, NCHW) and <name>.mask (uint8 NHW). Probabilities must agree within 1e-4 and masks
exactly. Prints one JSON line (cases, worst difference); a disagreement is an AssertionError.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main() -> None:
    folder = Path(sys.argv[1])
    cases = json.loads((folder / "cases.json").read_text())
    worst = 0.0
    for case in cases:
        name, label, shape = case["name"], case["label"], case["shape"]
        session = ort.InferenceSession(str(folder / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        image = np.fromfile(folder / f"{name}.input", dtype=np.uint8).reshape(shape)
        probabilities, mask = session.run(["probabilities", "mask"], {"image": image})
        expected = np.fromfile(folder / f"{name}.probabilities", dtype="<f4").reshape(probabilities.shape)
        expected_mask = np.fromfile(folder / f"{name}.mask", dtype=np.uint8).reshape(mask.shape)
        assert probabilities.dtype == np.float32 and mask.dtype == np.uint8, label
        assert mask.shape == tuple(shape[:3]), (label, mask.shape)
        difference = float(np.abs(probabilities - expected).max())
        assert difference <= 1e-4, f"{label}: probabilities differ by {difference}"
        differ = int((mask != expected_mask).sum())
        assert differ == 0, f"{label}: {differ} mask pixels differ"
        worst = max(worst, difference)
    print(json.dumps({"cases": len(cases), "worst": worst, "onnxruntime": ort.__version__}))


if __name__ == "__main__":
    main()

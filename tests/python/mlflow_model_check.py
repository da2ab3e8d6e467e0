"""Uses a registered seg-mlops model with MLflow's own tools, as an ML engineer would, and
checks that it predicts the masks `infer` wrote (run by tests/tests/python_model.rs).

    python mlflow_model_check.py MODEL_URI IMAGES_DIR MASKS_DIR PORT

- `mlflow.pyfunc.load_model(MODEL_URI)` (a `models:/name@alias` URI resolved through the
  registry to a lakefs:// folder, read by the mlflow-lakefs plugin) predicts every image;
- `mlflow models serve -m MODEL_URI --env-manager local` answers POST /invocations;
- both give, for every image, exactly the class ids of `infer`'s mask (0/255 PNG -> 0/1).

MLFLOW_TRACKING_URI and the LAKECTL_* variables come from the environment. Prints one JSON
line of facts; any disagreement is an AssertionError (exit 1).
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
from PIL import Image


def load_pairs(images_dir: Path, masks_dir: Path):
    """(name, uint8 HWC image, class ids HW) for every image that has a mask from infer."""
    pairs = []
    for image_path in sorted(images_dir.iterdir()):
        mask_path = masks_dir / (image_path.stem + ".png")
        if not mask_path.is_file():
            continue
        image = np.asarray(Image.open(image_path).convert("RGB"), dtype=np.uint8)
        mask = np.asarray(Image.open(mask_path).convert("L"), dtype=np.uint8)
        pairs.append((image_path.name, image, (mask > 127).astype(np.uint8)))
    assert pairs, f"no image of {images_dir} has a mask in {masks_dir}"
    return pairs


def check_masks(source: str, masks: np.ndarray, pairs) -> int:
    """Asserts that `masks` ([n, h, w]) are infer's masks; returns the foreground pixels."""
    assert masks.shape == (len(pairs),) + pairs[0][2].shape, (source, masks.shape)
    for got, (name, _, expected) in zip(masks, pairs):
        differ = int((got != expected).sum())
        assert differ == 0, f"{source}: {name} differs from infer's mask in {differ} pixels"
    return int(masks.sum())


def serve(model_uri: str, port: int, batch: np.ndarray) -> dict:
    """Starts `mlflow models serve`, posts the batch, stops the server; returns the answer."""
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        # As in an activated venv: MLflow starts `uvicorn` from PATH.
        env={**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while True:
            if server.poll() is not None:
                raise AssertionError(
                    f"mlflow models serve exited {server.returncode}: "
                    + server.stdout.read().decode(errors="replace")[-3000:]
                )
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "mlflow models serve did not answer /ping in 180 s"
            time.sleep(0.5)
        body = json.dumps({"inputs": {"image": batch.tolist()}}).encode()
        request = urllib.request.Request(
            f"{base}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as r:
            assert r.status == 200, r.status
            return json.loads(r.read())
    finally:
        stop(server)


def stop(server: subprocess.Popen) -> None:
    """Stops the server's whole process group (uvicorn's workers included)."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def main() -> None:
    model_uri, images_dir, masks_dir, port = sys.argv[1:5]
    pairs = load_pairs(Path(images_dir), Path(masks_dir))
    batch = np.stack([image for _, image, _ in pairs])

    model = mlflow.pyfunc.load_model(model_uri)
    out = model.predict({"image": batch})
    probabilities = np.asarray(out["probabilities"])
    assert probabilities.dtype == np.float32, probabilities.dtype
    assert probabilities.shape[0] == len(pairs) and probabilities.shape[2:] == batch.shape[1:3]
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5), "probabilities sum to 1"
    foreground = check_masks("mlflow.pyfunc", np.asarray(out["mask"]), pairs)

    answer = serve(model_uri, int(port), batch)
    predictions = answer["predictions"]
    served = np.asarray(predictions["mask"], dtype=np.uint8)
    check_masks("mlflow models serve", served, pairs)

    info = model.metadata
    print(json.dumps({
        "images": len(pairs),
        "foreground_pixels": foreground,
        "flavors": sorted(info.flavors),
        "run_id": info.run_id,
        "model_id": getattr(info, "model_id", None),
        "signature_inputs": info.signature.inputs.to_dict() if info.signature else None,
        "served_keys": sorted(predictions),
    }))


if __name__ == "__main__":
    main()

"""Reads, with MLflow's own Python client, what the Rust client wrote; prints one JSON line."""
import json
import sys
import tempfile

from mlflow.tracking import MlflowClient

run_id, model_name, alias, artifact = sys.argv[1:5]
client = MlflowClient()
run = client.get_run(run_id)
version = client.get_model_version_by_alias(model_name, alias)
with tempfile.TemporaryDirectory() as d:
    path = client.download_artifacts(run_id, artifact, d)
    with open(path, "rb") as f:
        content = f.read().decode()
history = client.get_metric_history(run_id, "valid_iou")
print(json.dumps({
    "params": run.data.params,
    "metrics": run.data.metrics,
    "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
    "status": run.info.status,
    "history": sorted([m.step, m.value] for m in history),
    "version": version.version,
    "source": version.source,
    "artifact": content,
    "datasets": [i.dataset.digest for i in run.inputs.dataset_inputs],
}))

"""Reads a promotion back with MLflow's own Python client (run by tests/tests/promotion.rs):

    python promotion_readback.py MODEL_NAME VERSION EVALUATION_RUN_ID

Prints one JSON object: the evaluation run's tags, params, metrics and artifact paths, and the
version's tags and the model's aliases, as MLflow itself returns them.
"""

import json
import sys

from mlflow.tracking import MlflowClient


def artifacts(client: MlflowClient, run_id: str, path: str = "") -> list[str]:
    out = []
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            out.extend(artifacts(client, run_id, info.path))
        else:
            out.append(info.path)
    return out


def main() -> None:
    name, version, run_id = sys.argv[1:4]
    client = MlflowClient()
    run = client.get_run(run_id)
    mv = client.get_model_version(name, version)
    model = client.get_registered_model(name)
    csv_path = client.download_artifacts(run_id, "per_image.csv")
    with open(csv_path, encoding="utf-8") as f:
        rows = f.read().strip().splitlines()
    print(json.dumps({
        "status": run.info.status,
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        "params": run.data.params,
        "metrics": run.data.metrics,
        "artifacts": sorted(artifacts(client, run_id)),
        "csv_header": rows[0],
        "csv_rows": len(rows) - 1,
        "version_tags": mv.tags,
        "aliases": model.aliases,
    }))


if __name__ == "__main__":
    main()

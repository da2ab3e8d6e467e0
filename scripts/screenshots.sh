#!/usr/bin/env bash
# Screenshots of what MLflow's UI shows a person about the newest training run and the
# registered model, taken with Debian's Chromium (headless):
#   scripts/screenshots.sh [OUT_DIR]      (default .seg-mlops/screenshots)
# Writes run.png (the run page: params, metrics, "Logged models" with our model), curve.png
# (the run's training_curve.png artifact: axes, labels, legend), model_version.png (the
# version page: source = the lakeFS model folder, tags, lineage) and experiment.png (the
# experiment's runs, shown as model training).
# MLflow from MLFLOW_TRACKING_URI (default http://127.0.0.1:5000, the quickstart's), the
# experiment and model names from SEG_MLFLOW__EXPERIMENT / SEG_REGISTER__MODEL_NAME (defaults
# of configs/default.toml). Chromium: `apt-get install chromium` when absent.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-.seg-mlops/screenshots}"
URI="${MLFLOW_TRACKING_URI:-http://127.0.0.1:5000}"
URI="${URI%/}"
EXPERIMENT="${SEG_MLFLOW__EXPERIMENT:-Image Segmentation}"
MODEL="${SEG_REGISTER__MODEL_NAME:-image_segmentation_model}"
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if [ -z "$CHROMIUM" ]; then
  echo "screenshots: Chromium is not installed; install it with: sudo apt-get install chromium" >&2
  exit 1
fi
mkdir -p "$OUT"

# The ids to show, from MLflow's REST API (python3's standard library only).
read -r EXP_ID RUN_ID VERSION < <(python3 - "$URI" "$EXPERIMENT" "$MODEL" <<'PY'
import json, sys, urllib.parse, urllib.request
uri, experiment, model = sys.argv[1:4]
def call(path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(uri + "/api/2.0/mlflow/" + path, data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)
    except OSError as e:
        sys.exit(f"screenshots: cannot ask MLflow at {uri} ({path}): {e}; start it with scripts/quickstart.sh")
exp = call("experiments/get-by-name?experiment_name=" + urllib.parse.quote(experiment))["experiment"]
runs = call("runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 50,
    "filter": "attributes.status = 'FINISHED' and tags.`seg_mlops.kind` = 'training'",
    "order_by": ["attributes.start_time DESC"]}).get("runs", [])
if not runs:
    sys.exit(f"screenshots: experiment {experiment!r} has no finished training run: train one first")
try:
    version = call("registered-models/alias?name=" + urllib.parse.quote(model) + "&alias=champion")["model_version"]["version"]
except SystemExit:
    version = "1"
print(exp["experiment_id"], runs[0]["info"]["run_id"], version)
PY
)

shot() { # name url window-size
  "$CHROMIUM" --headless=new --no-sandbox --disable-background-networking --disable-gpu \
    --hide-scrollbars --window-size="$3" --virtual-time-budget=20000 \
    --screenshot="$OUT/$1.png" "$2" >/dev/null 2>&1
  echo "screenshots: $OUT/$1.png <- $2"
}
# MLflow 3's UI opens in its GenAI view unless the URL asks for the model-training one.
ML="workflowType=machine_learning"
shot run "$URI/#/experiments/$EXP_ID/runs/$RUN_ID?$ML" 1600,2600
shot curve "$URI/#/experiments/$EXP_ID/runs/$RUN_ID/artifactPath/training_curve.png?$ML" 1600,1300
shot model_version "$URI/#/models/$MODEL/versions/$VERSION?$ML" 1600,1300
shot experiment "$URI/#/experiments/$EXP_ID?$ML" 1600,1000

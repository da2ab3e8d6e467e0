"""Reads a quickstart's lineage back from the scale stack with the engines' own Python clients:
MLflow's client (the run, its tags, the registered version whose source is the lakeFS folder at
the model commit), lakeFS's SDK (the objects at the data commit D, the model commit M and the
predictions commit P) and boto3 (each object's bytes are really in the S3 bucket lakeFS writes
to). Argument: the quickstart's output folder (train.json, register.json, infer.jsonl).
Environment: what `scripts/stack.sh env` prints. Prints one JSON line of facts; any mismatch
raises."""
import hashlib
import json
import os
import sys
from urllib.parse import urlparse

import boto3
import lakefs
import mlflow
from lakefs.client import Client

out = sys.argv[1]
train = json.load(open(f"{out}/train.json"))
register = json.load(open(f"{out}/register.json"))
infer = [json.loads(l) for l in open(f"{out}/infer.jsonl") if l.strip()][-1]

# MLflow on PostgreSQL: the run and its lineage tags.
client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
run = client.get_run(train["run_id"])
assert run.info.status == "FINISHED", run.info.status
tags = run.data.tags
data_commit = tags["lakefs_data_commit"]
model_commit = tags["lakefs_model_commit"]
assert data_commit == train["data_commit"], (data_commit, train["data_commit"])
repo = tags["lakefs_repo"]
assert tags["model_folder_uri"] == f"lakefs://{repo}/{model_commit}/models/{train['run_id']}/", tags["model_folder_uri"]
assert run.data.metrics, "no metrics logged"
# The artifacts (S3 on versitygw through MLflow's proxy) list.
artifacts = [a.path for a in client.list_artifacts(train["run_id"])]
assert artifacts, "the run has no artifacts"

# The registered version: its source is the immutable lakeFS folder at M.
version = client.get_model_version(register["model_name"], str(register["version"]))
assert version.source == tags["model_folder_uri"], (version.source, tags["model_folder_uri"])
assert version.run_id == train["run_id"], version.run_id

# lakeFS (on PostgreSQL + S3): the objects at D, M and P, read back and found in the bucket.
lk = Client(
    host=os.environ["LAKECTL_SERVER_ENDPOINT_URL"],
    username=os.environ["LAKECTL_CREDENTIALS_ACCESS_KEY_ID"],
    password=os.environ["LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY"],
)
repository = lakefs.Repository(repo, client=lk)
namespace = repository.properties.storage_namespace
assert namespace == f"s3://lakefs/{repo}", namespace
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
predictions = urlparse(infer["predictions_uri"])
p_commit, p_prefix = predictions.path.lstrip("/").split("/", 1)
facts = {"repository": repo, "namespace": namespace}
for name, commit, prefix in [
    ("data", data_commit, "data/"),
    ("model", model_commit, f"models/{train['run_id']}/"),
    ("predictions", p_commit, p_prefix),
]:
    ref = repository.ref(commit)
    objects = list(ref.objects(prefix=prefix))
    assert objects, f"no objects under {prefix} at {name} commit {commit}"
    for obj in objects[:3]:
        stat = ref.object(obj.path).stat()
        address = urlparse(stat.physical_address)
        assert address.scheme == "s3" and address.netloc == "lakefs", stat.physical_address
        through_lakefs = ref.object(obj.path).reader(mode="rb").read()
        in_bucket = s3.get_object(Bucket=address.netloc, Key=address.path.lstrip("/"))["Body"].read()
        assert hashlib.sha256(through_lakefs).digest() == hashlib.sha256(in_bucket).digest(), obj.path
    facts[name] = {"commit": commit, "objects": len(objects)}
# MLflow's artifacts (logged through its proxy) are objects of the S3 bucket `mlflow`.
in_mlflow_bucket = s3.list_objects_v2(Bucket="mlflow", Prefix="")
keys = [o["Key"] for o in in_mlflow_bucket.get("Contents", [])]
assert any(train["run_id"] in k for k in keys), keys[:20]
facts["mlflow_bucket_objects"] = len(keys)
facts["run_status"] = run.info.status
facts["model_version"] = int(version.version)
facts["source"] = version.source
print(json.dumps(facts, sort_keys=True))

# MLflow for the `scale` profile of docker-compose.yml: the official image (pinned to the
# version the tests use) plus the PostgreSQL driver and boto3 for S3 (MinIO) artifacts.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.10 boto3==1.35.99

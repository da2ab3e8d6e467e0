# MLflow for the `scale` profile of docker-compose.yml: the official image plus the PostgreSQL
# driver and boto3 for S3 artifacts. The defaults are stack/versions.env's (compose passes them).
ARG MLFLOW_VERSION=3.17.2
FROM ghcr.io/mlflow/mlflow:v${MLFLOW_VERSION}
ARG PSYCOPG2_VERSION=2.9.10
ARG BOTO3_VERSION=1.35.99
RUN pip install --no-cache-dir "psycopg2-binary==${PSYCOPG2_VERSION}" "boto3==${BOTO3_VERSION}"

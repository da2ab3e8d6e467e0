-- docker-compose `scale` profile: PostgreSQL starts with the lakefs database (POSTGRES_DB);
-- this adds MLflow's backend store.
CREATE DATABASE mlflow;

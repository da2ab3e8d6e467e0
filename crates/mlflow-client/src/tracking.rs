//! Tracking: experiments, runs, batched logging, search and metric history (as streams) and
//! dataset inputs.

use futures::Stream;
use reqwest::Method;
use rest_transport::ClientError as _;
use serde::Deserialize;
use serde_json::json;

use crate::client::{Idempotent, MlflowClient};
use crate::error::{MlflowError, Result};
use crate::types::*;
use rest_transport::paginate;

/// MLflow's log-batch limits.
pub const MAX_METRICS_PER_BATCH: usize = 1000;
/// Params per log-batch call.
pub const MAX_PARAMS_PER_BATCH: usize = 100;
/// Tags per log-batch call.
pub const MAX_TAGS_PER_BATCH: usize = 100;
/// Entities (metrics + params + tags) per log-batch call.
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;

use crate::client::API;

/// Options of a run search.
#[derive(Debug, Clone, Default)]
pub struct RunSearch {
    /// Experiments to search.
    pub experiment_ids: Vec<String>,
    /// Filter, e.g. `metrics.valid_iou > 0.8 and tags.stage = 'x'`.
    pub filter: Option<String>,
    /// Order, e.g. `["metrics.valid_iou DESC"]`.
    pub order_by: Vec<String>,
    /// Which lifecycle stages.
    pub view_type: ViewType,
    /// Page size (server maximum 50000; default 1000).
    pub page_size: Option<usize>,
}

/// What to create a run with.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    /// Run name.
    pub run_name: Option<String>,
    /// User id (defaults to the OS user: `$USER`, `$LOGNAME`, else `id -un`).
    pub user_id: Option<String>,
    /// Start time in ms (defaults to now).
    pub start_time: Option<i64>,
    /// Tags.
    pub tags: Vec<Tag>,
}

#[derive(Deserialize)]
struct ExperimentResponse {
    experiment: Experiment,
}

#[derive(Deserialize)]
struct RunResponse {
    run: Run,
}

impl MlflowClient {
    /// The experiment called `name`, `None` if there is none.
    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Option<Experiment>> {
        let r: Result<ExperimentResponse> = self
            .call::<(), _>(
                Method::GET,
                &format!("{API}/experiments/get-by-name"),
                &[("experiment_name", name.to_string())],
                None,
                Idempotent::Yes,
            )
            .await;
        match r {
            Ok(r) => Ok(Some(r.experiment)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The experiment with this id.
    pub async fn get_experiment(&self, experiment_id: &str) -> Result<Experiment> {
        let r: ExperimentResponse = self
            .call::<(), _>(
                Method::GET,
                &format!("{API}/experiments/get"),
                &[("experiment_id", experiment_id.to_string())],
                None,
                Idempotent::Yes,
            )
            .await?;
        Ok(r.experiment)
    }

    /// Creates an experiment; returns its id.
    pub async fn create_experiment(&self, name: &str, tags: &[Tag]) -> Result<String> {
        #[derive(Deserialize)]
        struct Created {
            experiment_id: String,
        }
        let r: Created = self
            .call(
                Method::POST,
                &format!("{API}/experiments/create"),
                &[],
                Some(&json!({ "name": name, "tags": tags })),
                Idempotent::No,
            )
            .await?;
        Ok(r.experiment_id)
    }

    /// Sets tag `key` of experiment `experiment_id`.
    pub async fn set_experiment_tag(
        &self,
        experiment_id: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        self.act(
            Method::POST,
            "experiments/set-experiment-tag",
            &json!({ "experiment_id": experiment_id, "key": key, "value": value }),
            Idempotent::Yes,
        )
        .await
    }

    /// The experiment called `name`, created (with `tags`) if missing; an existing experiment
    /// gets those of `tags` whose keys it lacks (values it has are kept). Safe when several
    /// processes race to create it: the loser of the race reads the winner's experiment.
    pub async fn get_or_create_experiment(&self, name: &str, tags: &[Tag]) -> Result<Experiment> {
        if let Some(mut exp) = self.get_experiment_by_name(name).await? {
            for tag in tags {
                if !exp.tags.iter().any(|t| t.key == tag.key) {
                    self.set_experiment_tag(&exp.experiment_id, &tag.key, &tag.value)
                        .await?;
                    exp.tags.push(tag.clone());
                }
            }
            return Ok(exp);
        }
        match self.create_experiment(name, tags).await {
            Ok(id) => self.get_experiment(&id).await,
            Err(MlflowError::AlreadyExists { .. }) => self
                .get_experiment_by_name(name)
                .await?
                .ok_or_else(|| MlflowError::Decode {
                    request: "GET /experiments/get-by-name".into(),
                    reason: format!("experiment {name:?} exists but cannot be read"),
                }),
            Err(e) => Err(e),
        }
    }

    /// Creates a run in `experiment_id`.
    pub async fn create_run(&self, experiment_id: &str, new: NewRun) -> Result<Run> {
        let user = new.user_id.unwrap_or_else(os_user);
        let mut tags = new.tags;
        if !tags.iter().any(|t| t.key == "mlflow.user") {
            tags.push(Tag::new("mlflow.user", &user));
        }
        let mut body = json!({
            "experiment_id": experiment_id,
            "user_id": user,
            "start_time": new.start_time.unwrap_or_else(now_millis),
            "tags": tags,
        });
        if let Some(name) = new.run_name {
            body["run_name"] = json!(name);
        }
        let r: RunResponse = self
            .call(
                Method::POST,
                &format!("{API}/runs/create"),
                &[],
                Some(&body),
                Idempotent::No,
            )
            .await?;
        Ok(r.run)
    }

    /// The run with this id.
    pub async fn get_run(&self, run_id: &str) -> Result<Run> {
        let r: RunResponse = self
            .call::<(), _>(
                Method::GET,
                &format!("{API}/runs/get"),
                &[("run_id", run_id.to_string())],
                None,
                Idempotent::Yes,
            )
            .await?;
        Ok(r.run)
    }

    /// Sets a run's status and end time (ms; `None` = now for terminal states).
    pub async fn update_run(
        &self,
        run_id: &str,
        status: RunStatus,
        end_time: Option<i64>,
    ) -> Result<()> {
        let mut body = json!({ "run_id": run_id, "status": status });
        let terminal = !matches!(status, RunStatus::Running | RunStatus::Scheduled);
        if let Some(end) = end_time.or_else(|| terminal.then(now_millis)) {
            body["end_time"] = json!(end);
        }
        self.act(Method::POST, "runs/update", &body, Idempotent::Yes)
            .await
    }

    /// Logs metrics, params and tags, split into calls within MLflow's limits (1000 metrics,
    /// 100 params, 100 tags, 1000 entities per call). Params go first, in their own calls.
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<()> {
        for chunk in params.chunks(MAX_PARAMS_PER_BATCH) {
            self.log_batch_call(run_id, &[], chunk, &[]).await?;
        }
        for chunk in tags.chunks(MAX_TAGS_PER_BATCH) {
            self.log_batch_call(run_id, &[], &[], chunk).await?;
        }
        for chunk in metrics.chunks(MAX_METRICS_PER_BATCH) {
            self.log_batch_call(run_id, chunk, &[], &[]).await?;
        }
        Ok(())
    }

    async fn log_batch_call(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<()> {
        let body = json!({ "run_id": run_id, "metrics": metrics, "params": params, "tags": tags });
        // log-batch is idempotent for metrics (same key/step/timestamp/value) and for params of
        // equal value, so it may be retried.
        self.act(Method::POST, "runs/log-batch", &body, Idempotent::Yes)
            .await
    }

    /// Logs one metric value.
    pub async fn log_metric(&self, run_id: &str, metric: &Metric) -> Result<()> {
        let mut body =
            serde_json::to_value(metric).map_err(|e| MlflowError::Config(e.to_string()))?;
        body["run_id"] = json!(run_id);
        self.act(Method::POST, "runs/log-metric", &body, Idempotent::Yes)
            .await
    }

    /// Logs one parameter.
    pub async fn log_param(&self, run_id: &str, key: &str, value: &str) -> Result<()> {
        let body = json!({ "run_id": run_id, "key": key, "value": value });
        self.act(Method::POST, "runs/log-parameter", &body, Idempotent::Yes)
            .await
    }

    /// Sets a tag on a run.
    pub async fn set_tag(&self, run_id: &str, key: &str, value: &str) -> Result<()> {
        let body = json!({ "run_id": run_id, "key": key, "value": value });
        self.act(Method::POST, "runs/set-tag", &body, Idempotent::Yes)
            .await
    }

    /// Records the datasets a run used (what MLflow's UI shows in its Datasets column). Give
    /// each input a `mlflow.data.context` tag (`training`, `validation`, `evaluation`).
    pub async fn log_inputs(&self, run_id: &str, datasets: &[DatasetInput]) -> Result<()> {
        let body = json!({ "run_id": run_id, "datasets": datasets });
        self.act(Method::POST, "runs/log-inputs", &body, Idempotent::Yes)
            .await
    }

    /// Searches runs; pages are fetched as the stream is read.
    pub fn search_runs(&self, search: RunSearch) -> impl Stream<Item = Result<Run>> + '_ {
        paginate(move |token| {
            let search = search.clone();
            async move {
                #[derive(Deserialize)]
                struct Page {
                    #[serde(default)]
                    runs: Vec<Run>,
                    #[serde(default)]
                    next_page_token: Option<String>,
                }
                let mut body = json!({
                    "experiment_ids": search.experiment_ids,
                    "run_view_type": search.view_type,
                    "max_results": search.page_size.unwrap_or(1000),
                    "order_by": search.order_by,
                });
                if let Some(f) = &search.filter {
                    body["filter"] = json!(f);
                }
                if let Some(t) = token {
                    body["page_token"] = json!(t);
                }
                let page: Page = self
                    .call(
                        Method::POST,
                        &format!("{API}/runs/search"),
                        &[],
                        Some(&body),
                        Idempotent::Yes,
                    )
                    .await?;
                Ok((page.runs, page.next_page_token))
            }
        })
    }

    /// Every value ever logged for `metric_key` in `run_id`, paged.
    pub fn metric_history<'a>(
        &'a self,
        run_id: &'a str,
        metric_key: &'a str,
        page_size: usize,
    ) -> impl Stream<Item = Result<Metric>> + 'a {
        paginate(move |token| async move {
            #[derive(Deserialize)]
            struct Page {
                #[serde(default)]
                metrics: Vec<Metric>,
                #[serde(default)]
                next_page_token: Option<String>,
            }
            let mut query = vec![
                ("run_id", run_id.to_string()),
                ("metric_key", metric_key.to_string()),
                ("max_results", page_size.to_string()),
            ];
            if let Some(t) = token {
                query.push(("page_token", t));
            }
            let page: Page = self
                .call::<(), _>(
                    Method::GET,
                    &format!("{API}/metrics/get-history"),
                    &query,
                    None,
                    Idempotent::Yes,
                )
                .await?;
            Ok((page.metrics, page.next_page_token))
        })
    }
}

/// The `mlflow.data.context` tag for a dataset input.
pub fn context_tag(context: &str) -> Tag {
    Tag::new("mlflow.data.context", context)
}

/// The OS user running this process: `$USER`, `$LOGNAME` (unset in many containers and
/// services), else what `id -un` says; "unknown" only when all three fail.
pub fn os_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        .or_else(|| {
            std::process::Command::new("id")
                .arg("-un")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .filter(|u| !u.is_empty())
        })
        .unwrap_or_else(|| "unknown".into())
}

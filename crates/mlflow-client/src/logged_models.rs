//! MLflow 3 logged models: created from a run, finalized, tagged, linked to a run's outputs,
//! read back and searched (as a stream).

use futures::Stream;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::client::{API, Idempotent, MlflowClient};
use crate::error::Result;
use crate::types::*;
use rest_transport::paginate;

#[derive(Deserialize)]
struct LoggedModelResponse {
    model: LoggedModel,
}

impl MlflowClient {
    /// Creates an MLflow 3 logged model (status pending) from a run.
    pub async fn create_logged_model(
        &self,
        experiment_id: &str,
        name: &str,
        source_run_id: Option<&str>,
        params: &[Param],
        tags: &[Tag],
    ) -> Result<LoggedModel> {
        let mut body =
            json!({ "experiment_id": experiment_id, "name": name, "params": params, "tags": tags });
        if let Some(run) = source_run_id {
            body["source_run_id"] = json!(run);
        }
        let r: LoggedModelResponse = self
            .call(
                Method::POST,
                &format!("{API}/logged-models"),
                &[],
                Some(&body),
                Idempotent::No,
            )
            .await?;
        Ok(r.model)
    }

    /// Marks a logged model ready (`LOGGED_MODEL_READY`).
    pub async fn finalize_logged_model(&self, model_id: &str) -> Result<LoggedModel> {
        self.set_logged_model_status(model_id, "LOGGED_MODEL_READY")
            .await
    }

    /// Sets a logged model's status: `LOGGED_MODEL_READY` or `LOGGED_MODEL_UPLOAD_FAILED`.
    pub async fn set_logged_model_status(
        &self,
        model_id: &str,
        status: &str,
    ) -> Result<LoggedModel> {
        let r: LoggedModelResponse = self
            .call(
                Method::PATCH,
                &format!("{API}/logged-models/{model_id}"),
                &[],
                Some(&json!({ "model_id": model_id, "status": status })),
                Idempotent::Yes,
            )
            .await?;
        Ok(r.model)
    }

    /// Sets tags on logged model `model_id`.
    pub async fn set_logged_model_tags(&self, model_id: &str, tags: &[Tag]) -> Result<()> {
        self.act(
            Method::PATCH,
            &format!("logged-models/{model_id}/tags"),
            &json!({ "tags": tags }),
            Idempotent::Yes,
        )
        .await
    }

    /// Records logged model `model_id` as an output of `run_id` at `step` (what the run page's
    /// "Logged models" lists).
    pub async fn log_outputs(&self, run_id: &str, model_id: &str, step: i64) -> Result<()> {
        let body = json!({ "run_id": run_id, "models": [{ "model_id": model_id, "step": step }] });
        self.act(Method::POST, "runs/outputs", &body, Idempotent::Yes)
            .await
    }

    /// The logged model with this id.
    pub async fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel> {
        let r: LoggedModelResponse = self
            .call::<(), _>(
                Method::GET,
                &format!("{API}/logged-models/{model_id}"),
                &[],
                None,
                Idempotent::Yes,
            )
            .await?;
        Ok(r.model)
    }

    /// Searches logged models of experiments (filter e.g. `name = 'unet'`), paged.
    pub fn search_logged_models(
        &self,
        experiment_ids: Vec<String>,
        filter: Option<String>,
    ) -> impl Stream<Item = Result<LoggedModel>> + '_ {
        paginate(move |token| {
            let (ids, filter) = (experiment_ids.clone(), filter.clone());
            async move {
                #[derive(Deserialize)]
                struct Page {
                    #[serde(default)]
                    models: Vec<LoggedModel>,
                    #[serde(default)]
                    next_page_token: Option<String>,
                }
                let mut body = json!({ "experiment_ids": ids, "max_results": 100 });
                if let Some(f) = filter {
                    body["filter"] = json!(f);
                }
                if let Some(t) = token {
                    body["page_token"] = json!(t);
                }
                let page: Page = self
                    .call(
                        Method::POST,
                        &format!("{API}/logged-models/search"),
                        &[],
                        Some(&body),
                        Idempotent::Yes,
                    )
                    .await?;
                Ok((page.models, page.next_page_token))
            }
        })
    }
}

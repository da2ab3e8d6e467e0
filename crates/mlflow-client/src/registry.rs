//! Model registry: registered models, model versions, tags, descriptions, aliases and the
//! legacy stage transitions.

use futures::Stream;
use reqwest::Method;
use rest_transport::ClientError as _;
use serde::Deserialize;
use serde_json::json;

use crate::client::{Idempotent, MlflowClient};
use crate::error::{MlflowError, Result};
use crate::types::*;
use rest_transport::paginate;

use crate::client::API;

/// What to register as a new model version.
#[derive(Debug, Clone, Default)]
pub struct NewModelVersion {
    /// Where the model files are: use immutable URIs (`lakefs://repo/<commit id>/...`).
    pub source: String,
    /// Run that produced the model.
    pub run_id: Option<String>,
    /// MLflow 3 logged model id.
    pub model_id: Option<String>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Description.
    pub description: Option<String>,
}

#[derive(Deserialize)]
struct RegisteredModelResponse {
    registered_model: RegisteredModel,
}

#[derive(Deserialize)]
struct ModelVersionResponse {
    model_version: ModelVersion,
}

/// Checks an alias against MLflow's reserved names before sending it.
fn check_alias(alias: &str) -> Result<()> {
    let lower = alias.to_ascii_lowercase();
    let reserved = lower == "latest"
        || (lower.len() > 1
            && lower.starts_with('v')
            && lower[1..].bytes().all(|b| b.is_ascii_digit()));
    if alias.is_empty() || reserved {
        return Err(MlflowError::InvalidParameter {
            request: "alias".into(),
            code: "INVALID_PARAMETER_VALUE".into(),
            message: format!(
                "alias {alias:?} is reserved or empty ('latest' and 'v<digits>' are MLflow's)"
            ),
        });
    }
    Ok(())
}

impl MlflowClient {
    /// Creates a registered model.
    pub async fn create_registered_model(
        &self,
        name: &str,
        tags: &[Tag],
        description: Option<&str>,
    ) -> Result<RegisteredModel> {
        let mut body = json!({ "name": name, "tags": tags });
        if let Some(d) = description {
            body["description"] = json!(d);
        }
        let r: RegisteredModelResponse = self
            .call(
                Method::POST,
                &format!("{API}/registered-models/create"),
                &[],
                Some(&body),
                Idempotent::No,
            )
            .await?;
        Ok(r.registered_model)
    }

    /// The registered model called `name`.
    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        let r: RegisteredModelResponse = self
            .call::<(), _>(
                Method::GET,
                &format!("{API}/registered-models/get"),
                &[("name", name.to_string())],
                None,
                Idempotent::Yes,
            )
            .await?;
        Ok(r.registered_model)
    }

    /// The registered model called `name`, created if missing (safe under concurrent creates).
    pub async fn get_or_create_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        match self.get_registered_model(name).await {
            Ok(m) => Ok(m),
            Err(e) if e.is_not_found() => match self.create_registered_model(name, &[], None).await
            {
                Ok(m) => Ok(m),
                Err(MlflowError::AlreadyExists { .. }) => self.get_registered_model(name).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Searches registered models (filter e.g. `name LIKE 'seg%'`), paged.
    pub fn search_registered_models(
        &self,
        filter: Option<String>,
    ) -> impl Stream<Item = Result<RegisteredModel>> + '_ {
        paginate(move |token| {
            let filter = filter.clone();
            async move {
                #[derive(Deserialize)]
                struct Page {
                    #[serde(default)]
                    registered_models: Vec<RegisteredModel>,
                    #[serde(default)]
                    next_page_token: Option<String>,
                }
                let mut query = vec![("max_results", "100".to_string())];
                if let Some(f) = filter {
                    query.push(("filter", f));
                }
                if let Some(t) = token {
                    query.push(("page_token", t));
                }
                let page: Page = self
                    .call::<(), _>(
                        Method::GET,
                        &format!("{API}/registered-models/search"),
                        &query,
                        None,
                        Idempotent::Yes,
                    )
                    .await?;
                Ok((page.registered_models, page.next_page_token))
            }
        })
    }

    /// Sets a tag on a registered model.
    pub async fn set_registered_model_tag(&self, name: &str, key: &str, value: &str) -> Result<()> {
        let body = json!({ "name": name, "key": key, "value": value });
        self.act(
            Method::POST,
            "registered-models/set-tag",
            &body,
            Idempotent::Yes,
        )
        .await
    }

    /// Sets a registered model's description.
    pub async fn update_registered_model(
        &self,
        name: &str,
        description: &str,
    ) -> Result<RegisteredModel> {
        let body = json!({ "name": name, "description": description });
        let r: RegisteredModelResponse = self
            .call(
                Method::PATCH,
                &format!("{API}/registered-models/update"),
                &[],
                Some(&body),
                Idempotent::Yes,
            )
            .await?;
        Ok(r.registered_model)
    }

    /// Registers a new version of `name`.
    pub async fn create_model_version(
        &self,
        name: &str,
        new: NewModelVersion,
    ) -> Result<ModelVersion> {
        let mut body = json!({ "name": name, "source": new.source, "tags": new.tags });
        if let Some(run) = new.run_id {
            body["run_id"] = json!(run);
        }
        if let Some(id) = new.model_id {
            body["model_id"] = json!(id);
        }
        if let Some(d) = new.description {
            body["description"] = json!(d);
        }
        let r: ModelVersionResponse = self
            .call(
                Method::POST,
                &format!("{API}/model-versions/create"),
                &[],
                Some(&body),
                Idempotent::No,
            )
            .await?;
        Ok(r.model_version)
    }

    /// Version `version` of `name`.
    pub async fn get_model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        let r: ModelVersionResponse = self
            .call::<(), _>(
                Method::GET,
                &format!("{API}/model-versions/get"),
                &[("name", name.to_string()), ("version", version.to_string())],
                None,
                Idempotent::Yes,
            )
            .await?;
        Ok(r.model_version)
    }

    /// Searches model versions with a filter such as `name='seg'`, `run_id='...'` or
    /// `tags.key='value'`, paged (MLflow serves this on GET only).
    pub fn search_model_versions(
        &self,
        filter: Option<String>,
        order_by: Vec<String>,
    ) -> impl Stream<Item = Result<ModelVersion>> + '_ {
        paginate(move |token| {
            let (filter, order_by) = (filter.clone(), order_by.clone());
            async move {
                #[derive(Deserialize)]
                struct Page {
                    #[serde(default)]
                    model_versions: Vec<ModelVersion>,
                    #[serde(default)]
                    next_page_token: Option<String>,
                }
                let mut query = vec![("max_results", "200".to_string())];
                if let Some(f) = filter {
                    query.push(("filter", f));
                }
                for o in order_by {
                    query.push(("order_by", o));
                }
                if let Some(t) = token {
                    query.push(("page_token", t));
                }
                let page: Page = self
                    .call::<(), _>(
                        Method::GET,
                        &format!("{API}/model-versions/search"),
                        &query,
                        None,
                        Idempotent::Yes,
                    )
                    .await?;
                Ok((page.model_versions, page.next_page_token))
            }
        })
    }

    /// Sets a tag on a model version.
    pub async fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        let body = json!({ "name": name, "version": version, "key": key, "value": value });
        self.act(
            Method::POST,
            "model-versions/set-tag",
            &body,
            Idempotent::Yes,
        )
        .await
    }

    /// Sets a model version's description.
    pub async fn update_model_version(
        &self,
        name: &str,
        version: &str,
        description: &str,
    ) -> Result<ModelVersion> {
        let body = json!({ "name": name, "version": version, "description": description });
        let r: ModelVersionResponse = self
            .call(
                Method::PATCH,
                &format!("{API}/model-versions/update"),
                &[],
                Some(&body),
                Idempotent::Yes,
            )
            .await?;
        Ok(r.model_version)
    }

    /// Legacy stage transition (`Staging`, `Production`, `Archived`, `None`), for old servers;
    /// prefer aliases.
    pub async fn transition_model_version_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing: bool,
    ) -> Result<ModelVersion> {
        let body = json!({ "name": name, "version": version, "stage": stage, "archive_existing_versions": archive_existing });
        let r: ModelVersionResponse = self
            .call(
                Method::POST,
                &format!("{API}/model-versions/transition-stage"),
                &[],
                Some(&body),
                Idempotent::Yes,
            )
            .await?;
        Ok(r.model_version)
    }

    /// Points `alias` of `name` at `version` (moving it if it pointed elsewhere).
    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        check_alias(alias)?;
        let body = json!({ "name": name, "alias": alias, "version": version });
        self.act(
            Method::POST,
            "registered-models/alias",
            &body,
            Idempotent::Yes,
        )
        .await
    }

    /// The version `alias` points at; `None` when the alias is not set (MLflow answers a 400
    /// INVALID_PARAMETER_VALUE for that, not a 404). A missing model is an error.
    pub async fn get_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<Option<ModelVersion>> {
        let r: Result<ModelVersionResponse> = self
            .call::<(), _>(
                Method::GET,
                &format!("{API}/registered-models/alias"),
                &[("name", name.to_string()), ("alias", alias.to_string())],
                None,
                Idempotent::Yes,
            )
            .await;
        match r {
            Ok(r) => Ok(Some(r.model_version)),
            // MLflow checks the model first (a missing one is RESOURCE_DOES_NOT_EXIST), then
            // answers an unset alias with INVALID_PARAMETER_VALUE.
            Err(MlflowError::InvalidParameter { code, .. })
                if code == "INVALID_PARAMETER_VALUE" =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes `alias` from `name` (DELETE with a JSON body).
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        let body = json!({ "name": name, "alias": alias });
        self.act(
            Method::DELETE,
            "registered-models/alias",
            &body,
            Idempotent::Yes,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_aliases_are_refused_locally() {
        assert!(super::check_alias("latest").is_err());
        assert!(super::check_alias("v12").is_err());
        assert!(super::check_alias("").is_err());
        assert!(super::check_alias("champion").is_ok());
        assert!(super::check_alias("v1beta").is_ok());
    }
}

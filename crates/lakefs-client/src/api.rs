//! Endpoints: health, setup, config, user, login, repositories, branches, commits, log, diff,
//! merge and tags. Listings are streams that page with `after`/`amount`.

use rest_transport::ClientError as _;
use std::collections::BTreeMap;

use futures::Stream;
use futures::stream::{self, StreamExt};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::client::{Idempotent, LakeFsClient, seg};
use crate::error::{LakeFsError, Result};
use crate::types::*;

impl LakeFsClient {
    /// Streams every item of a paged listing at `path` with extra `query` parameters.
    pub(crate) fn paged<T: DeserializeOwned + 'static>(
        &self,
        path: String,
        query: Vec<(&'static str, String)>,
    ) -> impl Stream<Item = Result<T>> + 'static {
        let client = self.clone();
        let amount = self.page_size().to_string();
        stream::unfold(Some(String::new()), move |after| {
            let (client, path, query, amount) =
                (client.clone(), path.clone(), query.clone(), amount.clone());
            async move {
                let after = after?;
                let mut q = query;
                q.push(("amount", amount));
                if !after.is_empty() {
                    q.push(("after", after));
                }
                match client
                    .json::<Page<T>>(Method::GET, &path, &q, None, Idempotent::Yes)
                    .await
                {
                    Ok(page) => {
                        let next = (page.pagination.has_more
                            && !page.pagination.next_offset.is_empty())
                        .then_some(page.pagination.next_offset);
                        let items: Vec<Result<T>> = page.results.into_iter().map(Ok).collect();
                        Some((stream::iter(items), next))
                    }
                    Err(e) => Some((stream::iter(vec![Err(e)]), None)),
                }
            }
        })
        .flatten()
    }

    /// `GET /healthcheck` (no credentials needed).
    pub async fn health(&self) -> Result<()> {
        self.text(Method::GET, "/healthcheck", &[], None, Idempotent::Yes)
            .await
            .map(|_| ())
    }

    /// `GET /setup_lakefs`.
    pub async fn setup_state(&self) -> Result<SetupState> {
        self.json(Method::GET, "/setup_lakefs", &[], None, Idempotent::Yes)
            .await
    }

    /// `POST /setup_lakefs`: first-time setup of an admin user with the given key.
    pub async fn setup(
        &self,
        username: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<CredentialsWithSecret> {
        let body = json!({"username": username, "key": {"access_key_id": access_key_id, "secret_access_key": secret_access_key}});
        self.json(
            Method::POST,
            "/setup_lakefs",
            &[],
            Some(&body),
            Idempotent::No,
        )
        .await
    }

    /// `GET /config/storage`.
    pub async fn storage_config(&self) -> Result<StorageConfig> {
        self.json(Method::GET, "/config/storage", &[], None, Idempotent::Yes)
            .await
    }

    /// `GET /config/version`.
    pub async fn version(&self) -> Result<VersionConfig> {
        self.json(Method::GET, "/config/version", &[], None, Idempotent::Yes)
            .await
    }

    /// `GET /user`: who the credentials belong to.
    pub async fn current_user(&self) -> Result<User> {
        #[derive(serde::Deserialize)]
        struct Current {
            user: User,
        }
        let c: Current = self
            .json(Method::GET, "/user", &[], None, Idempotent::Yes)
            .await?;
        Ok(c.user)
    }

    /// `POST /auth/login`: exchanges a key and secret for a token.
    pub async fn login(&self, access_key_id: &str, secret_access_key: &str) -> Result<String> {
        #[derive(serde::Deserialize)]
        struct Token {
            token: String,
        }
        let body = json!({"access_key_id": access_key_id, "secret_access_key": secret_access_key});
        let t: Token = self
            .json(
                Method::POST,
                "/auth/login",
                &[],
                Some(&body),
                Idempotent::Yes,
            )
            .await?;
        Ok(t.token)
    }

    /// Creates a repository.
    pub async fn create_repository(
        &self,
        name: &str,
        storage_namespace: &str,
        default_branch: &str,
    ) -> Result<Repository> {
        let body = json!({"name": name, "storage_namespace": storage_namespace, "default_branch": default_branch});
        self.json(
            Method::POST,
            "/repositories",
            &[],
            Some(&body),
            Idempotent::No,
        )
        .await
    }

    /// Gets a repository.
    pub async fn get_repository(&self, name: &str) -> Result<Repository> {
        self.json(
            Method::GET,
            &format!("/repositories/{}", seg(name)),
            &[],
            None,
            Idempotent::Yes,
        )
        .await
    }

    /// Deletes a repository.
    pub async fn delete_repository(&self, name: &str) -> Result<()> {
        self.text(
            Method::DELETE,
            &format!("/repositories/{}", seg(name)),
            &[],
            None,
            Idempotent::Yes,
        )
        .await
        .map(|_| ())
    }

    /// Lists repositories.
    pub fn list_repositories(&self) -> impl Stream<Item = Result<Repository>> + 'static {
        self.paged("/repositories".into(), vec![])
    }

    /// The repository, created if missing. A concurrent create is tolerated: the loser of the
    /// race gets 409 (repository exists) or, from lakeFS, 400 "storage namespace already in
    /// use" (the winner has written the namespace, and its repository record may follow a
    /// moment later); either way the repository is read back for up to 5 s, and the create's
    /// own error stands when it does not appear.
    pub async fn ensure_repository(
        &self,
        name: &str,
        storage_namespace: &str,
        default_branch: &str,
    ) -> Result<Repository> {
        match self.get_repository(name).await {
            Ok(r) => Ok(r),
            Err(e) if e.is_not_found() => match self
                .create_repository(name, storage_namespace, default_branch)
                .await
            {
                Ok(r) => Ok(r),
                Err(created @ (LakeFsError::Conflict { .. } | LakeFsError::BadRequest { .. })) => {
                    for _ in 0..20 {
                        match self.get_repository(name).await {
                            Ok(r) if r.storage_namespace == storage_namespace => return Ok(r),
                            Err(e) if e.is_not_found() => {
                                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                            }
                            Ok(_) | Err(_) => break,
                        }
                    }
                    Err(created)
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Creates branch `name` from `source` (branch, tag or commit); returns the commit id it
    /// points at (lakeFS answers 201 with the id as text).
    pub async fn create_branch(&self, repo: &str, name: &str, source: &str) -> Result<String> {
        let body = json!({"name": name, "source": source});
        let text = self
            .text(
                Method::POST,
                &format!("/repositories/{}/branches", seg(repo)),
                &[],
                Some(&body),
                Idempotent::No,
            )
            .await?;
        Ok(text.trim().trim_matches('"').to_string())
    }

    /// Gets a branch.
    pub async fn get_branch(&self, repo: &str, branch: &str) -> Result<Ref> {
        self.json(
            Method::GET,
            &format!("/repositories/{}/branches/{}", seg(repo), seg(branch)),
            &[],
            None,
            Idempotent::Yes,
        )
        .await
    }

    /// Deletes a branch.
    pub async fn delete_branch(&self, repo: &str, branch: &str) -> Result<()> {
        self.text(
            Method::DELETE,
            &format!("/repositories/{}/branches/{}", seg(repo), seg(branch)),
            &[],
            None,
            Idempotent::Yes,
        )
        .await
        .map(|_| ())
    }

    /// Lists branches.
    pub fn list_branches(&self, repo: &str) -> impl Stream<Item = Result<Ref>> + 'static {
        self.paged(format!("/repositories/{}/branches", seg(repo)), vec![])
    }

    /// The branch, created from `source` if missing.
    pub async fn ensure_branch(&self, repo: &str, branch: &str, source: &str) -> Result<Ref> {
        match self.get_branch(repo, branch).await {
            Ok(r) => Ok(r),
            Err(e) if e.is_not_found() => match self.create_branch(repo, branch, source).await {
                Ok(_) | Err(LakeFsError::Conflict { .. }) => self.get_branch(repo, branch).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Discards uncommitted changes of a branch (all, one object, or a prefix).
    pub async fn reset_branch(&self, repo: &str, branch: &str, scope: ResetScope) -> Result<()> {
        let body = match scope {
            ResetScope::All => json!({"type": "reset"}),
            ResetScope::Object(p) => json!({"type": "object", "path": p}),
            ResetScope::Prefix(p) => json!({"type": "common_prefix", "path": p}),
        };
        self.text(
            Method::PUT,
            &format!("/repositories/{}/branches/{}", seg(repo), seg(branch)),
            &[],
            Some(&body),
            Idempotent::Yes,
        )
        .await
        .map(|_| ())
    }

    /// Commits a branch's staged changes. With no changes lakeFS answers 400 unless
    /// `allow_empty`.
    pub async fn commit(
        &self,
        repo: &str,
        branch: &str,
        message: &str,
        metadata: &BTreeMap<String, String>,
        allow_empty: bool,
    ) -> Result<Commit> {
        let body = json!({"message": message, "metadata": metadata, "allow_empty": allow_empty});
        self.json(
            Method::POST,
            &format!(
                "/repositories/{}/branches/{}/commits",
                seg(repo),
                seg(branch)
            ),
            &[],
            Some(&body),
            Idempotent::No,
        )
        .await
    }

    /// Gets a commit by id.
    pub async fn get_commit(&self, repo: &str, commit_id: &str) -> Result<Commit> {
        self.json(
            Method::GET,
            &format!("/repositories/{}/commits/{}", seg(repo), seg(commit_id)),
            &[],
            None,
            Idempotent::Yes,
        )
        .await
    }

    /// The commit log from `reference`, newest first.
    pub fn log(&self, repo: &str, reference: &str) -> impl Stream<Item = Result<Commit>> + 'static {
        self.paged(
            format!(
                "/repositories/{}/refs/{}/commits",
                seg(repo),
                seg(reference)
            ),
            vec![],
        )
    }

    /// Resolves a branch, tag or commit id to a full commit id.
    pub async fn resolve_commit(&self, repo: &str, reference: &str) -> Result<String> {
        // lakeFS answers 400 to a ref expression (`dev~1`) as a branch or tag name: not one.
        let not_a_name =
            |e: &LakeFsError| e.is_not_found() || matches!(e, LakeFsError::BadRequest { .. });
        match self.get_branch(repo, reference).await {
            Ok(r) => return Ok(r.commit_id),
            Err(e) if !not_a_name(&e) => return Err(e),
            Err(_) => {}
        }
        match self.get_tag(repo, reference).await {
            Ok(r) => return Ok(r.commit_id),
            Err(e) if !not_a_name(&e) => return Err(e),
            Err(_) => {}
        }
        Ok(self.get_commit(repo, reference).await?.id)
    }

    /// Uncommitted changes of a branch.
    pub fn diff_uncommitted(
        &self,
        repo: &str,
        branch: &str,
    ) -> impl Stream<Item = Result<Diff>> + 'static {
        self.paged(
            format!("/repositories/{}/branches/{}/diff", seg(repo), seg(branch)),
            vec![],
        )
    }

    /// Changes between two refs (what `right` has that `left` does not, and vice versa).
    pub fn diff_refs(
        &self,
        repo: &str,
        left: &str,
        right: &str,
    ) -> impl Stream<Item = Result<Diff>> + 'static {
        self.paged(
            format!(
                "/repositories/{}/refs/{}/diff/{}",
                seg(repo),
                seg(left),
                seg(right)
            ),
            vec![],
        )
    }

    /// Merges `source` into branch `destination`; returns the resulting commit id. Conflicts
    /// are [`LakeFsError::Conflict`].
    pub async fn merge(
        &self,
        repo: &str,
        source: &str,
        destination: &str,
        options: &MergeOptions,
    ) -> Result<String> {
        #[derive(serde::Deserialize)]
        struct MergeResult {
            reference: String,
        }
        let mut body = json!({"metadata": options.metadata, "allow_empty": options.allow_empty});
        if let Some(m) = &options.message {
            body["message"] = json!(m);
        }
        if let Some(s) = options.strategy {
            body["strategy"] = json!(s);
        }
        let r: MergeResult = self
            .json(
                Method::POST,
                &format!(
                    "/repositories/{}/refs/{}/merge/{}",
                    seg(repo),
                    seg(source),
                    seg(destination)
                ),
                &[],
                Some(&body),
                Idempotent::No,
            )
            .await?;
        Ok(r.reference)
    }

    /// Creates tag `id` at `reference`.
    pub async fn create_tag(&self, repo: &str, id: &str, reference: &str) -> Result<Ref> {
        let body = json!({"id": id, "ref": reference});
        self.json(
            Method::POST,
            &format!("/repositories/{}/tags", seg(repo)),
            &[],
            Some(&body),
            Idempotent::No,
        )
        .await
    }

    /// Gets a tag.
    pub async fn get_tag(&self, repo: &str, id: &str) -> Result<Ref> {
        self.json(
            Method::GET,
            &format!("/repositories/{}/tags/{}", seg(repo), seg(id)),
            &[],
            None,
            Idempotent::Yes,
        )
        .await
    }

    /// Lists tags.
    pub fn list_tags(&self, repo: &str) -> impl Stream<Item = Result<Ref>> + 'static {
        self.paged(format!("/repositories/{}/tags", seg(repo)), vec![])
    }

    /// Deletes a tag.
    pub async fn delete_tag(&self, repo: &str, id: &str) -> Result<()> {
        self.text(
            Method::DELETE,
            &format!("/repositories/{}/tags/{}", seg(repo), seg(id)),
            &[],
            None,
            Idempotent::Yes,
        )
        .await
        .map(|_| ())
    }
}

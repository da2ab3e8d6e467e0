//! The lakeFS a test talks to: lakeFS itself when `LAKEFS_TEST_ENDPOINT` names one (the test
//! command starts it with `scripts/stack.sh up lakefs`, or `scale`), else a lakefs-local server
//! of the test's own. One place reads the `LAKEFS_TEST_*` variables.

use lakefs_client::ClientBuilder as _;
use lakefs_client::{LakeFsClient, LakeFsClientBuilder};

use crate::{LocalLakeFs, fast_retry};

/// A lakeFS the tests did not start, named by `LAKEFS_TEST_ENDPOINT`,
/// `LAKEFS_TEST_ACCESS_KEY_ID`, `LAKEFS_TEST_SECRET_ACCESS_KEY` and `LAKEFS_TEST_NAMESPACE` (the
/// storage namespace root of test repositories, default `local://seg-mlops-tests`).
#[derive(Debug, Clone)]
pub struct RealLakeFs {
    /// Its URL.
    pub endpoint: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// Where test repositories keep their objects (`<root>/<repository>`).
    pub namespace_root: String,
}

impl RealLakeFs {
    /// The lakeFS named by `LAKEFS_TEST_ENDPOINT`, or `None` when it is unset. Its keys are
    /// required then: a missing one is a loud failure naming the command that starts lakeFS.
    pub fn from_env() -> Option<Self> {
        let endpoint = std::env::var("LAKEFS_TEST_ENDPOINT").ok()?;
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "LAKEFS_TEST_ENDPOINT is set but {name} is not: the real-lakeFS tests need \
                     LAKEFS_TEST_ENDPOINT, LAKEFS_TEST_ACCESS_KEY_ID and LAKEFS_TEST_SECRET_ACCESS_KEY \
                     (scripts/test.sh sets them from `scripts/stack.sh up lakefs`)"
                )
            })
        };
        Some(Self {
            endpoint,
            access_key_id: var("LAKEFS_TEST_ACCESS_KEY_ID"),
            secret_access_key: var("LAKEFS_TEST_SECRET_ACCESS_KEY"),
            namespace_root: std::env::var("LAKEFS_TEST_NAMESPACE")
                .unwrap_or_else(|_| "local://seg-mlops-tests".into()),
        })
    }

    /// The lakeFS named by `LAKEFS_TEST_ENDPOINT`; a loud failure when it is unset.
    pub fn required() -> Self {
        Self::from_env().unwrap_or_else(|| {
            panic!(
                "LAKEFS_TEST_ENDPOINT is not set: this suite runs against lakeFS itself. Start one with \
                 `eval \"$(scripts/stack.sh up lakefs)\"` and export LAKEFS_TEST_ENDPOINT=$LAKECTL_SERVER_ENDPOINT_URL, \
                 LAKEFS_TEST_ACCESS_KEY_ID and LAKEFS_TEST_SECRET_ACCESS_KEY (scripts/test.sh does)"
            )
        })
    }

    /// The storage namespace of test repository `repo`.
    pub fn namespace(&self, repo: &str) -> String {
        format!("{}/{repo}", self.namespace_root.trim_end_matches('/'))
    }

    /// A client with fast retries and `page_size` items per page, checked to answer.
    pub async fn client(&self, page_size: usize) -> LakeFsClient {
        let client = LakeFsClientBuilder::new(&self.endpoint)
            .credentials(&self.access_key_id, &self.secret_access_key)
            .retry(fast_retry())
            .page_size(page_size)
            .build()
            .await
            .expect("lakeFS client");
        if let Err(e) = client.health().await {
            panic!(
                "lakeFS at {} does not answer its health check: {e}. Start it with `scripts/stack.sh up lakefs`",
                self.endpoint
            );
        }
        client
    }
}

/// The lakeFS of one test: lakeFS itself ([`RealLakeFs::from_env`]) or a lakefs-local server.
pub enum TestLakeFs {
    /// A lakefs-local server of this test's own.
    Local(LocalLakeFs),
    /// lakeFS itself, shared by the tests of a run (each uses repositories of its own).
    Real(RealLakeFs),
}

impl TestLakeFs {
    /// lakeFS itself when `LAKEFS_TEST_ENDPOINT` is set, else a new lakefs-local server.
    pub async fn start() -> Self {
        match RealLakeFs::from_env() {
            Some(real) => Self::Real(real),
            None => Self::Local(LocalLakeFs::start().await),
        }
    }

    /// Its URL.
    pub fn endpoint(&self) -> String {
        match self {
            Self::Local(l) => l.endpoint(),
            Self::Real(r) => r.endpoint.clone(),
        }
    }

    /// The access key id and secret of its admin user.
    pub fn keys(&self) -> (String, String) {
        match self {
            Self::Local(_) => (
                lakefs_local::DEFAULT_ACCESS_KEY_ID.to_string(),
                lakefs_local::DEFAULT_SECRET_ACCESS_KEY.to_string(),
            ),
            Self::Real(r) => (r.access_key_id.clone(), r.secret_access_key.clone()),
        }
    }

    /// The storage namespace of test repository `repo`.
    pub fn namespace(&self, repo: &str) -> String {
        match self {
            Self::Local(l) => l.namespace(repo),
            Self::Real(r) => r.namespace(repo),
        }
    }

    /// A client with the admin keys, fast retries and `page_size` items per page.
    pub async fn client(&self, page_size: usize) -> LakeFsClient {
        match self {
            Self::Local(l) => l.client(page_size).await,
            Self::Real(r) => r.client(page_size).await,
        }
    }

    /// The lakefs-local server, for a test that stops or inspects it; such a test runs on
    /// lakefs-local only, and says so loudly when pointed at lakeFS itself.
    pub fn local(&mut self) -> &mut LocalLakeFs {
        match self {
            Self::Local(l) => l,
            Self::Real(r) => panic!(
                "this test stops or inspects the lakeFS server, which it can do to lakefs-local only; \
                 it was pointed at {} (unset LAKEFS_TEST_ENDPOINT)",
                r.endpoint
            ),
        }
    }
}

//! The conformance suite (tests/suite) against lakefs-local, one test per area, each on its
//! own server. Every JSON response the server sends is validated against its operation's
//! schema in the official OpenAPI spec (`../shared/specs/lakefs-openapi.yml`). The same suite
//! runs against a real lakeFS in `real_lakefs.rs` when one is configured.
#![allow(clippy::too_many_lines)] // end-to-end scenarios read best in one piece

mod suite;

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use lakefs_client::{LakeFsClientBuilder, LakeFsError};
use suite::Target;

/// lakefs-local with a response tap, as a suite target.
struct LocalTarget {
    target: Target,
    tap: lakefs_local::Tap,
    server: test_support::LocalLakeFs,
}

impl std::ops::Deref for LocalTarget {
    type Target = Target;
    fn deref(&self) -> &Target {
        &self.target
    }
}

impl LocalTarget {
    /// Checks every JSON response against the spec, then stops the server.
    async fn finish(self) {
        let records = self.tap.lock().expect("tap").clone();
        let checked = validate_against_spec(&records);
        assert!(checked > 0, "no JSON response was validated");
        self.server.server.stop().await;
    }
}

async fn local_target() -> LocalTarget {
    let tap: lakefs_local::Tap = Arc::new(Mutex::new(Vec::new()));
    let server = test_support::LocalLakeFs::start_with_tap(Some(tap.clone())).await;
    // Page size 2 exercises pagination everywhere.
    let client = server.client(2).await;
    let namespace_root = format!("local://{}", server.dir.path().join("ns").display());
    LocalTarget {
        target: Target {
            client,
            namespace_root,
            local: true,
        },
        tap,
        server,
    }
}

conformance_tests!(local_target);

fn spec() -> &'static serde_json::Value {
    static SPEC: OnceLock<serde_json::Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let spec_path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/specs/lakefs-openapi.yml");
        let text = std::fs::read_to_string(&spec_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", spec_path.display()));
        serde_norway::from_str(&text).expect("spec parses")
    })
}

/// Validates every recorded JSON response against the schema of its operation and status.
fn validate_against_spec(records: &[lakefs_local::TapRecord]) -> usize {
    let spec = spec();
    let mut checked = 0;
    let mut failures = Vec::new();
    for r in records {
        if r.body.is_empty() {
            continue;
        }
        let route = r.route.strip_prefix("/api/v1").unwrap_or(&r.route);
        let op = &spec["paths"][route][r.method.to_ascii_lowercase()];
        assert!(
            !op.is_null(),
            "{} {route} is not an operation of the spec",
            r.method
        );
        let responses = &op["responses"];
        let response = if responses[r.status.to_string()].is_null() {
            &responses["default"]
        } else {
            &responses[r.status.to_string()]
        };
        let response = match response["$ref"].as_str() {
            Some(reference) => {
                &spec["components"]["responses"][reference.rsplit('/').next().unwrap_or_default()]
            }
            None => response,
        };
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            !schema.is_null(),
            "{} {route} -> {}: the spec defines no JSON body for this status",
            r.method,
            r.status
        );
        let mut doc = serde_json::json!({ "allOf": [schema], "components": spec["components"] });
        doc["$schema"] = "http://json-schema.org/draft-07/schema#".into();
        let validator = jsonschema::validator_for(&doc).expect("schema compiles");
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
        if let Err(e) = validator.validate(&body) {
            failures.push(format!(
                "{} {route} -> {}: {e}\n  body: {}",
                r.method,
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "responses that do not fit the spec:\n{}",
        failures.join("\n")
    );
    checked
}

#[tokio::test]
async fn token_login_and_setup_of_an_initialised_server() {
    let target = local_target().await;
    let token_client = LakeFsClientBuilder::new(target.server.endpoint())
        .credentials(
            lakefs_local::DEFAULT_ACCESS_KEY_ID,
            lakefs_local::DEFAULT_SECRET_ACCESS_KEY,
        )
        .token_login(true)
        .build()
        .await
        .expect("token login");
    token_client.current_user().await.expect("user via token");
    let err = target
        .client
        .setup("admin", "AKIA", "secret")
        .await
        .expect_err("already set up");
    assert!(matches!(err, LakeFsError::Conflict { .. }), "{err}");
    target.finish().await;
}

/// What lakeFS's own clients send and expect at the HTTP level: `GET /config`, an empty JSON
/// body where the body is optional, JSON errors for every failure, ref expressions.
#[tokio::test]
async fn raw_http_behaviour_matches_lakefs() {
    let target = local_target().await;
    let base = format!("{}/api/v1", target.server.endpoint());
    let http = reqwest::Client::new();
    let auth = |r: reqwest::RequestBuilder| {
        r.basic_auth(
            lakefs_local::DEFAULT_ACCESS_KEY_ID,
            Some(lakefs_local::DEFAULT_SECRET_ACCESS_KEY),
        )
    };
    let config: serde_json::Value = auth(http.get(format!("{base}/config")))
        .send()
        .await
        .expect("config")
        .json()
        .await
        .expect("json");
    assert_eq!(config["storage_config"]["blockstore_type"], "local");
    assert_eq!(config["storage_config_list"][0]["blockstore_type"], "local");
    assert!(config["version_config"]["version"].is_string());

    let repo = target.fresh_repo("raw").await;
    target
        .client
        .create_branch(&repo, "feature", "main")
        .await
        .expect("branch");
    target
        .client
        .upload_bytes(&repo, "feature", "f.txt", "f".into(), &Default::default())
        .await
        .expect("upload");
    target
        .client
        .commit(&repo, "feature", "f", &Default::default(), false)
        .await
        .expect("commit");
    // Merge with Content-Type: application/json and no body (the official SDK's default).
    let merged = auth(http.post(format!(
        "{base}/repositories/{repo}/refs/feature/merge/main"
    )))
    .header("content-type", "application/json")
    .send()
    .await
    .expect("merge");
    assert_eq!(merged.status(), 200, "{:?}", merged.text().await);

    // Every failure is JSON {"message": ...} with the right status.
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (
            auth(http.post(format!("{base}/repositories/{repo}/branches")))
                .header("content-type", "application/json")
                .body("{not json"),
            400,
        ),
        (auth(http.patch(format!("{base}/repositories/{repo}"))), 405),
        (
            auth(http.get(format!(
                "{target_root}/nowhere",
                target_root = target.server.endpoint()
            ))),
            404,
        ),
        (
            auth(http.get(format!("{base}/repositories/{repo}/refs/main~9/commits"))),
            404,
        ),
        (
            auth(http.get(format!("{base}/repositories/{repo}/refs/main^9/commits"))),
            400,
        ),
        (
            auth(http.get(format!("{base}/repositories/{repo}/refs/main~1@/commits"))),
            400,
        ),
        (http.get(format!("{base}/repositories")), 401),
    ];
    for (request, status) in cases {
        let resp = request.send().await.expect("send");
        let url = resp.url().to_string();
        assert_eq!(resp.status().as_u16(), status, "{url}");
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            ct.starts_with("application/json"),
            "{url}: content type {ct:?}"
        );
        let body: serde_json::Value = resp.json().await.expect("JSON error body");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{url}: {body}"
        );
    }
    target.finish().await;
}

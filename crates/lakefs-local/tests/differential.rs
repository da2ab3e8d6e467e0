//! lakefs-local judged by lakeFS itself: one scripted sequence of API calls (repositories and
//! metadata, branches, uploads with checksums, stat, listing with paging and delimiters, commits
//! with metadata, diff, log, tags, merges, also into a branch with uncommitted changes,
//! conflicts and strategies, revert, cherry-pick, reset, the error statuses and their bodies)
//! is sent to lakefs-local and to lakeFS, and every answer is compared: the status, and the body
//! once ids and times are replaced by placeholders numbered in order of appearance (so "the
//! parent is the commit seen two steps ago" is compared, not the hash itself). An error's
//! `message` is compared by its presence and by the one phrase clients act on ("no changes",
//! lakeFS's ErrNoChanges); the wording is free (lakefs-local's names the missing thing).
//!
//! Built with the `real-lakefs-tests` feature; the test command runs it against the lakeFS of
//! `scripts/stack.sh up lakefs` (LAKEFS_TEST_* variables). Every divergence either fails the
//! test or is listed in [`KEPT`] with the reason it stays (README, "lakefs-local and lakeFS").

#[path = "differential/script.rs"]
mod differential_script;

use std::collections::BTreeMap;

use differential_script::{Body, SCRIPT, Step};
use serde_json::Value;
use test_support::{LocalLakeFs, RealLakeFs};

/// Divergences that stay, by step name, with the reason (the README lists the same).
const KEPT: &[(&str, &str)] = &[];

/// One server under test.
struct Server {
    api: String,
    key: String,
    secret: String,
    namespace_root: String,
    http: reqwest::Client,
}

/// What one call answered, normalised.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    body: Value,
}

impl Server {
    /// Runs the whole script; returns each step's normalised answer.
    async fn run(&self, repo: &str) -> Vec<Answer> {
        let mut vars = BTreeMap::from([
            ("repo".to_string(), repo.to_string()),
            (
                "ns".to_string(),
                format!("{}/{repo}", self.namespace_root.trim_end_matches('/')),
            ),
        ]);
        let mut ids = Ids::default();
        let mut answers = Vec::new();
        for step in SCRIPT {
            let (status, body) = self.call(step, &vars).await;
            for (name, pointer) in step.capture {
                let value = body
                    .pointer(pointer)
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: step {} has no string at {pointer} to capture: {status} {body}",
                            self.api, step.name
                        )
                    });
                vars.insert((*name).to_string(), value.to_string());
            }
            let body = if status >= 400 {
                error_shape(body)
            } else {
                body
            };
            answers.push(Answer {
                status,
                body: ids.normalise(body),
            });
        }
        answers
    }

    async fn call(&self, step: &Step, vars: &BTreeMap<String, String>) -> (u16, Value) {
        let path = fill(step.path, vars);
        let method = reqwest::Method::from_bytes(step.method.as_bytes()).expect("a method");
        let mut req = self.http.request(method, format!("{}{path}", self.api));
        req = match step.auth {
            differential_script::Auth::Admin => req.basic_auth(&self.key, Some(&self.secret)),
            differential_script::Auth::WrongSecret => {
                req.basic_auth(&self.key, Some("not-the-secret"))
            }
            differential_script::Auth::None => req,
        };
        for (name, value) in step.headers {
            req = req.header(*name, *value);
        }
        req = match &step.body {
            Body::Empty => req,
            Body::Json(text) => req
                .header("content-type", "application/json")
                .body(fill(text, vars)),
            Body::Bytes(bytes) => req
                .header("content-type", "application/octet-stream")
                .body(bytes.to_vec()),
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: step {}: {e}", self.api, step.name));
        let status = resp.status().as_u16();
        let is_json = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let bytes = resp.bytes().await.expect("read the body");
        let body = if bytes.is_empty() {
            Value::Null
        } else if is_json {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&bytes).trim().to_string())
            })
        } else {
            Value::String(String::from_utf8_lossy(&bytes).trim().to_string())
        };
        (status, body)
    }
}

/// An error body with its `message` reduced to what clients may rely on: that there is one, and
/// whether it says "no changes".
fn error_shape(mut body: Value) -> Value {
    if let Some(m) = body.get_mut("message") {
        let says_no_changes = m.as_str().is_some_and(|s| s.contains("no changes"));
        *m = Value::String(
            if says_no_changes {
                "<message: no changes>"
            } else {
                "<message>"
            }
            .into(),
        );
    }
    body
}

/// `{name}` in `template` replaced by the value of variable `name`.
fn fill(template: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// Keys whose values differ between any two servers by nature: times, storage addresses.
const VOLATILE: &[&str] = &[
    "creation_date",
    "mtime",
    "physical_address",
    "physical_address_expiry",
    "storage_namespace",
    "meta_range_id",
    "storage_id",
];

/// Numbers 64-hex ids (commit ids) in order of first appearance: `<id1>`, `<id2>`, ...
#[derive(Default)]
struct Ids {
    seen: BTreeMap<String, usize>,
}

impl Ids {
    fn normalise(&mut self, value: Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        if VOLATILE.contains(&k.as_str()) && !v.is_null() {
                            let kind = if v.is_string() { "<string>" } else { "<value>" };
                            (k, Value::String(kind.into()))
                        } else {
                            let v = self.normalise(v);
                            (k, v)
                        }
                    })
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.normalise(v)).collect())
            }
            Value::String(s) => Value::String(self.replace_ids(&s)),
            other => other,
        }
    }

    /// Every maximal run of exactly 64 lowercase hex digits replaced by its number.
    fn replace_ids(&mut self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let run = bytes[i..]
                .iter()
                .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                .count();
            if run == 64 {
                let next = self.seen.len() + 1;
                let n = *self.seen.entry(s[i..i + 64].to_string()).or_insert(next);
                out.push_str(&format!("<id{n}>"));
                i += 64;
            } else if run > 0 {
                out.push_str(&s[i..i + run]);
                i += run;
            } else {
                let c = s[i..].chars().next().expect("a char");
                out.push(c);
                i += c.len_utf8();
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lakefs_local_answers_the_script_as_lakefs_does() {
    let real = RealLakeFs::required();
    // lakeFS answers first: a script that lakeFS itself does not run as written is a bad script.
    let _ = real.client(100).await;
    let local = LocalLakeFs::start().await;
    let repo = test_support::unique("diff").to_ascii_lowercase();
    let http = reqwest::Client::new();
    let lakefs = Server {
        api: format!("{}/api/v1", real.endpoint.trim_end_matches('/')),
        key: real.access_key_id.clone(),
        secret: real.secret_access_key.clone(),
        namespace_root: real.namespace_root.clone(),
        http: http.clone(),
    };
    let ours = Server {
        api: format!("{}/api/v1", local.endpoint()),
        key: lakefs_local::DEFAULT_ACCESS_KEY_ID.into(),
        secret: lakefs_local::DEFAULT_SECRET_ACCESS_KEY.into(),
        namespace_root: format!("local://{}", local.dir.path().join("ns").display()),
        http,
    };
    let theirs = lakefs.run(&repo).await;
    let mine = ours.run(&repo).await;

    let mut table = String::from("step | lakeFS | lakefs-local | verdict\n");
    let mut unexplained = Vec::new();
    let mut kept_seen = Vec::new();
    let mut same = 0;
    for ((step, t), m) in SCRIPT.iter().zip(&theirs).zip(&mine) {
        let kept = KEPT.iter().find(|(name, _)| *name == step.name);
        let verdict = if t == m {
            same += 1;
            "same".to_string()
        } else if let Some((_, why)) = kept {
            kept_seen.push(step.name);
            format!("kept: {why}")
        } else {
            unexplained.push(format!(
                "{} ({} {}):\n  lakeFS:       {} {}\n  lakefs-local: {} {}",
                step.name, step.method, step.path, t.status, t.body, m.status, m.body
            ));
            "DIVERGES".to_string()
        };
        table.push_str(&format!(
            "{} | {} | {} | {verdict}\n",
            step.name, t.status, m.status
        ));
    }
    println!("{table}");
    println!(
        "{} calls: {same} the same, {} kept divergences, {} unexplained",
        SCRIPT.len(),
        kept_seen.len(),
        unexplained.len()
    );
    assert!(
        unexplained.is_empty(),
        "lakefs-local diverges from lakeFS {LAKEFS}:\n{}",
        unexplained.join("\n"),
        LAKEFS = real.endpoint
    );
    // A kept divergence that no longer diverges is stale: drop it from KEPT and the README.
    for (name, _) in KEPT {
        assert!(
            kept_seen.contains(name),
            "step {name} is listed in KEPT but no longer diverges"
        );
    }
}

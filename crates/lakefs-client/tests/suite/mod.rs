//! The conformance suite, in the style of object_store's integration.rs: each test drives the
//! client through one area of the API and asserts lakeFS's behaviour, on its own repository, so
//! one failure does not hide the others. `conformance.rs` runs it against lakefs-local (whose
//! every JSON response is then validated against the official OpenAPI spec); `real_lakefs.rs`
//! runs it against a real lakeFS.
#![allow(clippy::too_many_lines)] // end-to-end scenarios read best in one piece
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use futures::TryStreamExt;
use lakefs_client::*;

/// What the suite runs against.
pub struct Target {
    /// A client of the server.
    pub client: LakeFsClient,
    /// Root of storage namespaces for new repositories.
    pub namespace_root: String,
    /// lakefs-local (asserts its local blockstore's specifics).
    pub local: bool,
}

impl Target {
    /// A new repository with a `main` branch; returns its name.
    pub async fn fresh_repo(&self, label: &str) -> String {
        let repo = test_support::unique(label);
        let ns = format!("{}/{repo}", self.namespace_root.trim_end_matches('/'));
        self.client
            .create_repository(&repo, &ns, "main")
            .await
            .expect("create repo");
        repo
    }
}

/// Generates one `#[tokio::test]` per area, each getting its target from `$target` (an async
/// fn returning a guard that derefs to [`Target`] and checks what it recorded when dropped).
#[macro_export]
macro_rules! conformance_tests {
    ($target:path) => {
        $crate::conformance_tests!(@each $target;
            service_config_and_user, repositories_and_branches, objects_and_listings,
            commits_refs_and_merges, transactions, folder_sync, concurrent_repository_creation);
    };
    (@each $target:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let target = $target().await;
                suite::$name(&target).await;
                target.finish().await;
            }
        )*
    };
}

fn objects_md5_ok(checksum: &str, content: &[u8]) -> bool {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(content)) == checksum
}

/// Health, setup state, storage and version config, the current user.
pub async fn service_config_and_user(t: &Target) {
    let (client, local) = (&t.client, t.local);
    // Health, setup, config, user, token login.
    client.health().await.expect("health");
    assert_eq!(
        client
            .setup_state()
            .await
            .expect("setup state")
            .state
            .as_deref(),
        Some("initialized")
    );
    let storage = client.storage_config().await.expect("storage config");
    if local {
        assert_eq!(storage.blockstore_type, "local");
        assert!(
            !storage.pre_sign_support,
            "the local blockstore has no presign"
        );
    }
    assert!(client.version().await.expect("version").version.is_some());
    assert!(!client.current_user().await.expect("user").id.is_empty());
}

/// Repositories (create, conflict, ensure, list, missing) and branches.
pub async fn repositories_and_branches(t: &Target) {
    let client = &t.client;
    let namespace_root = &t.namespace_root;
    // Repositories.
    let repo = test_support::unique("conf-repo");
    let ns = format!("{}/{repo}", namespace_root.trim_end_matches('/'));
    let created = client
        .create_repository(&repo, &ns, "main")
        .await
        .expect("create repo");
    assert_eq!(
        (created.id.as_str(), created.default_branch.as_str()),
        (repo.as_str(), "main")
    );
    let err = client
        .create_repository(&repo, &ns, "main")
        .await
        .expect_err("duplicate repo");
    assert!(matches!(err, LakeFsError::Conflict { .. }), "{err}");
    assert_eq!(
        client
            .ensure_repository(&repo, &ns, "main")
            .await
            .expect("ensure")
            .id,
        repo
    );
    let repos: Vec<Repository> = client
        .list_repositories()
        .try_collect()
        .await
        .expect("list repos");
    assert!(repos.iter().any(|r| r.id == repo));
    let err = client
        .get_repository("no-such-repo-xyz")
        .await
        .expect_err("missing");
    assert!(err.is_not_found(), "{err}");

    // Branches: create answers the commit id as text.
    let main = client.get_branch(&repo, "main").await.expect("main");
    let dev_commit = client
        .create_branch(&repo, "dev", "main")
        .await
        .expect("create branch");
    assert_eq!(dev_commit, main.commit_id);
    assert!(matches!(
        client.create_branch(&repo, "dev", "main").await,
        Err(LakeFsError::Conflict { .. })
    ));
    assert!(
        client
            .create_branch(&repo, "ghost", "no-such-ref")
            .await
            .expect_err("bad source")
            .is_not_found()
    );
    client
        .ensure_branch(&repo, "scratch", "main")
        .await
        .expect("ensure branch");
    let branches: Vec<Ref> = client
        .list_branches(&repo)
        .try_collect()
        .await
        .expect("branches");
    assert_eq!(
        branches.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        vec!["dev", "main", "scratch"]
    );

    // Branch deletion; the repository last.
    client
        .delete_branch(&repo, "scratch")
        .await
        .expect("delete branch");
    assert!(
        client
            .get_branch(&repo, "scratch")
            .await
            .expect_err("gone")
            .is_not_found()
    );
    client.delete_repository(&repo).await.expect("delete repo");
}

/// Puts five objects on branch `dev` of `repo` (uncommitted); returns the stats of
/// `data/a.txt`.
async fn seed_dev(client: &LakeFsClient, repo: &str) -> ObjectStats {
    client
        .create_branch(repo, "dev", "main")
        .await
        .expect("dev");
    let stats = client
        .upload_bytes(
            repo,
            "dev",
            "data/a.txt",
            "hello lakeFS".into(),
            &UploadOptions::default(),
        )
        .await
        .expect("upload");
    for path in [
        "data/sub/blob.bin",
        "data/many/3.txt",
        "data/many/4.txt",
        "data/copy.txt",
    ] {
        client
            .upload_bytes(
                repo,
                "dev",
                path,
                path.as_bytes().to_vec().into(),
                &UploadOptions::default(),
            )
            .await
            .expect("upload");
    }
    stats
}

/// Objects (metadata, stat, ranges, create-only, streaming file transfers), listings with
/// prefixes, delimiters and pages, uncommitted diffs, deletes and copies.
pub async fn objects_and_listings(t: &Target) {
    let client = &t.client;
    let repo = t.fresh_repo("conf-objects").await;
    client
        .create_branch(&repo, "dev", "main")
        .await
        .expect("dev");
    // Objects: upload with metadata, stat, get, ranges, create-only.
    let meta = BTreeMap::from([("sha256".to_string(), "abc".to_string())]);
    let opts = UploadOptions {
        metadata: meta,
        content_type: Some("text/plain".into()),
        if_absent: false,
    };
    let stats = client
        .upload_bytes(&repo, "dev", "data/a.txt", "hello lakeFS".into(), &opts)
        .await
        .expect("upload");
    assert_eq!(stats.size_bytes, Some(12));
    assert!(
        objects_md5_ok(&stats.checksum, b"hello lakeFS"),
        "checksum is hex MD5: {}",
        stats.checksum
    );
    let stat = client
        .stat_object(&repo, "dev", "data/a.txt")
        .await
        .expect("stat");
    assert_eq!(stat.path_type, "object");
    let got_meta = stat.metadata.clone().unwrap_or_default();
    assert!(
        got_meta
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("sha256") && v == "abc"),
        "{got_meta:?}"
    );
    assert_eq!(
        &client
            .get_object(&repo, "dev", "data/a.txt", None)
            .await
            .expect("get")[..],
        b"hello lakeFS"
    );
    assert_eq!(
        &client
            .get_object(&repo, "dev", "data/a.txt", Some((6, Some(9))))
            .await
            .expect("range")[..],
        b"lake"
    );
    assert_eq!(
        &client
            .get_object(&repo, "dev", "data/a.txt", Some((6, None)))
            .await
            .expect("range")[..],
        b"lakeFS"
    );
    let err = client
        .upload_bytes(
            &repo,
            "dev",
            "data/a.txt",
            "again".into(),
            &UploadOptions {
                if_absent: true,
                ..Default::default()
            },
        )
        .await
        .expect_err("exists");
    assert!(
        matches!(err, LakeFsError::PreconditionFailed { .. }),
        "{err}"
    );
    assert!(
        client
            .stat_object(&repo, "dev", "data/missing")
            .await
            .expect_err("missing")
            .is_not_found()
    );
    assert!(
        client
            .stat_object(&repo, "main", "data/a.txt")
            .await
            .expect_err("not on main")
            .is_not_found()
    );

    assert_eq!(
        stat.metadata_value("SHA256"),
        Some("abc"),
        "metadata keys match in any case"
    );
    assert_eq!(stat.metadata_value("sha256"), Some("abc"));
    assert_eq!(stat.metadata_value("other"), None);
    // Streaming upload and verified download of a file.
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("blob.bin");
    std::fs::write(
        &file,
        (0..300_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    )
    .expect("write");
    client
        .upload_file(
            &repo,
            "dev",
            "data/sub/blob.bin",
            &file,
            &UploadOptions::default(),
        )
        .await
        .expect("upload file");
    let dest = dir.path().join("out/blob.bin");
    client
        .download_object(&repo, "dev", "data/sub/blob.bin", &dest)
        .await
        .expect("download");
    assert_eq!(
        std::fs::read(&dest).expect("read"),
        std::fs::read(&file).expect("read")
    );

    // A cached download transfers nothing when the file already has the object's bytes.
    let (_, transferred) = client
        .download_object_cached(&repo, "dev", "data/sub/blob.bin", &dest)
        .await
        .expect("cached download");
    assert!(!transferred, "identical file: nothing transferred");
    std::fs::write(&dest, b"stale").expect("spoil");
    let (_, transferred) = client
        .download_object_cached(&repo, "dev", "data/sub/blob.bin", &dest)
        .await
        .expect("cached download of a changed file");
    assert!(transferred);
    assert_eq!(
        std::fs::read(&dest).expect("read"),
        std::fs::read(&file).expect("read")
    );
    // Listing: prefix, delimiter, pagination (page size 2 in this suite).
    for i in 0..5 {
        client
            .upload_bytes(
                &repo,
                "dev",
                &format!("data/many/{i}.txt"),
                format!("{i}").into(),
                &UploadOptions::default(),
            )
            .await
            .expect("upload");
    }
    let all: Vec<ObjectStats> = client
        .list_objects(&repo, "dev", "data/", None)
        .try_collect()
        .await
        .expect("ls");
    assert_eq!(
        all.len(),
        7,
        "{:?}",
        all.iter().map(|o| &o.path).collect::<Vec<_>>()
    );
    let top: Vec<ObjectStats> = client
        .list_objects(&repo, "dev", "data/", Some("/"))
        .try_collect()
        .await
        .expect("ls /");
    let names: Vec<(&str, &str)> = top
        .iter()
        .map(|o| (o.path.as_str(), o.path_type.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("data/a.txt", "object"),
            ("data/many/", "common_prefix"),
            ("data/sub/", "common_prefix")
        ]
    );

    // Uncommitted diff, delete one and many (bulk delete answers per-path errors), copy.
    let diff: Vec<Diff> = client
        .diff_uncommitted(&repo, "dev")
        .try_collect()
        .await
        .expect("diff");
    assert_eq!(diff.len(), 7);
    assert!(diff.iter().all(|d| d.kind == "added"));
    client
        .delete_object(&repo, "dev", "data/many/0.txt")
        .await
        .expect("delete");
    let errors = client
        .delete_objects(
            &repo,
            "dev",
            &[
                "data/many/1.txt".into(),
                "data/many/2.txt".into(),
                "data/never-existed".into(),
            ],
        )
        .await
        .expect("bulk delete");
    assert!(errors.is_empty(), "{errors:?}");
    let copied = client
        .copy_object(&repo, "dev", "dev", "data/a.txt", "data/copy.txt")
        .await
        .expect("copy");
    assert_eq!(copied.checksum, stats.checksum);
}

/// Commits (metadata, nothing to commit, allow_empty), log, ref expressions, reads at a
/// commit, diffs between refs, reset, merges with conflicts and strategies, tags.
pub async fn commits_refs_and_merges(t: &Target) {
    let client = &t.client;
    let repo = t.fresh_repo("conf-commits").await;
    let main = client.get_branch(&repo, "main").await.expect("main");
    seed_dev(client, &repo).await;
    // Commit with metadata; no changes is 400 unless allow_empty.
    let md = BTreeMap::from([("run".to_string(), "r1".to_string())]);
    let c1 = client
        .commit(&repo, "dev", "add data", &md, false)
        .await
        .expect("commit");
    assert_eq!(c1.message, "add data");
    assert_eq!(c1.metadata.get("run").map(String::as_str), Some("r1"));
    assert_eq!(c1.parents, vec![main.commit_id.clone()]);
    assert_eq!(
        client
            .get_commit(&repo, &c1.id)
            .await
            .expect("get commit")
            .id,
        c1.id
    );
    let err = client
        .commit(&repo, "dev", "nothing", &BTreeMap::new(), false)
        .await
        .expect_err("empty commit");
    assert!(err.is_nothing_to_commit(), "typed: {err}");
    let empty = client
        .commit(&repo, "dev", "empty ok", &BTreeMap::new(), true)
        .await
        .expect("allow_empty");
    assert_eq!(empty.parents, vec![c1.id.clone()]);
    let log: Vec<Commit> = client.log(&repo, "dev").try_collect().await.expect("log");
    assert_eq!(
        log.iter().map(|c| c.id.clone()).collect::<Vec<_>>()[..3],
        [empty.id.clone(), c1.id.clone(), main.commit_id.clone()]
    );
    assert_eq!(
        client.resolve_commit(&repo, "dev").await.expect("resolve"),
        empty.id
    );
    // Reads at a commit id are immutable; the diff between refs names the committed changes.
    let at_commit: Vec<ObjectStats> = client
        .list_objects(&repo, &c1.id, "data/", None)
        .try_collect()
        .await
        .expect("ls at commit");
    assert_eq!(at_commit.len(), 5);
    let ref_diff: Vec<Diff> = client
        .diff_refs(&repo, "main", "dev")
        .try_collect()
        .await
        .expect("diff refs");
    assert_eq!(ref_diff.len(), 5);

    // Ref expressions: `~N` (first parents), `^N` (N-th parent), `@` (committed data only).
    assert_eq!(
        client.resolve_commit(&repo, "dev~1").await.expect("dev~1"),
        c1.id
    );
    assert_eq!(
        client.resolve_commit(&repo, "dev~2").await.expect("dev~2"),
        main.commit_id
    );
    assert_eq!(
        client.resolve_commit(&repo, "dev^").await.expect("dev^"),
        c1.id
    );
    assert_eq!(
        client
            .resolve_commit(&repo, &format!("{}~1", empty.id))
            .await
            .expect("id~1"),
        c1.id
    );
    assert_eq!(
        client
            .resolve_commit(&repo, "dev~1^1")
            .await
            .expect("dev~1^1"),
        main.commit_id
    );
    assert!(
        client
            .get_commit(&repo, "dev~99")
            .await
            .expect_err("past the root")
            .is_not_found()
    );
    client
        .upload_bytes(
            &repo,
            "dev",
            "data/staged-only.txt",
            "s".into(),
            &UploadOptions::default(),
        )
        .await
        .expect("stage");
    assert!(
        client
            .stat_object(&repo, "dev", "data/staged-only.txt")
            .await
            .is_ok()
    );
    assert!(
        client
            .stat_object(&repo, "dev@", "data/staged-only.txt")
            .await
            .expect_err("committed only")
            .is_not_found(),
        "dev@ reads committed data only"
    );
    assert_eq!(
        &client
            .get_object(&repo, "dev@", "data/a.txt", None)
            .await
            .expect("dev@ committed")[..],
        b"hello lakeFS"
    );
    assert_eq!(
        &client
            .get_object(&repo, "dev~1", "data/a.txt", None)
            .await
            .expect("dev~1 read")[..],
        b"hello lakeFS"
    );
    // Reset discards uncommitted changes.
    client
        .upload_bytes(
            &repo,
            "dev",
            "data/tmp.txt",
            "x".into(),
            &UploadOptions::default(),
        )
        .await
        .expect("upload");
    client
        .reset_branch(&repo, "dev", ResetScope::All)
        .await
        .expect("reset");
    assert!(
        client
            .diff_uncommitted(&repo, "dev")
            .try_collect::<Vec<_>>()
            .await
            .expect("diff")
            .is_empty()
    );

    let md = BTreeMap::from([("run".to_string(), "r1".to_string())]);
    // Merge dev into main; then a conflicting change on both sides is a typed Conflict.
    let merged = client
        .merge(
            &repo,
            "dev",
            "main",
            &MergeOptions {
                message: Some("merge dev".into()),
                metadata: md.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("merge");
    assert_eq!(
        client
            .get_branch(&repo, "main")
            .await
            .expect("main")
            .commit_id,
        merged
    );
    assert_eq!(
        &client
            .get_object(&repo, "main", "data/a.txt", None)
            .await
            .expect("merged")[..],
        b"hello lakeFS"
    );
    client
        .upload_bytes(
            &repo,
            "main",
            "data/a.txt",
            "main side".into(),
            &UploadOptions::default(),
        )
        .await
        .expect("up");
    client
        .commit(&repo, "main", "main edit", &BTreeMap::new(), false)
        .await
        .expect("commit");
    client
        .upload_bytes(
            &repo,
            "dev",
            "data/a.txt",
            "dev side".into(),
            &UploadOptions::default(),
        )
        .await
        .expect("up");
    client
        .upload_bytes(
            &repo,
            "dev",
            "data/dev-only.txt",
            "d".into(),
            &UploadOptions::default(),
        )
        .await
        .expect("up");
    client
        .commit(&repo, "dev", "dev edit", &BTreeMap::new(), false)
        .await
        .expect("commit");
    let err = client
        .merge(&repo, "dev", "main", &MergeOptions::default())
        .await
        .expect_err("conflict");
    assert!(matches!(err, LakeFsError::Conflict { .. }), "{err}");
    let resolved = client
        .merge(
            &repo,
            "dev",
            "main",
            &MergeOptions {
                strategy: Some(MergeStrategy::SourceWins),
                ..Default::default()
            },
        )
        .await
        .expect("source wins");
    assert_eq!(
        &client
            .get_object(&repo, &resolved, "data/a.txt", None)
            .await
            .expect("get")[..],
        b"dev side"
    );

    // Tags.
    let tag = client.create_tag(&repo, "v1", &c1.id).await.expect("tag");
    assert_eq!(tag.commit_id, c1.id);
    assert!(matches!(
        client.create_tag(&repo, "v1", "main").await,
        Err(LakeFsError::Conflict { .. })
    ));
    assert_eq!(
        client
            .get_tag(&repo, "v1")
            .await
            .expect("get tag")
            .commit_id,
        c1.id
    );
    let tags: Vec<Ref> = client.list_tags(&repo).try_collect().await.expect("tags");
    assert_eq!(tags.len(), 1);
    assert_eq!(
        client
            .resolve_commit(&repo, "v1")
            .await
            .expect("resolve tag"),
        c1.id
    );
    client.delete_tag(&repo, "v1").await.expect("delete tag");
    assert!(
        client
            .get_tag(&repo, "v1")
            .await
            .expect_err("deleted")
            .is_not_found()
    );
}

/// Transactions: success merges with metadata; failure and nothing-to-commit leave the target
/// untouched and remove the temporary branch; allow_empty commits anyway.
pub async fn transactions(t: &Target) {
    let client = &t.client;
    let repo = t.fresh_repo("conf-tx").await;
    // Transactions: success merges; failure leaves the target untouched and cleans up.
    let before = client
        .get_branch(&repo, "main")
        .await
        .expect("main")
        .commit_id;
    let outcome = client
        .transaction(
            &repo,
            "main",
            &CommitOptions {
                message: "add model".into(),
                metadata: BTreeMap::from([("kind".to_string(), "model".to_string())]),
                allow_empty: false,
            },
            |tx| {
                let (client, repo) = (client.clone(), repo.clone());
                async move {
                    client
                        .upload_bytes(
                            &repo,
                            &tx,
                            "models/m.bin",
                            "weights".into(),
                            &UploadOptions::default(),
                        )
                        .await
                }
            },
        )
        .await
        .expect("transaction");
    assert_eq!(
        client
            .get_branch(&repo, "main")
            .await
            .expect("main")
            .commit_id,
        outcome.merged_commit_id
    );
    assert_eq!(
        outcome.commit.metadata.get("kind").map(String::as_str),
        Some("model")
    );
    let head = outcome.merged_commit_id.clone();
    let failed = client
        .transaction(&repo, "main", &CommitOptions::new("broken"), |tx| {
            let (client, repo) = (client.clone(), repo.clone());
            async move {
                client
                    .upload_bytes(
                        &repo,
                        &tx,
                        "models/half.bin",
                        "half".into(),
                        &UploadOptions::default(),
                    )
                    .await?;
                Err::<(), _>(LakeFsError::Config("work failed".into()))
            }
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(
        client
            .get_branch(&repo, "main")
            .await
            .expect("main")
            .commit_id,
        head,
        "target untouched"
    );
    assert_ne!(head, before);
    let left: Vec<Ref> = client
        .list_branches(&repo)
        .try_collect()
        .await
        .expect("branches");
    assert!(
        left.iter().all(|b| !b.id.starts_with("tx-")),
        "temporary branches removed: {left:?}"
    );

    // Nothing changed: a typed error, target untouched; with allow_empty, an empty commit.
    let nothing = client
        .transaction(&repo, "main", &CommitOptions::new("no-op"), |_tx| async {
            Ok(())
        })
        .await
        .expect_err("nothing to commit");
    assert!(nothing.is_nothing_to_commit(), "{nothing}");
    assert_eq!(
        client
            .get_branch(&repo, "main")
            .await
            .expect("main")
            .commit_id,
        head
    );
    let empty = client
        .transaction(
            &repo,
            "main",
            &CommitOptions {
                allow_empty: true,
                ..CommitOptions::new("rerun on unchanged data")
            },
            |_tx| async { Ok(()) },
        )
        .await
        .expect("allow_empty");
    assert_eq!(empty.commit.parents, vec![head.clone()]);
    let left: Vec<Ref> = client
        .list_branches(&repo)
        .try_collect()
        .await
        .expect("branches");
    assert!(left.iter().all(|b| !b.id.starts_with("tx-")), "{left:?}");
}

/// `upload_dir` (skip unchanged, mirror, symbolic links) and `download_prefix` (cache by
/// commit, folder prefixes that never match siblings).
pub async fn folder_sync(t: &Target) {
    let client = &t.client;
    let repo = t.fresh_repo("conf-sync").await;
    client
        .create_branch(&repo, "scratch", "main")
        .await
        .expect("scratch");
    let dir = tempfile::tempdir().expect("tmp");
    // upload_dir skips unchanged files; download_prefix caches by commit id.
    let local = dir.path().join("dataset");
    for (name, body) in [
        ("images/a.png", "A"),
        ("images/b.png", "B"),
        ("masks/a.png", "a"),
        ("masks/b.png", "b"),
    ] {
        let p = local.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body).expect("write");
    }
    let first = client
        .upload_dir(&local, &repo, "scratch", "ds", &opts(false))
        .await
        .expect("upload_dir");
    assert_eq!((first.uploaded, first.skipped), (4, 0));
    std::fs::write(local.join("masks/b.png"), "B2").expect("edit");
    let second = client
        .upload_dir(&local, &repo, "scratch", "ds/", &opts(false))
        .await
        .expect("upload_dir again");
    assert_eq!((second.uploaded, second.skipped), (1, 3));
    let commit = client
        .commit(&repo, "scratch", "dataset", &BTreeMap::new(), false)
        .await
        .expect("commit");
    let cache = dir.path().join("cache");
    let dl = client
        .download_prefix(
            &repo,
            "scratch",
            "ds/",
            &DownloadOptions::new(&cache).concurrency(4),
        )
        .await
        .expect("download_prefix");
    assert_eq!(
        (dl.files, dl.transferred, dl.commit_id.as_str()),
        (4, 4, commit.id.as_str())
    );
    assert_eq!(
        std::fs::read_to_string(dl.dir.join("masks/b.png")).expect("read"),
        "B2"
    );
    let again = client
        .download_prefix(
            &repo,
            &commit.id,
            "ds/",
            &DownloadOptions::new(&cache).concurrency(4),
        )
        .await
        .expect("cached");
    assert_eq!(
        (again.files, again.transferred),
        (4, 0),
        "same commit: nothing transferred"
    );
    assert!(
        dl.dir
            .ends_with(Path::new(&repo).join(&commit.id).join("ds"))
    );

    // A sibling prefix (`ds2/`) never leaks into `ds`, in either direction.
    client
        .upload_bytes(
            &repo,
            "scratch",
            "ds2/x.png",
            "sibling".into(),
            &UploadOptions::default(),
        )
        .await
        .expect("sibling");
    client
        .commit(&repo, "scratch", "sibling", &BTreeMap::new(), false)
        .await
        .expect("commit");
    let ds = client
        .download_prefix(
            &repo,
            "scratch",
            "ds",
            &DownloadOptions::new(&cache).concurrency(4),
        )
        .await
        .expect("ds");
    assert_eq!(ds.files, 4, "ds holds 4 files; ds2/ is another folder");
    assert!(!ds.dir.join("2").exists() && !ds.dir.join("2/x.png").exists());
    let ds2 = client
        .download_prefix(
            &repo,
            "scratch",
            "ds2",
            &DownloadOptions::new(&cache).concurrency(4),
        )
        .await
        .expect("ds2");
    assert_eq!(ds2.files, 1);
    assert_eq!(
        std::fs::read_to_string(ds2.dir.join("x.png")).expect("read"),
        "sibling"
    );

    // Mirror deletes what the folder no longer has; plain uploads never delete.
    std::fs::remove_file(local.join("images/a.png")).expect("rm");
    let plain = client
        .upload_dir(&local, &repo, "scratch", "ds", &opts(false))
        .await
        .expect("plain");
    assert_eq!((plain.uploaded, plain.deleted), (0, 0));
    assert!(
        client
            .stat_object(&repo, "scratch", "ds/images/a.png")
            .await
            .is_ok()
    );
    let mirrored = client
        .upload_dir(&local, &repo, "scratch", "ds", &opts(true))
        .await
        .expect("mirror");
    assert_eq!((mirrored.uploaded, mirrored.deleted), (0, 1));
    assert!(
        client
            .stat_object(&repo, "scratch", "ds/images/a.png")
            .await
            .expect_err("mirrored")
            .is_not_found()
    );
    assert!(
        client
            .stat_object(&repo, "scratch", "ds2/x.png")
            .await
            .is_ok(),
        "mirror stays inside its prefix"
    );

    // Symbolic links: followed by default, skipped and reported, or refused.
    #[cfg(unix)]
    {
        let outside = dir.path().join("outside.png");
        std::fs::write(&outside, "linked").expect("write");
        std::os::unix::fs::symlink(&outside, local.join("images/link.png")).expect("symlink");
        let skip = UploadDirOptions {
            symlinks: SymlinkPolicy::Skip,
            ..opts(false)
        };
        let skipped = client
            .upload_dir(&local, &repo, "scratch", "ds", &skip)
            .await
            .expect("skip");
        assert_eq!(skipped.skipped_links, vec![local.join("images/link.png")]);
        assert!(
            client
                .stat_object(&repo, "scratch", "ds/images/link.png")
                .await
                .is_err()
        );
        let refuse = UploadDirOptions {
            symlinks: SymlinkPolicy::Refuse,
            ..opts(false)
        };
        let err = client
            .upload_dir(&local, &repo, "scratch", "ds", &refuse)
            .await
            .expect_err("refuse");
        assert!(err.to_string().contains("link.png"), "{err}");
        let followed = client
            .upload_dir(&local, &repo, "scratch", "ds", &opts(false))
            .await
            .expect("follow");
        assert_eq!(followed.uploaded, 1);
        assert_eq!(
            &client
                .get_object(&repo, "scratch", "ds/images/link.png", None)
                .await
                .expect("linked")[..],
            b"linked"
        );
    }
}

fn opts(mirror: bool) -> UploadDirOptions {
    UploadDirOptions {
        concurrency: 4,
        mirror,
        ..UploadDirOptions::default()
    }
}

/// Several processes creating the same new repository at once all get it: lakeFS answers the
/// losers 409 or 400 "storage namespace already in use" while the winner's record is being
/// written, and `ensure_repository` reads it back.
pub async fn concurrent_repository_creation(t: &Target) {
    let repo = test_support::unique("conf-race").to_ascii_lowercase();
    let ns = format!("{}/{repo}", t.namespace_root.trim_end_matches('/'));
    for round in 0..3 {
        let name = format!("{repo}-{round}");
        let ns = format!("{ns}-{round}");
        let created = futures::future::join_all(
            (0..4).map(|_| t.client.ensure_repository(&name, &ns, "main")),
        )
        .await;
        for r in created {
            let r = r.expect("every concurrent ensure_repository gets the repository");
            assert_eq!(
                (r.id.as_str(), r.storage_namespace.as_str()),
                (name.as_str(), ns.as_str())
            );
        }
    }
}

//! Tracking against a real MLflow server: experiments, runs, batching, pagination, history,
//! non-finite values, dataset inputs, logged models, the run guard and error mapping.
#![allow(clippy::too_many_lines)] // end-to-end scenarios read best in one piece

use std::time::Duration;

use futures::TryStreamExt;
use mlflow_client::*;

#[tokio::test]
async fn experiments_get_or_create_survives_concurrent_creates() {
    let client = test_support::mlflow_client().await;
    let name = test_support::unique("exp-race");
    assert!(
        client
            .get_experiment_by_name(&name)
            .await
            .expect("lookup")
            .is_none()
    );
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (c, n) = (client.clone(), name.clone());
            tokio::spawn(async move {
                c.get_or_create_experiment(&n, &[Tag::new("team", "seg")])
                    .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("join").expect("get_or_create").experiment_id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one experiment for all: {ids:?}");
    let exp = client.get_experiment(&ids[0]).await.expect("get");
    assert_eq!(exp.name, name);
    let err = client
        .create_experiment(&name, &[])
        .await
        .expect_err("duplicate");
    assert!(matches!(err, MlflowError::AlreadyExists { .. }), "{err}");
}

#[tokio::test]
async fn runs_batches_history_and_non_finite_values() {
    let client = test_support::mlflow_client().await;
    let exp = client
        .get_or_create_experiment(&test_support::unique("exp-runs"), &[])
        .await
        .expect("exp");
    let run = client
        .create_run(
            &exp.experiment_id,
            NewRun {
                run_name: Some("batching".into()),
                tags: vec![Tag::new("k", "v")],
                ..Default::default()
            },
        )
        .await
        .expect("run");
    assert_eq!(run.info.status, RunStatus::Running);
    assert_eq!(run.info.run_name, "batching");
    let id = run.info.run_id.clone();

    // 2500 metric values, 250 params, 150 tags: beyond every per-call limit.
    let metrics: Vec<Metric> = (0..2500)
        .map(|s| Metric {
            key: "loss".into(),
            value: 1.0 / (s as f64 + 1.0),
            timestamp: 1_700_000_000_000 + s,
            step: s,
            model_id: None,
        })
        .collect();
    let params: Vec<Param> = (0..250)
        .map(|i| Tag::new(format!("p{i:03}"), format!("{i}")))
        .collect();
    let tags: Vec<Tag> = (0..150)
        .map(|i| Tag::new(format!("t{i:03}"), "x"))
        .collect();
    client
        .log_batch(&id, &metrics, &params, &tags)
        .await
        .expect("log_batch");
    client.log_param(&id, "lr", "0.001").await.expect("param");
    client
        .set_tag(&id, "lakefs.data_commit", "abc123")
        .await
        .expect("tag");
    for (step, v) in [
        (0, f64::NAN),
        (1, f64::INFINITY),
        (2, f64::NEG_INFINITY),
        (3, 0.5),
    ] {
        client
            .log_metric(&id, &Metric::now("odd", v, step))
            .await
            .expect("metric");
    }

    let got = client.get_run(&id).await.expect("get");
    assert_eq!(got.data.params.len(), 251);
    assert_eq!(got.param("p249"), Some("249"));
    assert_eq!(got.tag("lakefs.data_commit"), Some("abc123"));
    assert_eq!(
        got.data
            .tags
            .iter()
            .filter(|t| t.key.starts_with('t'))
            .count(),
        150
    );

    let history: Vec<Metric> = client
        .metric_history(&id, "loss", 1000)
        .try_collect()
        .await
        .expect("history");
    assert_eq!(history.len(), 2500, "all pages read");
    assert_eq!(history.iter().map(|m| m.step).max(), Some(2499));
    let odd: Vec<Metric> = client
        .metric_history(&id, "odd", 2)
        .try_collect()
        .await
        .expect("history");
    let mut by_step: Vec<(i64, f64)> = odd.iter().map(|m| (m.step, m.value)).collect();
    by_step.sort_by_key(|p| p.0);
    assert!(by_step[0].1.is_nan(), "{by_step:?}");
    assert_eq!(by_step[1].1, f64::INFINITY);
    assert_eq!(by_step[2].1, f64::NEG_INFINITY);
    assert_eq!(by_step[3].1, 0.5);

    client
        .update_run(&id, RunStatus::Finished, None)
        .await
        .expect("update");
    let done = client.get_run(&id).await.expect("get");
    assert_eq!(done.info.status, RunStatus::Finished);
    assert!(done.info.end_time >= done.info.start_time);
}

#[tokio::test]
async fn search_pages_and_filters() {
    let client = test_support::mlflow_client().await;
    let exp = client
        .get_or_create_experiment(&test_support::unique("exp-search"), &[])
        .await
        .expect("exp");
    for i in 0..5 {
        let run = client
            .create_run(&exp.experiment_id, NewRun::default())
            .await
            .expect("run");
        client
            .log_batch(
                &run.info.run_id,
                &[Metric::now("iou", i as f64 / 10.0, 0)],
                &[],
                &[Tag::new("parity", if i % 2 == 0 { "even" } else { "odd" })],
            )
            .await
            .expect("log");
    }
    let search = RunSearch {
        experiment_ids: vec![exp.experiment_id.clone()],
        page_size: Some(2),
        order_by: vec!["metrics.iou DESC".into()],
        ..Default::default()
    };
    // Through a proxy that counts the search requests: 5 runs at 2 a page is 3 requests.
    let proxy = test_support::CountingProxy::start(
        client.tracking_uri(),
        b"POST /api/2.0/mlflow/runs/search",
    )
    .await;
    let proxied = MlflowClient::new(&proxy.endpoint).expect("client via proxy");
    let all: Vec<Run> = proxied
        .search_runs(search.clone())
        .try_collect()
        .await
        .expect("search");
    assert_eq!(all.len(), 5);
    assert_eq!(
        proxy.count(),
        3,
        "5 runs at 2 a page take 3 search requests"
    );
    assert_eq!(all[0].metric("iou"), Some(0.4));
    let even: Vec<Run> = client
        .search_runs(RunSearch {
            filter: Some("tags.parity = 'even' and metrics.iou > 0.1".into()),
            ..search
        })
        .try_collect()
        .await
        .expect("filtered");
    assert_eq!(even.len(), 2);
    let empty: Vec<Run> = client
        .search_runs(RunSearch {
            experiment_ids: vec![exp.experiment_id],
            filter: Some("tags.parity = 'none'".into()),
            ..Default::default()
        })
        .try_collect()
        .await
        .expect("empty result is {}");
    assert!(empty.is_empty());
}

#[tokio::test]
async fn dataset_inputs_and_logged_models() {
    let client = test_support::mlflow_client().await;
    let exp = client
        .get_or_create_experiment(&test_support::unique("exp-inputs"), &[])
        .await
        .expect("exp");
    let run = client
        .create_run(&exp.experiment_id, NewRun::default())
        .await
        .expect("run");
    let id = run.info.run_id.clone();
    let dataset = Dataset {
        name: "kvasir-seg".into(),
        digest: "c0ffee12".into(),
        source_type: "lakefs".into(),
        source: r#"{"uri": "lakefs://seg/c0ffee12/data/"}"#.into(),
        schema: None,
        profile: Some(r#"{"pairs": 998}"#.into()),
    };
    client
        .log_inputs(
            &id,
            &[DatasetInput {
                tags: vec![context_tag("training")],
                dataset: dataset.clone(),
            }],
        )
        .await
        .expect("log inputs");
    let got = client.get_run(&id).await.expect("get");
    let input = &got.inputs.dataset_inputs[0];
    assert_eq!(input.dataset.digest, "c0ffee12");
    assert_eq!(input.tags[0], context_tag("training"));

    let model = client
        .create_logged_model(
            &exp.experiment_id,
            "unet",
            Some(&id),
            &[Tag::new("depth", "4")],
            &[Tag::new("sha256", "ab")],
        )
        .await
        .expect("logged model");
    assert_eq!(model.info.status, "LOGGED_MODEL_PENDING");
    let ready = client
        .finalize_logged_model(&model.info.model_id)
        .await
        .expect("finalize");
    assert_eq!(ready.info.status, "LOGGED_MODEL_READY");
    let fetched = client
        .get_logged_model(&model.info.model_id)
        .await
        .expect("get");
    assert_eq!(fetched.info.source_run_id, id);
    let found: Vec<LoggedModel> = client
        .search_logged_models(
            vec![exp.experiment_id.clone()],
            Some("name = 'unet'".into()),
        )
        .try_collect()
        .await
        .expect("search");
    assert_eq!(found.len(), 1);

    let name = test_support::unique("reg-logged");
    client
        .create_registered_model(&name, &[], None)
        .await
        .expect("registered");
    let version = client
        .create_model_version(
            &name,
            NewModelVersion {
                source: "lakefs://seg/0123456789abcdef/models/model.segm".into(),
                run_id: Some(id.clone()),
                model_id: Some(model.info.model_id.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("version from logged model");
    assert_eq!(
        version.source,
        "lakefs://seg/0123456789abcdef/models/model.segm"
    );
    client
        .update_run(&id, RunStatus::Finished, None)
        .await
        .expect("end");
}

#[tokio::test]
async fn run_guard_ends_runs_on_every_path() {
    let client = test_support::mlflow_client().await;
    let exp = client
        .get_or_create_experiment(&test_support::unique("exp-guard"), &[])
        .await
        .expect("exp");
    let mut ids = Vec::new();
    for how in ["finish", "kill", "error", "drop"] {
        let run = client
            .create_run(&exp.experiment_id, NewRun::default())
            .await
            .expect("run");
        ids.push(run.info.run_id.clone());
        let guard = RunGuard::new(client.clone(), run);
        match how {
            "finish" => guard.finish().await.expect("finish"),
            "kill" => guard.kill().await.expect("kill"),
            "error" => guard.end_with(&Err::<(), _>("boom")).await.expect("fail"),
            _ => drop(guard), // forgotten: the guard marks it FAILED
        }
    }
    let mut statuses = Vec::new();
    for id in &ids {
        statuses.push(client.get_run(id).await.expect("get").info.status);
    }
    assert_eq!(
        statuses,
        vec![
            RunStatus::Finished,
            RunStatus::Killed,
            RunStatus::Failed,
            RunStatus::Failed
        ]
    );
}

#[tokio::test]
async fn errors_are_typed_and_name_the_request() {
    let client = test_support::mlflow_client().await;
    let err = client
        .get_run("0123456789abcdef0123456789abcdef")
        .await
        .expect_err("missing run");
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string().contains("GET /api/2.0/mlflow/runs/get"),
        "{err}"
    );
    let err = client
        .search_runs(RunSearch {
            experiment_ids: vec!["0".into()],
            filter: Some("this is not a filter".into()),
            ..Default::default()
        })
        .try_collect::<Vec<_>>()
        .await
        .expect_err("bad filter");
    assert!(matches!(err, MlflowError::InvalidParameter { .. }), "{err}");

    let dead = MlflowClientBuilder::new("http://127.0.0.1:9")
        .retry(RetryPolicy {
            max_retries: 1,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        })
        .build()
        .expect("client");
    let err = dead
        .get_experiment("0")
        .await
        .expect_err("nothing listens on port 9");
    assert!(err.is_unreachable(), "{err}");
    assert!(
        matches!(err, MlflowError::RetriesExhausted { attempts: 2, .. }),
        "one retry, then gave up: {err}"
    );
    assert!(err.to_string().contains("http://127.0.0.1:9"), "{err}");
}

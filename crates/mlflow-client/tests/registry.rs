//! Registry against a real MLflow server: registered models, versions, search, tags,
//! descriptions, aliases (set, move, delete, reserved) and stage transitions.
#![allow(clippy::too_many_lines)] // end-to-end scenarios read best in one piece

use futures::TryStreamExt;
use mlflow_client::*;

#[tokio::test]
async fn registry_versions_tags_and_aliases() {
    let client = test_support::mlflow_client().await;
    let exp = client
        .get_or_create_experiment(&test_support::unique("exp-reg"), &[])
        .await
        .expect("exp");
    let run = client
        .create_run(&exp.experiment_id, NewRun::default())
        .await
        .expect("run");
    let run_id = run.info.run_id.clone();
    let name = test_support::unique("seg-unet");

    let model = client
        .create_registered_model(&name, &[Tag::new("task", "segmentation")], Some("U-Net"))
        .await
        .expect("create");
    assert_eq!(model.description, "U-Net");
    let again = client
        .get_or_create_registered_model(&name)
        .await
        .expect("get_or_create");
    assert_eq!(again.name, name);
    let err = client
        .create_registered_model(&name, &[], None)
        .await
        .expect_err("dup");
    assert!(matches!(err, MlflowError::AlreadyExists { .. }), "{err}");
    client
        .set_registered_model_tag(&name, "owner", "seg-team")
        .await
        .expect("tag");
    let updated = client
        .update_registered_model(&name, "U-Net, lakeFS-versioned")
        .await
        .expect("update");
    assert_eq!(updated.description, "U-Net, lakeFS-versioned");
    let found: Vec<RegisteredModel> = client
        .search_registered_models(Some(format!("name = '{name}'")))
        .try_collect()
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    assert!(found[0].tags.contains(&Tag::new("owner", "seg-team")));

    let mut versions = Vec::new();
    for commit in ["1111111111111111", "2222222222222222"] {
        let v = client
            .create_model_version(
                &name,
                NewModelVersion {
                    source: format!("lakefs://seg/{commit}/models/model.segm"),
                    run_id: Some(run_id.clone()),
                    tags: vec![Tag::new("lakefs.commit", commit)],
                    description: Some(format!("from {commit}")),
                    ..Default::default()
                },
            )
            .await
            .expect("version");
        versions.push(v);
    }
    assert_eq!(versions[0].version, "1");
    assert_eq!(versions[1].version, "2");
    let v1 = client.get_model_version(&name, "1").await.expect("get");
    assert_eq!(v1.source, "lakefs://seg/1111111111111111/models/model.segm");
    assert_eq!(v1.run_id, run_id);

    client
        .set_model_version_tag(&name, "2", "validated", "true")
        .await
        .expect("tag");
    let v2 = client
        .update_model_version(&name, "2", "best so far")
        .await
        .expect("describe");
    assert_eq!(v2.description, "best so far");
    let by_name: Vec<ModelVersion> = client
        .search_model_versions(Some(format!("name='{name}'")), vec![])
        .try_collect()
        .await
        .expect("search");
    assert_eq!(by_name.len(), 2);
    let by_run: Vec<ModelVersion> = client
        .search_model_versions(Some(format!("run_id='{run_id}'")), vec![])
        .try_collect()
        .await
        .expect("search");
    assert_eq!(by_run.len(), 2);
    let by_tag: Vec<ModelVersion> = client
        .search_model_versions(
            Some(format!("name='{name}' and tags.validated='true'")),
            vec![],
        )
        .try_collect()
        .await
        .expect("search by tag");
    assert_eq!(
        by_tag
            .iter()
            .map(|v| v.version.as_str())
            .collect::<Vec<_>>(),
        vec!["2"]
    );

    // Aliases: set, read, move, delete; a missing alias is None; reserved names refused.
    assert!(
        client
            .get_version_by_alias(&name, "champion")
            .await
            .expect("lookup")
            .is_none()
    );
    client.set_alias(&name, "champion", "1").await.expect("set");
    assert_eq!(
        client
            .get_version_by_alias(&name, "champion")
            .await
            .expect("get")
            .expect("set")
            .version,
        "1"
    );
    client
        .set_alias(&name, "champion", "2")
        .await
        .expect("move");
    let champion = client
        .get_version_by_alias(&name, "champion")
        .await
        .expect("get")
        .expect("set");
    assert_eq!(champion.version, "2");
    assert!(champion.aliases.contains(&"champion".to_string()));
    client
        .delete_alias(&name, "champion")
        .await
        .expect("delete");
    assert!(
        client
            .get_version_by_alias(&name, "champion")
            .await
            .expect("lookup")
            .is_none()
    );
    assert!(client.set_alias(&name, "latest", "1").await.is_err());
    assert!(client.set_alias(&name, "v3", "1").await.is_err());
    let err = client
        .get_version_by_alias(&test_support::unique("no-such-model"), "champion")
        .await
        .expect_err("missing model");
    assert!(
        err.is_not_found(),
        "a missing model is RESOURCE_DOES_NOT_EXIST: {err}"
    );

    let staged = client
        .transition_model_version_stage(&name, "1", "Staging", false)
        .await
        .expect("stage");
    assert_eq!(staged.current_stage, "Staging");
    let err = client
        .get_model_version(&name, "99")
        .await
        .expect_err("no version 99");
    assert!(err.is_not_found(), "{err}");
    client
        .update_run(&run_id, RunStatus::Finished, None)
        .await
        .expect("end");
}

//! What an interrupted, killed or crashed process leaves behind, found and cleaned up by the
//! next run: temporary `tx-*` lakeFS branches named for their owner (host, process, run) and
//! MLflow runs left RUNNING. Every run records who made it (tags `seg_mlops.host`,
//! `seg_mlops.pid`); a leftover is removed only when its process is known to be gone (same
//! host, no such process) and, for branches, it is older than [`TX_MAX_AGE`].

use std::time::Duration;

use futures::TryStreamExt;
use lakefs_client::{LakeFsClient, TxBranch};
use mlflow_client::{MlflowClient, Run, RunSearch, RunStatus, Tag};

use crate::error::Result;
use crate::run_record::tags;

/// A temporary branch younger than this is left alone even when its process is gone.
pub const TX_MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// This process: the host it runs on and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
}

/// This process.
pub fn me() -> Me {
    let host = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_string();
    let host = if host.is_empty() {
        "unknown-host".to_string()
    } else {
        host
    };
    Me {
        host,
        pid: std::process::id(),
    }
}

/// Letters and digits of `text`, the rest as `_` (how a branch name carries it).
fn name_part(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl Me {
    /// The owner part of this process's temporary branches: `<host>_p<pid>`, then `_<run>`.
    pub fn tx_owner(&self, run: Option<&str>) -> String {
        let mut owner = format!("{}_p{}", name_part(&self.host), self.pid);
        if let Some(run) = run {
            owner.push('_');
            owner.push_str(&name_part(run));
        }
        owner
    }

    /// The tags that say which process made a run.
    pub fn run_tags(&self) -> Vec<Tag> {
        vec![
            Tag::new(tags::HOST, &self.host),
            Tag::new(tags::PID, self.pid.to_string()),
        ]
    }

    /// The process id in a temporary branch's owner part when this host made it.
    fn pid_of_branch(&self, branch: &TxBranch) -> Option<u32> {
        let rest = branch
            .owner
            .strip_prefix(&format!("{}_p", name_part(&self.host)))?;
        rest.split('_').next()?.parse().ok()
    }
}

/// Whether process `pid` of this host is running; `None` where that cannot be known.
pub fn alive(pid: u32) -> Option<bool> {
    let proc = std::path::Path::new("/proc");
    proc.join("self")
        .exists()
        .then(|| proc.join(pid.to_string()).exists())
}

/// A temporary branch of `repo` and whether it may be deleted.
#[derive(Debug, Clone)]
pub struct LeftBranch {
    /// Its name's parts.
    pub branch: TxBranch,
    /// Seconds since it was made.
    pub age_secs: u64,
    /// Its process on this host: `Some(true)` running, `Some(false)` gone, `None` unknown
    /// (another host, or no way to tell).
    pub alive: Option<bool>,
}

impl LeftBranch {
    /// Gone, and older than [`TX_MAX_AGE`].
    pub fn stale(&self) -> bool {
        self.alive == Some(false) && self.age_secs >= TX_MAX_AGE.as_secs()
    }
}

/// The temporary branches of `repo`.
pub async fn tx_branches(lakefs: &LakeFsClient, repo: &str, me: &Me) -> Result<Vec<LeftBranch>> {
    let branches: Vec<String> = lakefs
        .list_branches(repo)
        .map_ok(|b| b.id)
        .try_collect()
        .await?;
    let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    Ok(branches
        .iter()
        .filter_map(|name| TxBranch::parse(name))
        .map(|branch| LeftBranch {
            age_secs: now.saturating_sub(branch.created),
            alive: me.pid_of_branch(&branch).and_then(alive),
            branch,
        })
        .collect())
}

/// Deletes the temporary branches of `repo` whose process is gone and that are older than
/// [`TX_MAX_AGE`], logging each; the names deleted.
pub async fn clean_tx_branches(lakefs: &LakeFsClient, repo: &str, me: &Me) -> Result<Vec<String>> {
    let mut deleted = Vec::new();
    for left in tx_branches(lakefs, repo, me).await? {
        if !left.stale() {
            continue;
        }
        lakefs.delete_branch(repo, &left.branch.name).await?;
        tracing::warn!(
            "deleted temporary branch {} of {repo}: its process ({}) is gone and it was made {} minutes ago",
            left.branch.name,
            left.branch.owner,
            left.age_secs / 60
        );
        deleted.push(left.branch.name);
    }
    Ok(deleted)
}

/// The RUNNING runs of `experiment_id` made on this host, with whether their process runs.
pub async fn running_runs(
    mlflow: &MlflowClient,
    experiment_id: &str,
    me: &Me,
) -> Result<Vec<(Run, Option<bool>)>> {
    let runs: Vec<Run> = mlflow
        .search_runs(RunSearch {
            experiment_ids: vec![experiment_id.to_string()],
            filter: Some(format!(
                "attributes.status = 'RUNNING' and tags.`{}` = '{}'",
                tags::HOST,
                me.host.replace('\'', "")
            )),
            ..RunSearch::default()
        })
        .try_collect()
        .await?;
    Ok(runs
        .into_iter()
        .map(|r| {
            let pid = r.tag(tags::PID).and_then(|p| p.parse().ok());
            let alive = pid.and_then(alive);
            (r, alive)
        })
        .collect())
}

/// Ends FAILED, with a tag saying why, the RUNNING runs of `experiment_id` whose process on
/// this host is gone (killed or crashed); the run ids.
pub async fn fail_dead_runs(
    mlflow: &MlflowClient,
    experiment_id: &str,
    me: &Me,
) -> Result<Vec<String>> {
    let mut failed = Vec::new();
    for (run, alive) in running_runs(mlflow, experiment_id, me).await? {
        if alive != Some(false) {
            continue;
        }
        let id = run.info.run_id.clone();
        let why = format!(
            "the process that ran it (pid {} on {}) is gone: killed or crashed before it could end the run",
            run.tag(tags::PID).unwrap_or("?"),
            me.host
        );
        mlflow.set_tag(&id, tags::ERROR, &why).await?;
        mlflow.update_run(&id, RunStatus::Failed, None).await?;
        tracing::warn!("marked MLflow run {id} FAILED: {why}");
        failed.push(id);
    }
    Ok(failed)
}

/// What processes left behind in the configured repository and experiment, as lines.
pub async fn report(config: &crate::config::Config) -> Result<Vec<String>> {
    let services = crate::services::connect(config).await?;
    let me = me();
    let repo = &config.lakefs.repository;
    let mut lines = Vec::new();
    let branches = match tx_branches(&services.lakefs, repo, &me).await {
        Ok(b) => b,
        Err(crate::error::PipelineError::LakeFs(e))
            if lakefs_client::ClientError::is_not_found(&e) =>
        {
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    lines.push(format!(
        "temporary branches of lakeFS repository {repo}: {}",
        branches.len()
    ));
    for b in &branches {
        lines.push(format!(
            "  {}  owner {}  {} min old  {}",
            b.branch.name,
            b.branch.owner,
            b.age_secs / 60,
            match (b.alive, b.stale()) {
                (_, true) => "process gone: the next run removes it",
                (Some(true), _) => "process running",
                (Some(false), _) => "process gone, young: removed once 10 minutes old",
                (None, _) => "made on another host: left alone",
            }
        ));
    }
    let experiment = services
        .mlflow
        .get_experiment_by_name(&config.mlflow.experiment)
        .await?;
    let runs = match &experiment {
        Some(e) => running_runs(&services.mlflow, &e.experiment_id, &me).await?,
        None => Vec::new(),
    };
    lines.push(format!(
        "RUNNING runs of MLflow experiment {:?} on {}: {}",
        config.mlflow.experiment,
        me.host,
        runs.len()
    ));
    for (run, alive) in &runs {
        lines.push(format!(
            "  {}  pid {}  {}",
            run.info.run_id,
            run.tag(tags::PID).unwrap_or("?"),
            match alive {
                Some(true) => "process running",
                Some(false) => "process gone: the next run ends it FAILED",
                None => "process unknown",
            }
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_name_host_process_and_run_and_are_read_back() {
        let me = Me {
            host: "box.example".into(),
            pid: 4242,
        };
        assert_eq!(me.tx_owner(Some("ab-c")), "box_example_p4242_ab_c");
        let branch = TxBranch {
            name: "tx-main-box_example_p4242_run_1f-100".into(),
            target: "main".into(),
            owner: "box_example_p4242_run_1f".into(),
            created: 100,
        };
        assert_eq!(me.pid_of_branch(&branch), Some(4242));
        let other = TxBranch {
            owner: "elsewhere_p4242_1f".into(),
            ..branch
        };
        assert_eq!(me.pid_of_branch(&other), None, "another host's branch");
        assert_eq!(alive(std::process::id()), Some(true));
        let old = LeftBranch {
            branch: other,
            age_secs: TX_MAX_AGE.as_secs(),
            alive: Some(false),
        };
        assert!(old.stale());
        assert!(
            !LeftBranch {
                age_secs: 5,
                ..old.clone()
            }
            .stale()
        );
        assert!(!LeftBranch { alive: None, ..old }.stale());
    }
}

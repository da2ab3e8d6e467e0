//! The machinery of the catalogue of bad inputs (tests/tests/catalogue.rs): a case is one run of
//! a binary with its flags, environment and stdin, the exit code it must end with and a text its
//! one `error:` line must hold; [`World`] is what no case may change (the branch head, the
//! experiment's runs, the registered versions, the files and folders under `out/`).

use std::path::Path;

use futures::TryStreamExt;
use mlflow_client::RunSearch;
use tokio::io::AsyncWriteExt;

use crate::{Ran, Stack};

/// One bad input.
pub struct Case {
    /// The binary.
    pub bin: &'static str,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables set for this case.
    pub env: Vec<(&'static str, String)>,
    /// What it reads on stdin.
    pub stdin: Option<String>,
    /// The exit code.
    pub code: i32,
    /// Text the error line holds.
    pub needle: String,
}

/// A case of `bin` with `args`, ending with `code` and an error line holding `needle`.
pub fn case(bin: &'static str, args: &[&str], code: i32, needle: &str) -> Case {
    Case {
        bin,
        args: args.iter().map(|s| (*s).to_string()).collect(),
        env: Vec::new(),
        stdin: None,
        code,
        needle: needle.to_string(),
    }
}

impl Case {
    /// With `var` set to `value`.
    pub fn env(mut self, var: &'static str, value: impl Into<String>) -> Self {
        self.env.push((var, value.into()));
        self
    }

    /// With `text` on stdin.
    pub fn stdin(mut self, text: impl Into<String>) -> Self {
        self.stdin = Some(text.into());
        self
    }

    /// Runs the case in `stack`.
    pub async fn run(&self, stack: &Stack) -> Ran {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut cmd = stack.command(self.bin, &args);
        for (var, value) in &self.env {
            cmd.env(var, value);
        }
        let Some(text) = &self.stdin else {
            return Ran::from_output(cmd.output().await.expect("run"));
        };
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut input = child.stdin.take().expect("stdin");
        // The binary may stop reading early (a long line): a broken pipe is its choice.
        let _ = input.write_all(text.as_bytes()).await;
        drop(input);
        Ran::from_output(child.wait_with_output().await.expect("wait"))
    }

    /// How the catalogue names the case.
    pub fn what(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| a.chars().take(60).collect())
            .collect();
        format!("{} {:?} {:?}", self.bin, args, self.env)
    }
}

/// What must not change: the branch head, the experiment's runs, the registered versions,
/// and the files and folders under the output folder.
#[derive(Debug, PartialEq)]
pub struct World {
    head: String,
    runs: usize,
    versions: usize,
    outputs: usize,
}

impl World {
    /// The world of `stack` now, for `experiment_id` and the registered `model`.
    pub async fn of(stack: &Stack, experiment_id: &str, model: &str) -> Self {
        let runs: Vec<_> = stack
            .mlflow
            .search_runs(RunSearch {
                experiment_ids: vec![experiment_id.to_string()],
                ..RunSearch::default()
            })
            .try_collect()
            .await
            .expect("runs");
        let versions: Vec<_> = stack
            .mlflow
            .search_model_versions(Some(format!("name='{model}'")), vec![])
            .try_collect()
            .await
            .expect("versions");
        Self {
            head: stack.head().await,
            runs: runs.len(),
            versions: versions.len(),
            outputs: entries(&stack.dir().join("out")),
        }
    }
}

/// Files and folders under `dir` (0 when it does not exist).
fn entries(dir: &Path) -> usize {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return 0;
    };
    listing
        .map(|e| {
            let p = e.expect("entry").path();
            if p.is_dir() { 1 + entries(&p) } else { 1 }
        })
        .sum()
}

/// A `w` x `h` grey PNG whose pixels are `value`, with a `mark`-valued square in the middle.
pub fn png(w: u32, h: u32, value: u8, mark: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::GrayImage::from_fn(w, h, |x, y| {
        let inside = (w / 4..3 * w / 4).contains(&x) && (h / 4..3 * h / 4).contains(&y);
        image::Luma([if inside { mark } else { value }])
    })
    .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
    .expect("png");
    out
}

/// A dataset folder of `n` 16x16 pairs under `dir` whose masks mark a square as `mark` (0: no
/// foreground at all).
pub fn pairs(dir: &Path, n: usize, mark: u8) -> String {
    for sub in ["images", "masks"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    for i in 0..n {
        let name = format!("s{i}.png");
        std::fs::write(dir.join("images").join(&name), png(16, 16, 40, 200)).expect("write");
        std::fs::write(dir.join("masks").join(&name), png(16, 16, 0, mark)).expect("write");
    }
    dir.to_str().expect("path").to_string()
}

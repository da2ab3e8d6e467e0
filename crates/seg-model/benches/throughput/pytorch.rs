//! PyTorch eager as the bench's reference: `scripts/bench/unet_reference.py --serve`, one
//! process per image size, driven over its stdin and stdout.

use std::path::{Path, PathBuf};

use super::{Rounds, batch_norm, median};

/// PyTorch eager (scripts/bench/unet_reference.py --serve), one process per image size.
pub(super) struct PyTorch {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    pub(super) name: String,
    pub(super) rounds: Rounds,
}

impl PyTorch {
    pub(super) fn start(size: usize) -> Option<Self> {
        use std::io::BufRead;
        let python = std::env::var_os("SEG_BENCH_PYTHON")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("TORCH_VENV").map(|v| PathBuf::from(v).join("bin/python"))
            })?;
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench/unet_reference.py");
        let mut cmd = std::process::Command::new(&python);
        cmd.arg(&script)
            .args(["--serve", "--size", &size.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        if !batch_norm() {
            cmd.arg("--no-batch-norm");
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                eprintln!(
                    "pytorch reference did not start ({}): {e}",
                    python.display()
                );
                return None;
            }
        };
        let stdin = child.stdin.take()?;
        let mut stdout = std::io::BufReader::new(child.stdout.take()?);
        let mut hello = String::new();
        stdout.read_line(&mut hello).ok()?;
        let v: serde_json::Value = serde_json::from_str(&hello).ok()?;
        Some(Self {
            child,
            stdin,
            stdout,
            name: format!(
                "{} (torch {}, {} threads)",
                v["backend"].as_str().unwrap_or("pytorch"),
                v["torch"].as_str().unwrap_or("?"),
                v["threads"]
            ),
            rounds: Rounds::default(),
        })
    }

    pub(super) fn ask(&mut self, command: &str, key: &str) -> Vec<f64> {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{command}").expect("pytorch reference: write");
        self.stdin.flush().expect("pytorch reference: flush");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("pytorch reference: read");
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("pytorch reference answered {line:?}: {e}"));
        v[key]
            .as_array()
            .unwrap_or_else(|| panic!("pytorch reference answered {line:?}"))
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect()
    }

    pub(super) fn round(&mut self, steps: usize, record: bool) {
        let train = self.ask(&format!("train {steps}"), "train_s");
        let infer = self.ask(&format!("infer {steps}"), "infer_s");
        if record {
            self.rounds.train.push(median(train));
            self.rounds.infer.push(median(infer));
        }
    }
}

impl Drop for PyTorch {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

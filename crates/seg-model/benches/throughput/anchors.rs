//! The CPU anchors flex is measured against, each `scripts/bench/unet_reference.py --serve` in
//! one mode, one process per image size, driven over its stdin and stdout: PyTorch eager and
//! torch.compile (inductor) train and infer; onnxruntime infers seg-model's own ONNX export of
//! the same U-Net (what a user serving our model.onnx gets).

use std::path::{Path, PathBuf};

use super::{Rounds, batch_norm, median};

/// Which anchors run: SEG_BENCH_ANCHORS (default `eager,compile,onnxruntime`).
pub(super) fn wanted() -> Vec<String> {
    std::env::var("SEG_BENCH_ANCHORS")
        .unwrap_or_else(|_| "eager,compile,onnxruntime".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Python with torch: SEG_BENCH_PYTHON, else `$TORCH_VENV/bin/python`.
fn torch_python() -> Option<PathBuf> {
    std::env::var_os("SEG_BENCH_PYTHON")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("TORCH_VENV").map(|v| PathBuf::from(v).join("bin/python")))
}

/// Python with onnxruntime: SEG_BENCH_ORT_PYTHON (e.g. `$(scripts/model-python.sh)`).
fn ort_python() -> Option<PathBuf> {
    std::env::var_os("SEG_BENCH_ORT_PYTHON").map(PathBuf::from)
}

/// One anchor process.
pub(super) struct Anchor {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    /// Its name, version and threads, as it says.
    pub(super) name: String,
    /// Whether it trains (onnxruntime only infers).
    pub(super) trains: bool,
    /// Its per-round medians.
    pub(super) rounds: Rounds,
}

/// Starts the anchors of `size` that are wanted and whose Python is set; `onnx` is seg-model's
/// export of the benchmark U-Net (onnxruntime's model). Says which were skipped and why.
pub(super) fn start_all(size: usize, onnx: Option<&Path>) -> Vec<Anchor> {
    let mut out = Vec::new();
    for mode in wanted() {
        let (python, extra, why) = match mode.as_str() {
            "eager" | "compile" => (
                torch_python(),
                vec![],
                "set SEG_BENCH_PYTHON (python with torch)",
            ),
            "onnxruntime" => (
                ort_python(),
                onnx.map(|p| vec!["--onnx".to_string(), p.display().to_string()])
                    .unwrap_or_default(),
                "set SEG_BENCH_ORT_PYTHON=$(scripts/model-python.sh)",
            ),
            other => {
                println!("  (unknown anchor {other:?}: eager, compile or onnxruntime)");
                continue;
            }
        };
        let Some(python) = python else {
            println!("  (anchor {mode} not run: {why})");
            continue;
        };
        let mut args = vec!["--mode".to_string(), mode.clone()];
        args.extend(extra);
        match Anchor::start(&python, size, &args) {
            Some(anchor) => out.push(anchor),
            None => println!("  (anchor {mode} did not start with {})", python.display()),
        }
    }
    out
}

impl Anchor {
    fn start(python: &Path, size: usize, args: &[String]) -> Option<Self> {
        use std::io::BufRead;
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench/unet_reference.py");
        let mut cmd = std::process::Command::new(python);
        cmd.arg(&script)
            .args(["--serve", "--size", &size.to_string()])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        if !batch_norm() {
            cmd.arg("--no-batch-norm");
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| eprintln!("{} {}: {e}", python.display(), script.display()))
            .ok()?;
        let stdin = child.stdin.take()?;
        let mut stdout = std::io::BufReader::new(child.stdout.take()?);
        let mut hello = String::new();
        stdout.read_line(&mut hello).ok()?;
        let v: serde_json::Value = serde_json::from_str(&hello).ok()?;
        let backend = v["backend"].as_str().unwrap_or("anchor");
        Some(Self {
            child,
            stdin,
            stdout,
            name: format!(
                "{backend} ({}, {} threads)",
                v["torch"].as_str().unwrap_or("?"),
                v["threads"]
            ),
            trains: !backend.starts_with("onnxruntime"),
            rounds: Rounds::default(),
        })
    }

    /// Sends `command`, returns its JSON answer.
    fn ask(&mut self, command: &str) -> serde_json::Value {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{command}").expect("anchor: write");
        self.stdin.flush().expect("anchor: flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("anchor: read");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{} answered {line:?}: {e}", self.name))
    }

    fn times(&mut self, command: &str, key: &str) -> Vec<f64> {
        let v = self.ask(command);
        v[key]
            .as_array()
            .unwrap_or_else(|| panic!("{} answered {v}", self.name))
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect()
    }

    /// `steps` train steps (when it trains) and `steps` inference batches.
    pub(super) fn round(&mut self, steps: usize, record: bool) {
        let train = if self.trains {
            self.times(&format!("train {steps}"), "train_s")
        } else {
            Vec::new()
        };
        let infer = self.times(&format!("infer {steps}"), "infer_s");
        if record {
            if !train.is_empty() {
                self.rounds.train.push(median(train));
            }
            self.rounds.infer.push(median(infer));
        }
    }

    /// FLOPs of one image, forward and train step, counted by torch (PyTorch anchors only).
    pub(super) fn flops(&mut self) -> Option<(f64, f64)> {
        let v = self.ask("flops");
        Some((v["forward_flops"].as_f64()?, v["train_flops"].as_f64()?))
    }

    /// The measured float32 gemm peak in GFLOP/s (PyTorch anchors only).
    pub(super) fn peak(&mut self) -> Option<f64> {
        self.ask("peak")["gemm_gflops"].as_f64()
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

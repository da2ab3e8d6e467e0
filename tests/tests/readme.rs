//! README.md stays true: every command in its code blocks marked `runnable` names a binary,
//! script or compose profile that exists, with flags the program accepts (clap parses them with
//! `--help` appended; the quickstart's own parser likewise); every configuration key of
//! configs/default.toml is documented.

use std::path::Path;
use std::process::Command;

/// The commands of the README's runnable blocks (continuation lines joined).
fn runnable_commands(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in readme.lines() {
        let trimmed = line.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            if in_block {
                in_block = false;
            } else {
                in_block = info.split_whitespace().any(|w| w == "runnable");
            }
            continue;
        }
        if !in_block || trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head.trim_end());
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        out.push(std::mem::take(&mut pending));
    }
    out
}

/// Programs a README command may use without being checked here (standard tools).
const STANDARD_TOOLS: &[&str] = &["export", "echo", "find", "jq", "cp", "cd"];

/// Checks one command of a pipeline (its words); returns what was checked.
fn check(words: &[String], root: &Path, profiles: &[String]) -> String {
    let words: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .skip_while(|w| w.contains('=') && !w.starts_with('-'))
        .collect();
    let Some((&program, args)) = words.split_first() else {
        return "assignments".into();
    };
    match program {
        "cargo" => check_cargo(args, root),
        p if p.starts_with("scripts/") || p.starts_with("tests/") => {
            let script = root.join(p);
            assert!(script.is_file(), "README names {p}, which does not exist");
            match p {
                "scripts/with-libtorch.sh" => {
                    let inner: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
                    format!("{p} + {}", check(&inner, root, profiles))
                }
                "scripts/quickstart.sh" => {
                    let out = Command::new(&script)
                        .args(args)
                        .arg("--help")
                        .output()
                        .expect("run the quickstart's --help");
                    assert!(
                        out.status.success(),
                        "scripts/quickstart.sh {args:?} --help: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    format!("{p} {args:?}")
                }
                "scripts/stack.sh" => check_stack(args),
                "scripts/mlflow-server.sh" => {
                    assert!(
                        matches!(args.first(), Some(&("start" | "stop" | "python"))),
                        "mlflow-server.sh takes start | stop | python: {args:?}"
                    );
                    format!("{p} {args:?}")
                }
                // The test command itself: running it here would recurse.
                _ => p.to_string(),
            }
        }
        "docker" | "docker-compose" => {
            for pair in args.windows(2) {
                if pair[0] == "--profile" {
                    assert!(
                        profiles.iter().any(|p| p == pair[1]),
                        "README uses compose profile {}, not in docker-compose.yml ({profiles:?})",
                        pair[1]
                    );
                }
            }
            format!("{program} {args:?}")
        }
        // `eval "$(COMMAND)"`: COMMAND is checked.
        "eval" => {
            let inner = args
                .first()
                .and_then(|a| a.strip_prefix("$(")?.strip_suffix(')'))
                .unwrap_or_else(|| {
                    panic!("README evals something else than \"$(COMMAND)\": {args:?}")
                });
            let words = shlex::split(inner).unwrap_or_else(|| panic!("eval of {inner}"));
            format!("eval {}", check(&words, root, profiles))
        }
        p if STANDARD_TOOLS.contains(&p) => p.to_string(),
        other => panic!("README runs {other:?}: teach tests/tests/readme.rs how to check it"),
    }
}

/// `scripts/stack.sh build | up PROFILE | down | status | env`.
fn check_stack(args: &[&str]) -> String {
    match args.first() {
        Some(&"up") => assert!(
            matches!(args.get(1), Some(&("local" | "lakefs" | "scale"))),
            "stack.sh up takes local | lakefs | scale: {args:?}"
        ),
        Some(&("build" | "down" | "status" | "env")) => {}
        _ => panic!("stack.sh takes build | up PROFILE | down | status | env: {args:?}"),
    }
    format!("scripts/stack.sh {args:?}")
}

/// `cargo run -p BIN [-- ARGS]`: the binary exists and parses ARGS; other cargo commands name
/// packages of the workspace.
fn check_cargo(args: &[&str], root: &Path) -> String {
    let (cargo_args, bin_args) = match args.iter().position(|a| *a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let package = cargo_args
        .windows(2)
        .find(|w| w[0] == "-p" || w[0] == "--package")
        .map(|w| w[1]);
    if let Some(pkg) = package {
        let manifest = ["bins", "crates"]
            .iter()
            .map(|d| root.join(d).join(pkg).join("Cargo.toml"))
            .find(|p| p.is_file());
        assert!(
            manifest.is_some(),
            "README names package {pkg}, not in the workspace"
        );
    }
    match cargo_args.first() {
        Some(&"run") => {
            let bin = package.expect("cargo run in the README names its package with -p");
            let exe = e2e::bin_dir().join(bin);
            let out = Command::new(&exe)
                .args(bin_args)
                .arg("--help")
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
            assert!(
                out.status.success(),
                "`{bin} {}` is not a valid command line: {}",
                bin_args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            format!("{bin} {bin_args:?}")
        }
        Some(&("build" | "test" | "bench" | "clippy")) => format!("cargo {cargo_args:?}"),
        other => panic!("README runs cargo {other:?}: teach tests/tests/readme.rs how to check it"),
    }
}

#[test]
fn every_runnable_readme_command_is_valid() {
    let root = test_support::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).expect("compose");
    let profiles: Vec<String> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("profiles: [\""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect();
    assert!(
        profiles.contains(&"local-lakefs".to_string()) && profiles.contains(&"scale".to_string())
    );
    let commands = runnable_commands(&readme);
    assert!(
        commands.len() >= 15,
        "the README's runnable blocks hold its commands: {commands:?}"
    );
    let mut checked = Vec::new();
    for command in &commands {
        let words = shlex::split(command)
            .unwrap_or_else(|| panic!("README command does not parse as shell words: {command}"));
        for part in words.split(|w| w == "|") {
            checked.push(check(part, &root, &profiles));
        }
    }
    for must in [
        "train",
        "register_model",
        "infer",
        "scripts/quickstart.sh",
        "scripts/test.sh",
    ] {
        assert!(
            checked.iter().any(|c| c.starts_with(must)),
            "the README shows {must}: {checked:?}"
        );
    }
}

#[test]
fn every_configuration_key_is_documented() {
    let root = test_support::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let defaults: toml::Table = std::fs::read_to_string(root.join("configs/default.toml"))
        .expect("defaults")
        .parse()
        .expect("TOML");
    let mut keys = 0;
    // Leaves of nested tables too (`register.gate.metric`, `SEG_REGISTER__GATE__METRIC`).
    let mut pending: Vec<(Vec<String>, &toml::Table)> = defaults
        .iter()
        .map(|(section, table)| (vec![section.clone()], table.as_table().expect("sections")))
        .collect();
    while let Some((path, table)) = pending.pop() {
        for (key, value) in table {
            let mut at = path.clone();
            at.push(key.clone());
            if let Some(inner) = value.as_table() {
                pending.push((at, inner));
                continue;
            }
            let dotted = format!("`{}`", at.join("."));
            let env = format!("SEG_{}", at.join("__").to_uppercase());
            assert!(
                readme.contains(&dotted) && readme.contains(&env),
                "README documents {dotted} and {env}"
            );
            keys += 1;
        }
    }
    assert!(keys > 50, "{keys} keys");
}

#[test]
fn commands_split_like_a_shell() {
    let cmds = runnable_commands(
        "```sh runnable\na \\\n  --b\n# c\nfind x | jq -r 'a | b'\n```\n```sh\nnot me\n```\n",
    );
    assert_eq!(cmds, vec!["a --b", "find x | jq -r 'a | b'"]);
    let words = shlex::split(&cmds[1]).expect("words");
    assert_eq!(words.split(|w| w == "|").count(), 2);
}

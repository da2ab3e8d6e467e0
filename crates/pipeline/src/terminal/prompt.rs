//! Choices read from stdin, so that `echo 2 | register_model --manual` works like a person at a
//! terminal.

use std::io::BufRead;

use crate::error::{PipelineError, Result};

/// Reads a choice `1..=count` from stdin after `prompt` and returns it 0-based; an empty line
/// is the first entry when `empty_is_first`. `flag` names the option in messages. A bad choice
/// asks again on a terminal and is a usage error when stdin is piped or closed.
pub fn read_choice(count: usize, prompt: &str, flag: &str, empty_is_first: bool) -> Result<usize> {
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let question = if empty_is_first {
            format!("{prompt} [1-{count}, empty = 1]: ")
        } else {
            format!("{prompt} [1-{count}]: ")
        };
        // A person types after the question; piped input gets it on a line of its own, so
        // that an error that follows starts its own line.
        if interactive {
            eprint!("{question}");
        } else {
            eprintln!("{question}");
        }
        let Some(Ok(line)) = lines.next() else {
            return Err(PipelineError::Usage(format!(
                "{flag}: no choice on stdin (pipe a number, e.g. `echo 2 | ... {flag}`)"
            )));
        };
        let text = line.trim();
        if text.is_empty() && empty_is_first {
            return Ok(0);
        }
        match text.parse::<usize>() {
            Ok(n) if (1..=count).contains(&n) => return Ok(n - 1),
            _ if interactive => eprintln!("{text:?} is not a number from 1 to {count}"),
            _ => {
                return Err(PipelineError::Usage(format!(
                    "{flag}: {text:?} is not a number from 1 to {count}"
                )));
            }
        }
    }
}

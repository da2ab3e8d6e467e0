//! Choices read from stdin, so that `echo 2 | register_model --manual` works like a person at a
//! terminal.

use std::io::{BufRead, Read};

use crate::error::{PipelineError, Result};

/// Reads a choice `1..=count` from stdin after `prompt` and returns it 0-based; an empty line
/// is the first entry when `empty_is_first`. `flag` names the option in messages. A bad choice
/// asks again on a terminal and is a usage error when stdin is piped or closed.
pub fn read_choice(count: usize, prompt: &str, flag: &str, empty_is_first: bool) -> Result<usize> {
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
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
        // A choice is a short line: at most LINE_LIMIT bytes are read, the rest is left unread.
        let mut line = String::new();
        let read = (&mut input)
            .take(LINE_LIMIT)
            .read_line(&mut line)
            .unwrap_or(0);
        if read == 0 {
            return Err(PipelineError::Usage(format!(
                "{flag}: no choice on stdin (pipe a number, e.g. `echo 2 | ... {flag}`)"
            )));
        }
        let line = excerpt(line.trim());
        let text = line.as_str();
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

/// Bytes of one answer read at most.
const LINE_LIMIT: u64 = 4096;

/// `text` cut to a few dozen characters for echoing it back.
fn excerpt(text: &str) -> String {
    const SHOWN: usize = 40;
    if text.chars().count() <= SHOWN {
        return text.to_string();
    }
    let head: String = text.chars().take(SHOWN).collect();
    format!("{head}... ({} bytes)", text.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_answers_are_echoed_as_an_excerpt() {
        assert_eq!(super::excerpt("2"), "2");
        let long = "x".repeat(10_000_000);
        let shown = super::excerpt(&long);
        assert!(
            shown.len() < 80 && shown.ends_with("(10000000 bytes)"),
            "{shown}"
        );
    }
}

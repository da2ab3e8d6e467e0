//! Numbered tables of runs on stderr (the choices of `register_model --manual` and
//! `infer --interactive`), and the text helpers they use.

/// A table: a header per column (right-aligned when its width is negative) and rows of cells.
#[derive(Debug, Clone, Default)]
pub struct Table {
    columns: Vec<(String, i32)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with `columns`: `(header, width)`, a negative width right-aligns the column.
    pub fn new(columns: &[(&str, i32)]) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|(h, w)| ((*h).to_string(), *w))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (a cell per column; a missing cell is empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as lines: the header, then one numbered line per row (`#` column first).
    pub fn lines(&self) -> Vec<String> {
        let line = |number: &str, cells: &[String]| {
            let mut text = format!("{number:>3}");
            for (i, (_, width)) in self.columns.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let w = width.unsigned_abs() as usize;
                text.push_str("  ");
                if *width < 0 {
                    text.push_str(&format!("{cell:>w$}"));
                } else {
                    text.push_str(&format!("{cell:<w$}"));
                }
            }
            text.trim_end().to_string()
        };
        let header: Vec<String> = self.columns.iter().map(|(h, _)| h.clone()).collect();
        std::iter::once(line("#", &header))
            .chain(
                self.rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| line(&(i + 1).to_string(), r)),
            )
            .collect()
    }

    /// Prints the table on stderr.
    pub fn print(&self) {
        for line in self.lines() {
            eprintln!("{line}");
        }
    }
}

/// The first `n` characters of `s`.
pub fn truncate_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time in seconds (UTC); the number itself when it is out of
/// the calendar's range.
pub fn format_utc(secs: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_and_tables() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(1_764_329_400), "2025-11-28 11:30:00");
        let mut t = Table::new(&[("run id", 6), ("iou", -6)]);
        t.row(vec!["abc".into(), "0.5".into()]);
        assert_eq!(
            t.lines(),
            vec!["  #  run id     iou", "  1  abc        0.5"]
        );
    }
}

//! Printing: aligned tables for people, pretty JSON for scripts.

use std::io::Write;

use daef_core::Timestamp;
use serde::Serialize;

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// A table: a header row and rows of cells, columns padded to their widest cell. The last
/// column is never padded (it is where long text such as errors goes).
#[derive(Debug, Default)]
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                if i + 1 == columns {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table on stdout, or `empty` when it has no rows.
    pub(crate) fn print(&self, empty: &str) {
        if self.rows.is_empty() {
            println!("{empty}");
        } else {
            print!("{}", self.render());
        }
    }
}

/// `2026-11-26 10:30:00Z`: seconds are precise enough for a table.
pub(crate) fn time(t: Timestamp) -> String {
    let s = t.to_string();
    match (s.get(..10), s.get(11..19)) {
        (Some(date), Some(clock)) => format!("{date} {clock}Z"),
        _ => s,
    }
}

/// An optional cell.
pub(crate) fn opt(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// One line of at most `max` characters (errors can hold a program's stderr).
pub(crate) fn short(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.chars().count() <= max {
        line
    } else {
        let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_all_but_the_last_column() {
        let mut t = Table::new(&["ID", "STATUS", "ERROR"]);
        t.row(vec!["t1-split".into(), "Completed".into(), "-".into()]);
        t.row(vec![
            "t2".into(),
            "Failed".into(),
            "exit 3: no such file".into(),
        ]);
        assert_eq!(
            t.render(),
            "ID        STATUS     ERROR\nt1-split  Completed  -\nt2        Failed     exit 3: no such file\n"
        );
    }

    #[test]
    fn times_and_long_text_are_shortened() {
        let t = Timestamp::parse_rfc3339("2026-11-26T10:30:00.123456Z").unwrap();
        assert_eq!(time(t), "2026-11-26 10:30:00Z");
        assert_eq!(short("a\n  b  \n\nc", 10), "a b c");
        assert_eq!(short("abcdefghij", 5), "abcd…");
    }
}

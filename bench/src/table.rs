//! A scenario's result: a Markdown table (so it pastes into BENCHMARKS.md as printed), with a
//! title and notes, and the parser the smoke tests read it back with.

use std::fmt;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Lines printed under the table.
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Table {
        Table {
            title: title.into(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            ..Table::default()
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The cells of column `header`, one per row.
    pub fn column(&self, header: &str) -> Option<Vec<&str>> {
        let index = self.headers.iter().position(|h| h == header)?;
        Some(
            self.rows
                .iter()
                .map(|row| row.get(index).map(String::as_str).unwrap_or(""))
                .collect(),
        )
    }

    /// Reads back a table as [`Display`](fmt::Display) prints it: the first `|` line is the
    /// header, the `|---|` line is skipped, and the lines after the table are notes.
    pub fn parse(text: &str) -> Option<Table> {
        let mut table = Table::default();
        let cells = |line: &str| -> Vec<String> {
            line.trim()
                .trim_start_matches('|')
                .trim_end_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect()
        };
        let mut in_table = false;
        for line in text.lines() {
            let trimmed = line.trim();
            if let Some(title) = trimmed.strip_prefix("## ") {
                table.title = title.to_owned();
            } else if trimmed.starts_with('|') {
                in_table = true;
                if table.headers.is_empty() {
                    table.headers = cells(trimmed);
                } else if !trimmed.starts_with("|-") && !trimmed.starts_with("| -") {
                    let row = cells(trimmed);
                    if row.len() != table.headers.len() {
                        return None;
                    }
                    table.rows.push(row);
                }
            } else if in_table && !trimmed.is_empty() {
                table.notes.push(trimmed.to_owned());
            }
        }
        (!table.headers.is_empty()).then_some(table)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(width) = widths.get_mut(i) {
                    *width = (*width).max(cell.chars().count());
                }
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            write!(f, "|")?;
            for (cell, width) in cells.iter().zip(&widths) {
                write!(f, " {cell:>width$} |")?;
            }
            writeln!(f)
        };
        writeln!(f, "## {}", self.title)?;
        writeln!(f)?;
        line(f, &self.headers)?;
        write!(f, "|")?;
        for width in &widths {
            write!(f, "{}|", "-".repeat(width + 2))?;
        }
        writeln!(f)?;
        for row in &self.rows {
            line(f, row)?;
        }
        if !self.notes.is_empty() {
            writeln!(f)?;
            for note in &self.notes {
                writeln!(f, "{note}")?;
            }
        }
        Ok(())
    }
}

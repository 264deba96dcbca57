//! How the CLI prints: aligned tables for people, JSON for machines (`--output json`),
//! colour only when stdout is a terminal and `NO_COLOR` is unset, and a progress line on
//! stderr for long work (terminal only, so logs and pipes stay clean).

use std::io::IsTerminal;

/// `--output table|json|dot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns for people (the default).
    #[default]
    Table,
    /// JSON with stable field names, for scripts.
    Json,
    /// Graphviz (`models lineage` only).
    Dot,
}

impl Output {
    /// `--output` with the older `--json` switch of some commands folded in.
    pub fn or_json(self, json: bool) -> Self {
        if json { Output::Json } else { self }
    }
}

/// A table: a header row and rows of cells, printed with columns padded to their widest
/// cell (by characters). Cells never hold a newline (they are replaced by spaces).
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(header: I) -> Self {
        Self { header: header.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    /// A row of cells, each [`clean`]ed: a column name or an S3 key cannot drive the
    /// terminal.
    pub fn row<I: IntoIterator<Item = S>, S: ToString>(&mut self, cells: I) -> &mut Self {
        self.rows.push(cells.into_iter().map(|c| clean(&c.to_string())).collect());
        self
    }

    /// A row whose cells the caller built from [`clean`]ed text and [`paint`] only.
    pub fn painted_row<I: IntoIterator<Item = String>>(&mut self, cells: I) -> &mut Self {
        self.rows.push(cells.into_iter().collect());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, each line ending in `\n`; the last column is not padded.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).chain([self.header.len()]).max().unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i + 1 < row.len() {
                    line.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Text made safe to print on a terminal: control characters (C0, DEL, C1), zero-width and
/// bidirectional controls, line and paragraph separators and the BOM shown as `\u{..}`
/// escapes; a tab or line end as a space.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\t' | '\n' | '\r' => out.push(' '),
            c if c.is_control()
                || matches!(
                    c,
                    '\u{61c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
                ) =>
            {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// A JSON document as a two-column table of dotted field paths and values (nested objects
/// flattened, arrays of objects indexed; fields in name order), for `show` commands.
pub fn fields(value: &serde_json::Value) -> String {
    fn walk(prefix: &str, v: &serde_json::Value, t: &mut Table) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&path, v, t);
                }
            }
            serde_json::Value::Array(items) if !items.is_empty() && items.iter().any(|i| i.is_object()) => {
                for (i, v) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), v, t);
                }
            }
            serde_json::Value::String(s) => {
                t.row([prefix.to_string(), s.clone()]);
            }
            serde_json::Value::Null => {
                t.row([prefix.to_string(), "-".to_string()]);
            }
            other => {
                t.row([prefix.to_string(), other.to_string()]);
            }
        }
    }
    let mut t = Table::new(["field", "value"]);
    walk("", value, &mut t);
    t.render()
}

/// Whether stdout gets colour: a terminal, and `NO_COLOR` (no-color.org) unset.
pub fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

/// A verdict word coloured for a terminal: green for good, red for bad, yellow between.
pub fn paint(text: &str, tone: Tone, colour: bool) -> String {
    if !colour {
        return text.to_string();
    }
    let code = match tone {
        Tone::Good => "32",
        Tone::Bad => "31",
        Tone::Warn => "33",
    };
    format!("\x1b[1;{code}m{text}\x1b[0m")
}

#[derive(Debug, Clone, Copy)]
pub enum Tone {
    Good,
    Bad,
    Warn,
}

/// A progress line on stderr (`label  done/total  rate/s`), redrawn in place at most ten
/// times a second, shown only when stderr is a terminal; `finish` ends the line.
pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    started: std::time::Instant,
    last: Option<std::time::Instant>,
    shown: bool,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: Option<u64>) -> Self {
        Self {
            label: label.into(),
            total,
            done: 0,
            started: std::time::Instant::now(),
            last: None,
            shown: std::io::stderr().is_terminal(),
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        if !self.shown {
            return;
        }
        let now = std::time::Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t).as_millis() < 100) {
            return;
        }
        self.last = Some(now);
        eprint!("\r{}", self.line());
    }

    /// What has been counted so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// The text of the line (also what tests read).
    pub fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done as f64 / secs;
        match self.total {
            Some(total) if total > 0 => {
                let width = 24usize;
                let filled = ((self.done.min(total) as f64 / total as f64) * width as f64) as usize;
                format!(
                    "{} [{}{}] {}/{} {:.1}/s",
                    self.label,
                    "#".repeat(filled),
                    "-".repeat(width - filled),
                    self.done,
                    total,
                    rate
                )
            }
            _ => format!("{} {} {:.1}/s", self.label, self.done, rate),
        }
    }

    pub fn finish(&mut self) {
        if self.shown && self.last.is_some() {
            eprintln!("\r{}", self.line());
        }
        self.shown = false;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Milliseconds as a short age: `45s`, `12m`, `3h05m`, `2d04h`.
pub fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_pads_every_column_but_the_last_to_its_widest_cell() {
        let mut t = Table::new(["worker", "depth", "note"]);
        t.row(["ingest", "0", "ok"]).row(["curate", "12", "a\nb"]);
        assert_eq!(t.render(), "worker  depth  note\ningest  0      ok\ncurate  12     a b\n");
    }

    #[test]
    fn a_document_flattens_to_dotted_fields() {
        let v = serde_json::json!({"reason": {"code": "archive", "line": 3}, "ids": ["a", "b"], "gone": null,
            "rows": [{"n": 1}]});
        assert_eq!(
            fields(&v),
            "field        value\ngone         -\nids          [\"a\",\"b\"]\nreason.code  archive\nreason.line  3\nrows[0].n    1\n"
        );
    }

    #[test]
    fn cells_cannot_drive_the_terminal() {
        let mut t = Table::new(["key"]);
        t.row(["evil\u{1b}[2Jname\u{85}\u{202e}txt.csv"]);
        assert_eq!(t.render(), "key\nevil\\u{1b}[2Jname\\u{85}\\u{202e}txt.csv\n");
        assert_eq!(clean("a\tb\nc"), "a b c");
    }

    #[test]
    fn paint_adds_escape_codes_only_when_asked() {
        assert_eq!(paint("ok", Tone::Good, false), "ok");
        assert_eq!(paint("no", Tone::Bad, true), "\x1b[1;31mno\x1b[0m");
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(45_000), "45s");
        assert_eq!(age(12 * 60_000 + 5), "12m");
        assert_eq!(age((3 * 3600 + 5 * 60) * 1000), "3h05m");
        assert_eq!(age((2 * 86_400 + 4 * 3600) * 1000), "2d04h");
        assert_eq!(age(-5), "0s");
    }

    #[test]
    fn the_progress_line_shows_done_of_total() {
        let mut p = Progress::new("replay", Some(8));
        p.shown = false;
        p.inc(2);
        assert!(p.line().starts_with("replay [######------------------] 2/8 "), "{}", p.line());
        let mut open = Progress::new("upload", None);
        open.shown = false;
        open.inc(3);
        assert!(open.line().starts_with("upload 3 "), "{}", open.line());
    }
}

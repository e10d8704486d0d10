//! Rows as lines of a text table that grows as batches come (Flink's "tableau" result mode):
//! column widths are fixed by the column types and names when the header is printed, so a
//! row can be printed the moment it arrives.

use std::fmt::Write as _;

use streams_core::Result;
use streams_core::arrow::array::{Array, AsArray};
use streams_core::arrow::datatypes::{DataType, Int8Type, Schema};
use streams_core::arrow::record_batch::RecordBatch;
use streams_core::arrow::util::display::{ArrayFormatter, FormatOptions};
use streams_core::changelog::{DELETE, INSERT, UPDATE_AFTER, UPDATE_BEFORE, is_update_stream};

/// The layout of one table's rows.
#[derive(Clone, Debug)]
pub struct Tableau {
    names: Vec<String>,
    widths: Vec<usize>,
    right: Vec<bool>,
    /// Update stream: the first column shows the change (`+I`, `-U`, `+U`, `-D`).
    updates: bool,
}

/// How a change kind is shown, as in Flink.
pub fn op_symbol(op: i8) -> &'static str {
    match op {
        INSERT => "+I",
        UPDATE_BEFORE => "-U",
        UPDATE_AFTER => "+U",
        DELETE => "-D",
        _ => "??",
    }
}

fn type_width(t: &DataType) -> usize {
    match t {
        DataType::Boolean => 5,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16 => 6,
        DataType::Int32 | DataType::UInt32 | DataType::Date32 | DataType::Date64 => 10,
        DataType::Int64 | DataType::UInt64 | DataType::Float32 | DataType::Float64 => 12,
        DataType::Decimal128(p, _) | DataType::Decimal256(p, _) => *p as usize + 2,
        DataType::Timestamp(_, _) => 23,
        _ => 16,
    }
}

/// A value as one line of text: line breaks, tabs and other control characters (which would
/// break the table or drive the terminal) are shown escaped.
fn shown(text: String) -> String {
    if !text.chars().any(char::is_control) {
        return text;
    }
    text.chars()
        .map(|c| match c {
            '\n' => "\\n".to_string(),
            '\r' => "\\r".to_string(),
            '\t' => "\\t".to_string(),
            c if c.is_control() => format!("\\u{{{:x}}}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

impl Tableau {
    /// The layout for batches of `schema` (an update stream's change column is shown first).
    pub fn new(schema: &Schema) -> Self {
        let updates = is_update_stream(schema);
        let data = &schema.fields()[..schema.fields().len() - usize::from(updates)];
        let mut names = Vec::new();
        let mut widths = Vec::new();
        let mut right = Vec::new();
        if updates {
            names.push("op".to_string());
            widths.push(2);
            right.push(false);
        }
        for f in data {
            names.push(f.name().clone());
            widths.push(type_width(f.data_type()).max(f.name().chars().count()));
            right.push(f.data_type().is_numeric());
        }
        Tableau {
            names,
            widths,
            right,
            updates,
        }
    }

    fn rule(&self) -> String {
        let mut s = String::from("+");
        for w in &self.widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    }

    fn line<'a>(&self, cells: impl Iterator<Item = &'a str>) -> String {
        let mut s = String::from("|");
        for ((cell, w), right) in cells.zip(&self.widths).zip(&self.right) {
            let _ = if *right {
                write!(s, " {cell:>w$} |")
            } else {
                write!(s, " {cell:<w$} |")
            };
        }
        s.push('\n');
        s
    }

    /// The header: a rule, the column names, a rule.
    pub fn header(&self) -> String {
        let rule = self.rule();
        format!(
            "{rule}{}{rule}",
            self.line(self.names.iter().map(String::as_str))
        )
    }

    /// The closing rule.
    pub fn footer(&self) -> String {
        self.rule()
    }

    /// One line per row of `batch`.
    pub fn rows(&self, batch: &RecordBatch) -> Result<String> {
        let mut out = String::new();
        for cells in self.cells(batch)? {
            out.push_str(&self.line(cells.iter().map(String::as_str)));
        }
        Ok(out)
    }

    /// The shown cells of every row of `batch` (the change first for an update stream).
    pub fn cells(&self, batch: &RecordBatch) -> Result<Vec<Vec<String>>> {
        let options = FormatOptions::default().with_null("<NULL>");
        let width = batch.num_columns() - usize::from(self.updates);
        let formatters = batch.columns()[..width]
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let ops = self
            .updates
            .then(|| batch.column(width).as_primitive::<Int8Type>());
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let mut cells = Vec::with_capacity(self.names.len());
            if let Some(ops) = ops {
                let op = if ops.is_null(row) {
                    INSERT
                } else {
                    ops.value(row)
                };
                cells.push(op_symbol(op).to_string());
            }
            for f in &formatters {
                cells.push(shown(f.value(row).to_string()));
            }
            out.push(cells);
        }
        Ok(out)
    }

    /// The line showing `cells` (as [`Tableau::cells`] makes them).
    pub fn format_line(&self, cells: &[String]) -> String {
        self.line(cells.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use streams_core::arrow::array::{Int8Array, Int64Array, StringArray};
    use streams_core::arrow::datatypes::Field;

    use super::*;

    #[test]
    fn rows_line_up_under_the_header() -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("item", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new(streams_core::changelog::OP_COLUMN, DataType::Int8, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Int64Array::from(vec![3, 40])),
                Arc::new(Int8Array::from(vec![INSERT, UPDATE_BEFORE])),
            ],
        )?;
        let t = Tableau::new(&schema);
        let text = format!("{}{}{}", t.header(), t.rows(&batch)?, t.footer());
        let expected = "\
+----+------------------+--------------+
| op | item             |            n |
+----+------------------+--------------+
| +I | a                |            3 |
| -U | <NULL>           |           40 |
+----+------------------+--------------+
";
        assert_eq!(text, expected);
        Ok(())
    }

    #[test]
    fn control_characters_do_not_break_lines() {
        assert_eq!(shown("a\nb\tc\u{1b}[2J".to_string()), "a\\nb\\tc\\u{1b}[2J");
        assert_eq!(shown("plain".to_string()), "plain");
    }
}

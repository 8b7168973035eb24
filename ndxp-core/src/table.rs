//! The one text-table style of NDXP's command lines (feature `table`): a
//! header row, then a line per row, columns two spaces apart and
//! left-aligned unless [`Table::align_right`] says otherwise, no borders
//! and no blanks at the ends of lines. `ndxp-gateway` and `ndxp-node`
//! print their listings with it and `cargo xtask` its benchmark results.
//! It renders a `String`; printing is the binary's business.
//!
//! ```
//! use ndxp_core::table::Table;
//!
//! let mut t = Table::new(["ID", "NAME", "REQ/S"]);
//! t.align_right(&[2]);
//! t.row(["VN/GOV/000.00.00.H29", "Bộ Công an", "1200"]);
//! t.row(["VN/COM/0101234567", "Công ty ABC", "85"]);
//! assert_eq!(
//!     t.to_string(),
//!     "ID                    NAME         REQ/S\n\
//!      VN/GOV/000.00.00.H29  Bộ Công an    1200\n\
//!      VN/COM/0101234567     Công ty ABC     85\n"
//! );
//! ```

use std::fmt;

use comfy_table::{CellAlignment, ContentArrangement};

/// Spaces between two columns.
const GAP: u16 = 2;

/// A text table being built; [`Display`](fmt::Display) renders it.
pub struct Table {
    inner: comfy_table::Table,
}

impl Table {
    /// A table with these column headers and no rows yet.
    pub fn new<I, S>(headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let headers: Vec<String> = headers.into_iter().map(Into::into).collect();
        let columns = headers.len();
        let mut inner = comfy_table::Table::new();
        inner
            .load_style(comfy_table::presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(headers);
        for (i, column) in inner.column_iter_mut().enumerate() {
            let right = if i + 1 < columns { GAP } else { 0 };
            column.set_padding((0, right));
        }
        Self { inner }
    }

    /// Aligns the cells of these columns (0-based), header included, to
    /// the right, as numbers read best.
    pub fn align_right(&mut self, columns: &[usize]) -> &mut Self {
        for &i in columns {
            if let Some(column) = self.inner.column_mut(i) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        self
    }

    /// Adds a row; its cells fill the columns from the left.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let cells: Vec<String> = cells.into_iter().map(Into::into).collect();
        self.inner.add_row(cells);
        self
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.inner.lines() {
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn a_table_without_rows_is_its_header() {
        let t = Table::new(["ID", "CREATED"]);
        assert_eq!(t.to_string(), "ID  CREATED\n");
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_two_spaces_apart() {
        let mut t = Table::new(["A", "B", "C"]);
        t.row(["long cell", "", "x"]).row(["s", "mid", ""]);
        assert_eq!(
            t.to_string(),
            "A          B    C\nlong cell       x\ns          mid\n"
        );
    }

    #[test]
    fn right_aligned_columns_pad_on_the_left() {
        let mut t = Table::new(["path", "req/s"]);
        t.align_right(&[1, 7]);
        t.row(["platform", "9"]).row(["direct", "12345"]);
        assert_eq!(
            t.to_string(),
            "path      req/s\nplatform      9\ndirect    12345\n"
        );
    }
}

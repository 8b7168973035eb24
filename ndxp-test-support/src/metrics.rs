//! The metric catalogue of `docs/monitoring.md`, for the tests that check
//! it lists exactly what a process exposes.

use std::collections::BTreeSet;
use std::path::Path;

/// The metric names of the catalogue table that follows the line
/// `<!-- catalogue: {section} -->` in `docs/monitoring.md` (the first
/// backquoted name of each row). Panics when the section is missing.
pub fn catalogue(section: &str) -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let path = root.join("docs/monitoring.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let marker = format!("<!-- catalogue: {section} -->");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/monitoring.md has no {marker}"));
    text[start + marker.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with('|'))
        .filter_map(|row| {
            let cell = row.split('|').nth(1)?.trim();
            let name = cell.strip_prefix('`')?.strip_suffix('`')?;
            Some(name.to_string())
        })
        .collect()
}

/// The names a scrape of OpenMetrics `text` exposes, as queries use
/// them: a counter `x` as `x_total`, every other type by its family name.
pub fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("# TYPE ")?.split_whitespace();
            let (name, kind) = (words.next()?, words.next()?);
            Some(if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            })
        })
        .collect()
}

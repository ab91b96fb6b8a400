//! `load --verbose`: what was built after the data, and what was loaded row by row.

use dbfixtures::load::DeferReport;

/// One line per fact, indented like the other per-item lines of `load`.
pub(super) fn describe(r: &DeferReport) -> Vec<String> {
    let mut lines = Vec::new();
    if !r.tables.is_empty() {
        lines.push(format!(
            "  built after the data: {} foreign keys and {} indexes of {}",
            r.foreign_keys,
            r.indexes,
            r.tables.join(", ")
        ));
    }
    for (table, why) in &r.kept {
        lines.push(format!("  {table}: constraints checked row by row: {why}"));
    }
    lines
}

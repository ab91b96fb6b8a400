//! `dump`'s subset flags (`--where`, `--full`, `--no-children`, `--max-rows`, `--plan`), merged
//! with the config file's `[subset]` section, and the `--plan` report.

use std::io::Write;

use dbfixtures::config::SubsetSection;
use dbfixtures::subset::{Plan, Seed, SubsetOptions, DEFAULT_MAX_ROWS};
use dbfixtures::Result;

#[derive(Debug, Default, clap::Args)]
pub struct SubsetArgs {
    /// Dump only the rows of TABLE matching the SQL CONDITION, plus every row they reference
    /// and every row referencing them, transitively (repeatable; replaces [subset] where)
    #[arg(long = "where", value_name = "TABLE: CONDITION")]
    pub seeds: Vec<String>,
    /// With --where: include the seeds and the rows they need, not the rows that reference them
    #[arg(long)]
    pub no_children: bool,
    /// With --where: include these tables whole (lookup tables; repeatable)
    #[arg(long = "full", value_name = "GLOB")]
    pub full: Vec<String>,
    /// With --where: fail, writing nothing, when the subset would exceed N rows (0: no limit)
    /// [default: 1000000]
    #[arg(long, value_name = "N")]
    pub max_rows: Option<u64>,
    /// With --where: write no data; list each table's row count and how it was reached
    #[arg(long)]
    pub plan: bool,
}

/// The subset to dump, when flags or the config file name seeds.
pub fn options(args: &SubsetArgs, file: &SubsetSection) -> Result<Option<SubsetOptions>> {
    let texts = if args.seeds.is_empty() {
        &file.seeds
    } else {
        &args.seeds
    };
    if texts.is_empty() {
        if args.no_children || !args.full.is_empty() || args.max_rows.is_some() {
            return Err(dbfixtures::Error::Invalid(
                "--no-children, --full and --max-rows shape a subset dump: add \
                 --where 'TABLE: CONDITION'"
                    .into(),
            ));
        }
        return Ok(None);
    }
    let seeds = texts
        .iter()
        .map(|t| Seed::parse(t))
        .collect::<Result<Vec<_>>>()?;
    let max = args.max_rows.or(file.max_rows).unwrap_or(DEFAULT_MAX_ROWS);
    Ok(Some(SubsetOptions {
        seeds,
        no_children: args.no_children || file.no_children,
        full: file.full.iter().chain(&args.full).cloned().collect(),
        max_rows: (max > 0).then_some(max),
    }))
}

/// `--plan`: one line per table, then how its rows were reached.
pub fn write_plan(out: &mut impl Write, plan: &Plan) -> std::io::Result<()> {
    let width = plan
        .tables
        .iter()
        .map(|t| t.table.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let rows_w = plan
        .tables
        .iter()
        .map(|t| t.rows.to_string().len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(out, "{:<width$}  {:>rows_w$}  REACHED AS", "TABLE", "ROWS")?;
    for t in &plan.tables {
        for (i, (reason, n)) in t.reached.iter().enumerate() {
            let (name, rows) = if i == 0 {
                (t.table.as_str(), t.rows.to_string())
            } else {
                ("", String::new())
            };
            let n = super::term::count(*n, "row");
            writeln!(out, "{name:<width$}  {rows:>rows_w$}  {reason} ({n})")?;
        }
    }
    writeln!(
        out,
        "{} in {}, {}",
        super::term::count(plan.rows(), "row"),
        super::term::count(plan.tables.len() as u64, "table"),
        super::term::count(plan.rounds as u64, "round")
    )
}

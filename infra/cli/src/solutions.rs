//! `cosell solutions import FILE`: the partner's co-sell-ready solutions into the CRM's solution
//! catalog, from a CSV or an Excel workbook (the connector's "upload from Excel"), upserted by
//! solution id. Once the catalog holds solutions, a deal shared with Partner Center may only link
//! solutions that are in it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use calamine::Reader;
use comfy_table::Table;
use cosell_shared::crm::{CatalogSolution, Crm};
use cosell_shared::wiring;
use indicatif::{ProgressBar, ProgressStyle};

use crate::resolve::{Sources, resolve};
use crate::settings::Settings;

/// What `cosell solutions import` was asked to do.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub file: PathBuf,
    pub sandbox_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Setting(String),
    #[error("cannot read {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("the CRM's solution catalog cannot be read: {0}")]
    Catalog(String),
    #[error("{0} rows were refused (listed above)")]
    Refused(usize),
}

impl ImportError {
    /// 2 for a file or settings the command could not use, 1 when rows were refused or the
    /// catalog could not be read.
    pub fn exit_code(&self) -> u8 {
        match self {
            ImportError::Setting(_) | ImportError::File { .. } => 2,
            ImportError::Catalog(_) | ImportError::Refused(_) => 1,
        }
    }
}

/// One row of the file, numbered as a spreadsheet shows it (the header is row 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub number: usize,
    pub solution: CatalogSolution,
}

/// A row the import did not write, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub number: usize,
    pub solution_id: String,
    pub reason: String,
}

/// What the import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub refused: Vec<Refusal>,
}

/// The column a header names: spaces, case and punctuation do not matter, and the names of
/// Partner Center's own solution export are understood.
fn column(header: &str) -> Option<&'static str> {
    let key: String = header
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match key.as_str() {
        "solutionid" | "id" | "offerid" => Some("id"),
        "name" | "solutionname" | "offername" | "title" => Some("name"),
        "description" | "solutionarea" | "area" | "summary" => Some("description"),
        _ => None,
    }
}

/// Rows of cells (the first is the header) into catalog rows; rows without an id or a name,
/// and repeats of an id, are refused here.
pub fn rows_from_cells(
    cells: Vec<Vec<String>>,
    path: &Path,
) -> Result<(Vec<Row>, Vec<Refusal>), ImportError> {
    let mut lines = cells.into_iter();
    let header = lines.next().ok_or_else(|| ImportError::File {
        path: path.to_owned(),
        reason: "it is empty".into(),
    })?;
    let mut index: HashMap<&'static str, usize> = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        if let Some(c) = column(h) {
            index.entry(c).or_insert(i);
        }
    }
    for needed in ["id", "name"] {
        if !index.contains_key(needed) {
            return Err(ImportError::File {
                path: path.to_owned(),
                reason: format!(
                    "its first row names no {} column (the columns are: solution id, name, description; found: {})",
                    if needed == "id" {
                        "solution id"
                    } else {
                        "name"
                    },
                    header.join(", ")
                ),
            });
        }
    }
    let cell = |line: &[String], c: &str| {
        index
            .get(c)
            .and_then(|i| line.get(*i))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut rows = Vec::new();
    let mut refused = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (offset, line) in lines.enumerate() {
        let number = offset + 2;
        if line.iter().all(|v| v.trim().is_empty()) {
            continue;
        }
        let id = cell(&line, "id");
        let name = cell(&line, "name");
        let refuse = |reason: String| Refusal {
            number,
            solution_id: id.clone().unwrap_or_default(),
            reason,
        };
        let Some(solution_id) = id.clone() else {
            refused.push(refuse("no solution id".into()));
            continue;
        };
        let Some(name) = name else {
            refused.push(refuse("no name".into()));
            continue;
        };
        if let Some(first) = seen.get(&solution_id.to_ascii_lowercase()) {
            refused.push(refuse(format!("the same solution id as row {first}")));
            continue;
        }
        seen.insert(solution_id.to_ascii_lowercase(), number);
        rows.push(Row {
            number,
            solution: CatalogSolution {
                solution_id,
                name,
                description: cell(&line, "description"),
            },
        });
    }
    Ok((rows, refused))
}

/// The cells of a CSV file or of an Excel workbook's first sheet.
pub fn read_cells(path: &Path) -> Result<Vec<Vec<String>>, ImportError> {
    let error = |reason: String| ImportError::File {
        path: path.to_owned(),
        reason,
    };
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match extension.as_str() {
        "csv" | "txt" => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .trim(csv::Trim::All)
                .from_path(path)
                .map_err(|e| error(e.to_string()))?;
            reader
                .records()
                .map(|r| {
                    r.map(|record| record.iter().map(str::to_string).collect())
                        .map_err(|e| error(e.to_string()))
                })
                .collect()
        }
        "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => {
            let mut workbook =
                calamine::open_workbook_auto(path).map_err(|e| error(e.to_string()))?;
            let range = workbook
                .worksheet_range_at(0)
                .ok_or_else(|| error("the workbook has no sheet".into()))?
                .map_err(|e| error(e.to_string()))?;
            Ok(range
                .rows()
                .map(|row| row.iter().map(|c| c.to_string()).collect())
                .collect())
        }
        other => Err(error(format!(
            "'.{other}' is neither CSV nor an Excel workbook (.csv, .xlsx, .xls, .ods)"
        ))),
    }
}

/// Upserts `rows` into the catalog of `crm`, by solution id, ticking `progress` per row.
pub async fn upsert(
    crm: &dyn Crm,
    rows: Vec<Row>,
    mut refused: Vec<Refusal>,
    progress: &ProgressBar,
) -> Result<Summary, ImportError> {
    let existing: HashMap<String, (String, CatalogSolution)> = crm
        .catalog()
        .await
        .map_err(|e| ImportError::Catalog(e.to_string()))?
        .into_iter()
        .map(|e| {
            (
                e.solution.solution_id.trim().to_ascii_lowercase(),
                (e.crm_id, e.solution),
            )
        })
        .collect();
    let mut summary = Summary::default();
    for row in rows {
        let key = row.solution.solution_id.to_ascii_lowercase();
        let result = match existing.get(&key) {
            Some((_, current)) if same(current, &row.solution) => {
                summary.unchanged += 1;
                Ok(())
            }
            Some((crm_id, current)) => {
                // A row without a description leaves the catalog's as it is.
                let wanted = CatalogSolution {
                    description: row
                        .solution
                        .description
                        .clone()
                        .or_else(|| current.description.clone()),
                    ..row.solution.clone()
                };
                crm.update_catalog_solution(crm_id, &wanted)
                    .await
                    .map(|()| summary.updated += 1)
            }
            None => crm
                .create_catalog_solution(&row.solution)
                .await
                .map(|_| summary.created += 1),
        };
        if let Err(e) = result {
            refused.push(Refusal {
                number: row.number,
                solution_id: row.solution.solution_id.clone(),
                reason: e.to_string(),
            });
        }
        progress.inc(1);
    }
    refused.sort_by_key(|r| r.number);
    summary.refused = refused;
    Ok(summary)
}

/// A row already in the catalog as the file has it (an empty description leaves the
/// catalog's as it is, so it counts as the same).
fn same(current: &CatalogSolution, wanted: &CatalogSolution) -> bool {
    current.name.trim() == wanted.name.trim()
        && match &wanted.description {
            None => true,
            Some(d) => current.description.as_deref().map(str::trim) == Some(d.trim()),
        }
}

/// Reads the file, upserts it and writes the summary to `out`.
pub async fn import(
    options: ImportOptions,
    settings: Settings,
    out: &mut (dyn Write + Send),
) -> Result<Summary, ImportError> {
    let cells = read_cells(&options.file)?;
    let (rows, refused) = rows_from_cells(cells, &options.file)?;
    let sources = Sources {
        sandbox_url: options.sandbox_url.clone(),
        data_dir: None,
    };
    let config = resolve(settings, &sources)
        .await
        .map_err(|e| ImportError::Setting(e.to_string()))?
        .config;
    let crm: Arc<dyn Crm> =
        wiring::crm(&config).map_err(|e| ImportError::Setting(e.to_string()))?;
    let progress = ProgressBar::new(rows.len() as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} solutions {msg}") {
        progress.set_style(style);
    }
    let summary = upsert(crm.as_ref(), rows, refused, &progress).await?;
    progress.finish_and_clear();

    let mut table = Table::new();
    table.set_header(["Created", "Updated", "Unchanged", "Refused"]);
    table.add_row([
        summary.created.to_string(),
        summary.updated.to_string(),
        summary.unchanged.to_string(),
        summary.refused.len().to_string(),
    ]);
    let _ = writeln!(
        out,
        "Solution catalog from {}:\n{table}",
        options.file.display()
    );
    if !summary.refused.is_empty() {
        let mut refused = Table::new();
        refused.set_header(["Row", "Solution id", "Why it was refused"]);
        for r in &summary.refused {
            refused.add_row([
                r.number.to_string(),
                r.solution_id.clone(),
                r.reason.clone(),
            ]);
        }
        let _ = writeln!(out, "Refused rows:\n{refused}");
        return Err(ImportError::Refused(summary.refused.len()));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn headers_are_read_loosely_and_bad_rows_are_refused_with_their_number() {
        let (rows, refused) = rows_from_cells(
            cells(&[
                &["Solution ID", "Solution name", "Solution area"],
                &["sol-1", "Data platform", "Data & AI"],
                &["", "No id", ""],
                &["sol-2", "", ""],
                &["SOL-1", "Again", ""],
                &["", "", ""],
                &["sol-3", "Security", ""],
            ]),
            Path::new("catalog.csv"),
        )
        .expect("readable");
        let ids: Vec<&str> = rows
            .iter()
            .map(|r| r.solution.solution_id.as_str())
            .collect();
        assert_eq!(ids, ["sol-1", "sol-3"]);
        assert_eq!(rows[0].solution.description.as_deref(), Some("Data & AI"));
        assert_eq!(rows[1].number, 7, "blank lines keep their numbers");
        let why: Vec<(usize, &str)> = refused
            .iter()
            .map(|r| (r.number, r.reason.as_str()))
            .collect();
        assert_eq!(
            why,
            [
                (3, "no solution id"),
                (4, "no name"),
                (5, "the same solution id as row 2")
            ]
        );
    }

    #[tokio::test]
    async fn an_update_without_a_description_keeps_the_catalogs() {
        let crm = cosell_shared::testing::MemoryCrm::default();
        crm.create_catalog_solution(&CatalogSolution {
            solution_id: "sol-1".into(),
            name: "Old name".into(),
            description: Some("Data & AI".into()),
        })
        .await
        .expect("a row");
        let row = Row {
            number: 2,
            solution: CatalogSolution {
                solution_id: "SOL-1".into(),
                name: "New name".into(),
                description: None,
            },
        };
        let summary = upsert(&crm, vec![row], Vec::new(), &ProgressBar::hidden())
            .await
            .expect("upserted");
        assert_eq!((summary.created, summary.updated), (0, 1));
        let rows = crm.catalog().await.expect("the catalog");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].solution.name, "New name");
        assert_eq!(rows[0].solution.description.as_deref(), Some("Data & AI"));
    }

    #[test]
    fn a_file_without_the_id_column_is_refused_naming_the_columns() {
        let err = rows_from_cells(cells(&[&["Name", "Notes"]]), Path::new("x.csv"))
            .expect_err("no id column");
        assert!(err.to_string().contains("solution id"), "{err}");
    }
}

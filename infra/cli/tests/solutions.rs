//! `cosell solutions import` as an admin runs it: the real binary loads a CSV file and an Excel
//! workbook into each CRM's solution catalog in the sandbox, upserting by solution id, and says
//! what it did; a second import of the same file changes nothing.

#![cfg(unix)]
// A test crate: its helpers may panic on what the test set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Cosell, crm_arg};
use cosell_e2e::stack::{CrmKind, CrmSide};
use cosell_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

const ROWS: usize = 500;

/// The catalog's table and its solution id field, as the sandbox names them.
fn catalog(kind: CrmKind) -> (&'static str, &'static str) {
    match kind {
        CrmKind::Dynamics => ("cosell_solutioncatalogs", "cosell_solutionid"),
        CrmKind::Salesforce => ("Microsoft_Solution_Catalog__c", "Solution_Id__c"),
    }
}

async fn catalog_ids(sandbox: &Sandbox, kind: CrmKind) -> Vec<String> {
    let (set, field) = catalog(kind);
    let body: Value = reqwest::get(sandbox.url(&CrmSide(kind).control(set)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = match kind {
        CrmKind::Dynamics => body["value"].as_array().cloned().unwrap_or_default(),
        CrmKind::Salesforce => body.as_array().cloned().unwrap_or_default(),
    };
    let mut ids: Vec<String> = rows
        .iter()
        .filter_map(|r| r[field].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

fn csv_file(dir: &Path, rows: usize) -> std::path::PathBuf {
    let path = dir.join("solutions.csv");
    let mut text = String::from("Solution ID,Solution name,Description\n");
    for i in 0..rows {
        text.push_str(&format!(
            "sol-{i:04},\"Solution {i}, managed\",Area {}\n",
            i % 7
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn xlsx_file(dir: &Path, ids: &[&str]) -> std::path::PathBuf {
    let path = dir.join("solutions.xlsx");
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    for (c, h) in ["Solution ID", "Name", "Description"].iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for (r, id) in ids.iter().enumerate() {
        let row = r as u32 + 1;
        sheet.write_string(row, 0, *id).unwrap();
        sheet
            .write_string(row, 1, format!("Workbook {id}"))
            .unwrap();
    }
    workbook.save(&path).unwrap();
    path
}

async fn import(sandbox: &Sandbox, kind: CrmKind, file: &Path) -> (bool, String) {
    let mut cosell = Cosell::start(
        &[
            "solutions",
            "import",
            file.to_str().unwrap(),
            "--crm",
            crm_arg(kind),
            "--sandbox-url",
            sandbox.base_url(),
        ],
        &[],
    );
    let status = cosell.exit().await;
    (status.success(), cosell.output())
}

/// The summary table's numbers: created, updated, unchanged, refused.
fn counts(output: &str) -> Vec<usize> {
    output
        .lines()
        .skip_while(|l| !l.contains("Created"))
        .skip(1)
        .find_map(|l| {
            let numbers: Vec<usize> = l
                .split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty())
                .filter_map(|w| w.parse().ok())
                .collect();
            (numbers.len() == 4).then_some(numbers)
        })
        .unwrap_or_else(|| panic!("no summary in\n{output}"))
}

async fn a_csv_and_a_workbook_fill_the_catalog_once(kind: CrmKind) {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    let csv = csv_file(dir.path(), ROWS);
    let (ok, output) = import(&sandbox, kind, &csv).await;
    assert!(ok, "{output}");
    assert_eq!(counts(&output), [ROWS, 0, 0, 0], "{output}");
    let ids = catalog_ids(&sandbox, kind).await;
    assert_eq!(ids.len(), ROWS, "every row in the catalog once");

    let (ok, again) = import(&sandbox, kind, &csv).await;
    assert!(ok, "{again}");
    assert_eq!(
        counts(&again),
        [0, 0, ROWS, 0],
        "a re-import changes nothing: {again}"
    );
    assert_eq!(catalog_ids(&sandbox, kind).await.len(), ROWS);

    // A workbook renames two known solutions and adds one; a row without a name is refused.
    let workbook = xlsx_file(dir.path(), &["sol-0001", "sol-0002", "sol-9999"]);
    let (ok, output) = import(&sandbox, kind, &workbook).await;
    assert!(ok, "{output}");
    assert_eq!(counts(&output), [1, 2, 0, 0], "{output}");
    assert_eq!(catalog_ids(&sandbox, kind).await.len(), ROWS + 1);
    let (ok, again) = import(&sandbox, kind, &workbook).await;
    assert!(ok, "{again}");
    assert_eq!(counts(&again), [0, 0, 3, 0], "{again}");

    std::fs::write(
        dir.path().join("bad.csv"),
        "Solution ID,Name\nsol-a,A\n,No id\nsol-b,\n",
    )
    .unwrap();
    let (ok, output) = import(&sandbox, kind, &dir.path().join("bad.csv")).await;
    assert!(!ok, "refused rows make it fail: {output}");
    assert!(
        output.contains("no solution id") && output.contains("no name"),
        "{output}"
    );
    assert_eq!(counts(&output), [1, 0, 0, 2], "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamics_a_csv_and_a_workbook_fill_the_catalog_once() {
    a_csv_and_a_workbook_fill_the_catalog_once(CrmKind::Dynamics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_a_csv_and_a_workbook_fill_the_catalog_once() {
    a_csv_and_a_workbook_fill_the_catalog_once(CrmKind::Salesforce).await;
}

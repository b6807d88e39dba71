//! An in-memory store, for tests: the same tables, upserts by primary key, and progress
//! records, in maps. It acknowledges every write at once, or, once told to fail, reports an
//! error to the engine and acknowledges nothing more (as a store that lost its disk would).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{Ack, Cell, Store, TableSet};
use crate::error::{Error, FirstError, Result};
use crate::progress::PartitionProgress;

#[derive(Debug, Default)]
struct Contents {
    /// Set by `prepare`: the layouts.
    tables: Option<TableSet>,
    /// Per table: primary key (rendered) -> row.
    rows: Vec<BTreeMap<String, Vec<Cell>>>,
    /// Writes acknowledged.
    writes: u64,
    /// Fail every write from the next one on.
    failing: bool,
    failed: Option<FirstError>,
}

/// Tables in memory; clones share them.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore(Arc<Mutex<Contents>>);

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Contents> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every table's rows, by table name, in primary-key order.
    pub fn tables(&self) -> BTreeMap<String, Vec<Vec<Cell>>> {
        let contents = self.lock();
        let Some(tables) = &contents.tables else {
            return BTreeMap::new();
        };
        tables
            .tables
            .iter()
            .zip(&contents.rows)
            .map(|(t, rows)| (t.name.clone(), rows.values().cloned().collect()))
            .collect()
    }

    /// Writes acknowledged so far.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// From now on every write fails: the error goes to the engine, nothing is acknowledged.
    pub fn fail_from_now(&self) {
        self.lock().failing = true;
    }
}

fn key(table: &super::Table, row: &[Cell]) -> String {
    let cells: Vec<String> = table
        .primary_key()
        .map(|i| format!("{:?}", row[i]))
        .collect();
    cells.join("\u{1f}")
}

impl Store for MemoryStore {
    fn prepare(&self, tables: &TableSet, failed: &FirstError) -> Result<()> {
        let mut contents = self.lock();
        if contents.tables.is_none() {
            contents.rows = vec![BTreeMap::new(); tables.tables.len()];
            contents.tables = Some(tables.clone());
        }
        contents.failed = Some(failed.clone());
        Ok(())
    }

    fn write(&self, table: usize, rows: Vec<Vec<Cell>>, ack: Ack) {
        let mut contents = self.lock();
        if contents.failing {
            if let Some(failed) = &contents.failed {
                failed.report(Error::Store {
                    message: "memory store: writes fail (as the test asked)".into(),
                    class: crate::error::ErrorClass::Permanent,
                });
            }
            return;
        }
        let (table, delete) = (
            table & !super::tables::DELETE,
            table & super::tables::DELETE != 0,
        );
        let Some(layout) = contents.tables.as_ref().map(|t| t.tables[table].clone()) else {
            return;
        };
        for row in rows {
            if delete {
                // A delete's row is the key alone (the rows table's one key column).
                contents.rows[table].remove(&format!("{:?}", row[0]));
            } else {
                let k = key(&layout, &row);
                contents.rows[table].insert(k, row);
            }
        }
        contents.writes += 1;
        drop(contents);
        ack();
    }

    fn read_progress(&self, dataflow: &str, source: &str) -> Result<Vec<PartitionProgress>> {
        let contents = self.lock();
        let Some(rows) = contents.rows.get(TableSet::PROGRESS) else {
            return Ok(Vec::new());
        };
        let text = |c: &Cell, s: &str| matches!(c, Cell::Text(t) if t.as_str() == s);
        Ok(rows
            .values()
            .filter(|r| text(&r[0], dataflow) && text(&r[1], source))
            .filter_map(|r| {
                // The table's column order has `updated_at` where the reader has none.
                let cells: Vec<Cell> = r
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != 7)
                    .map(|(_, c)| c.clone())
                    .collect();
                TableSet::progress_from_cells(&cells)
            })
            .collect())
    }

    fn progress_sources(&self, dataflow: &str) -> Result<Vec<String>> {
        let contents = self.lock();
        let mut sources: Vec<String> = contents
            .rows
            .get(TableSet::PROGRESS)
            .into_iter()
            .flat_map(|rows| rows.values())
            .filter(|r| matches!(&r[0], Cell::Text(t) if t.as_str() == dataflow))
            .filter_map(|r| match &r[1] {
                Cell::Text(t) => Some(t.to_string()),
                _ => None,
            })
            .collect();
        sources.sort();
        sources.dedup();
        Ok(sources)
    }

    fn describe(&self) -> String {
        "memory (tests)".into()
    }
}

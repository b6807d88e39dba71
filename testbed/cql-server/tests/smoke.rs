//! Smoke test: starts the real `cql-server` binary and drives it with the scylla 1.9 driver.
//!
//! Run (release, so the inserts/s figure means something):
//!   cargo test --release --test smoke -- --nocapture
//!
//! Required checks fail the test; "report-only" checks just print what kassandra does.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{stream, StreamExt, TryStreamExt};
use scylla::{
    client::{session::Session, session_builder::SessionBuilder},
    statement::batch::{Batch, BatchType},
    value::CqlTimestamp,
};
use uuid::Uuid;

const KS: &str = "smoke";
const EVENT_ROWS: usize = 5000;
const IN_FLIGHT: usize = 64;

/// Kills the server even when the test panics.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server() -> (Server, String) {
    let port_file =
        std::env::temp_dir().join(format!("cql-server-smoke-{}.port", std::process::id()));
    let _ = std::fs::remove_file(&port_file);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cql-server"))
        .args(["--listen", "127.0.0.1:0", "--port-file"])
        .arg(&port_file)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn cql-server");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read listening line");
    let addr = line
        .trim_end()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let port = std::fs::read_to_string(&port_file).expect("port file");
    assert_eq!(
        Some(port.as_str()),
        addr.rsplit(':').next(),
        "port file matches the listening line"
    );
    let _ = std::fs::remove_file(&port_file);
    (server, addr)
}

/// The settings a scylla session needs against kassandra (test-only!).
async fn connect(addr: &str) -> Session {
    SessionBuilder::new()
        .known_node(addr)
        // kassandra has no system.peers / schema versions: awaiting agreement makes DDL "fail".
        .auto_await_schema_agreement(false)
        .fetch_schema_metadata(false)
        .build()
        .await
        .expect("connect to cql-server")
}

#[derive(Default)]
struct Report {
    lines: Vec<(bool, bool, String)>, // (required, ok, text)
}

impl Report {
    fn check(&mut self, required: bool, name: &str, outcome: Result<String, String>) {
        let ok = outcome.is_ok();
        let detail = outcome.unwrap_or_else(|e| e);
        let tag = match (ok, required) {
            (true, _) => "OK  ",
            (false, true) => "FAIL",
            (false, false) => "no  ",
        };
        println!("[{tag}] {name}: {detail}");
        self.lines.push((required, ok, name.to_owned()));
    }
}

type EventRow = (String, i32, CqlTimestamp, String);

fn event(i: usize) -> EventRow {
    (
        format!("tenant-{}", i % 10),
        (i / 10 % 5) as i32,
        CqlTimestamp(1_700_000_000_000 + i as i64),
        format!("payload {i}"),
    )
}

fn key(r: &EventRow) -> (String, i32, i64, String) {
    (r.0.clone(), r.1, r.2 .0, r.3.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let (_server, addr) = start_server();
    println!("server at {addr}");
    let session = Arc::new(connect(&addr).await);
    let mut report = Report::default();

    // --- DDL -------------------------------------------------------------------------------
    let ddl = [
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {KS} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {KS}.events (tenant text, day int, ts timestamp, \
             payload text, PRIMARY KEY ((tenant, day), ts))"
        ),
        format!("CREATE TABLE IF NOT EXISTS {KS}.users (id uuid PRIMARY KEY, name text, email text)"),
        format!("CREATE TABLE IF NOT EXISTS {KS}.metrics (name text PRIMARY KEY, total bigint, ratio double)"),
    ];
    for q in &ddl {
        let r = session.query_unpaged(q.as_str(), ()).await;
        report.check(
            true,
            &format!("DDL `{}`", &q[..q.find('(').unwrap_or(q.len()).min(60)]),
            r.map(|_| "applied".into()).map_err(|e| e.to_string()),
        );
    }
    // Repeating IF NOT EXISTS DDL must not fail.
    let r = session.query_unpaged(ddl[1].as_str(), ()).await;
    report.check(
        true,
        "CREATE TABLE IF NOT EXISTS again",
        r.map(|_| "no error".into()).map_err(|e| e.to_string()),
    );

    // --- prepared inserts, 64 in flight -------------------------------------------------------
    let insert_event = session
        .prepare(format!(
            "INSERT INTO {KS}.events (tenant, day, ts, payload) VALUES (?, ?, ?, ?)"
        ))
        .await
        .expect("prepare insert events");
    let started = Instant::now();
    let errors = stream::iter(0..EVENT_ROWS)
        .map(|i| {
            let (session, insert) = (Arc::clone(&session), insert_event.clone());
            async move { session.execute_unpaged(&insert, event(i)).await.err() }
        })
        .buffer_unordered(IN_FLIGHT)
        .filter_map(|e| async move { e })
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed();
    report.check(
        true,
        &format!("{EVENT_ROWS} prepared INSERTs, {IN_FLIGHT} in flight"),
        if errors.is_empty() {
            Ok(format!(
                "{:.0} inserts/s ({:.2?})",
                EVENT_ROWS as f64 / elapsed.as_secs_f64(),
                elapsed
            ))
        } else {
            Err(format!("{} errors, first: {}", errors.len(), errors[0]))
        },
    );

    let insert_user = session
        .prepare(format!(
            "INSERT INTO {KS}.users (id, name, email) VALUES (?, ?, ?)"
        ))
        .await
        .expect("prepare insert users");
    let insert_metric = session
        .prepare(format!(
            "INSERT INTO {KS}.metrics (name, total, ratio) VALUES (?, ?, ?)"
        ))
        .await
        .expect("prepare insert metrics");
    let errors = stream::iter(0..1000usize)
        .map(|i| {
            let s = Arc::clone(&session);
            let (u, m) = (insert_user.clone(), insert_metric.clone());
            async move {
                let a = s
                    .execute_unpaged(
                        &u,
                        (
                            Uuid::from_u128(i as u128 + 1),
                            format!("user {i}"),
                            format!("u{i}@example.org"),
                        ),
                    )
                    .await
                    .err();
                let b = s
                    .execute_unpaged(
                        &m,
                        (
                            format!("metric-{i}"),
                            i as i64 * 1_000_000_007,
                            i as f64 / 3.0,
                        ),
                    )
                    .await
                    .err();
                a.or(b)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .filter_map(|e| async move { e })
        .collect::<Vec<_>>()
        .await;
    report.check(
        true,
        "1000 uuid/text + 1000 bigint/double prepared INSERTs",
        if errors.is_empty() {
            Ok("no errors".into())
        } else {
            Err(errors[0].to_string())
        },
    );

    // --- unlogged batch of prepared inserts -------------------------------------------------
    let mut batch = Batch::new(BatchType::Unlogged);
    let batch_rows: Vec<EventRow> = (0..50)
        .map(|i| {
            (
                "tenant-batch".to_owned(),
                7,
                CqlTimestamp(1_800_000_000_000 + i),
                format!("batched {i}"),
            )
        })
        .collect();
    for _ in &batch_rows {
        batch.append_statement(insert_event.clone());
    }
    let r = session.batch(&batch, batch_rows.clone()).await;
    report.check(
        true,
        "UNLOGGED BATCH of 50 prepared INSERTs",
        r.map(|_| "applied".into()).map_err(|e| e.to_string()),
    );

    let mut expected: BTreeSet<_> = (0..EVENT_ROWS).map(|i| key(&event(i))).collect();
    expected.extend(batch_rows.iter().map(key));

    // --- full-table reads with paging --------------------------------------------------------
    let mut select_all = session
        .prepare(format!("SELECT tenant, day, ts, payload FROM {KS}.events"))
        .await
        .expect("prepare select all");
    select_all.set_page_size(700);
    let got: Result<BTreeSet<_>, String> = async {
        let pager = session
            .execute_iter(select_all.clone(), ())
            .await
            .map_err(|e| e.to_string())?;
        let rows: Vec<EventRow> = pager
            .rows_stream::<EventRow>()
            .map_err(|e| e.to_string())?
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows.iter().map(key).collect())
    }
    .await;
    report.check(
        true,
        "execute_iter SELECT whole table (page size 700)",
        got.and_then(|got| {
            if got == expected {
                Ok(format!("all {} rows, exact match", got.len()))
            } else {
                Err(format!(
                    "got {} rows, expected {}",
                    got.len(),
                    expected.len()
                ))
            }
        }),
    );

    let mut stmt = scylla::statement::Statement::new(format!(
        "SELECT tenant, day, ts, payload FROM {KS}.events"
    ));
    stmt.set_page_size(1000);
    let got: Result<Vec<EventRow>, String> = async {
        session
            .query_iter(stmt, ())
            .await
            .map_err(|e| e.to_string())?
            .rows_stream::<EventRow>()
            .map_err(|e| e.to_string())?
            .try_collect()
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    report.check(
        true,
        "query_iter SELECT whole table (page size 1000)",
        got.and_then(|rows| {
            let set: BTreeSet<_> = rows.iter().map(key).collect();
            if rows.len() == expected.len() && set == expected {
                Ok(format!("all {} rows, no duplicates", rows.len()))
            } else {
                Err(format!(
                    "got {} rows ({} distinct), expected {}",
                    rows.len(),
                    set.len(),
                    expected.len()
                ))
            }
        }),
    );

    // --- SELECT by full partition key --------------------------------------------------------
    let by_partition = session
        .prepare(format!(
            "SELECT tenant, day, ts, payload FROM {KS}.events WHERE tenant = ? AND day = ?"
        ))
        .await
        .expect("prepare select by partition");
    let want: BTreeSet<_> = expected
        .iter()
        .filter(|k| k.0 == "tenant-3" && k.1 == 2)
        .cloned()
        .collect();
    let got = select_rows(&session, &by_partition, ("tenant-3", 2i32)).await;
    report.check(
        true,
        "SELECT by full partition key (prepared)",
        got.and_then(|rows| {
            let set: BTreeSet<_> = rows.iter().map(key).collect();
            if set == want && rows.len() == want.len() {
                Ok(format!("{} rows, exact match", rows.len()))
            } else {
                Err(format!("got {} rows, expected {}", rows.len(), want.len()))
            }
        }),
    );
    let got = session
        .query_unpaged(
            format!("SELECT tenant, day, ts, payload FROM {KS}.events WHERE tenant = 'tenant-batch' AND day = 7"),
            (),
        )
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.into_rows_result().map_err(|e| e.to_string()))
        .map(|r| r.rows_num());
    report.check(
        true,
        "SELECT by full partition key (literal, unpaged)",
        got.and_then(|n| {
            if n == 50 {
                Ok("50 rows".into())
            } else {
                Err(format!("{n} rows, expected 50"))
            }
        }),
    );

    // Paging inside one partition (page smaller than the partition).
    let mut small_pages = by_partition.clone();
    small_pages.set_page_size(30);
    let want: BTreeSet<_> = expected
        .iter()
        .filter(|k| k.0 == "tenant-5" && k.1 == 4)
        .cloned()
        .collect();
    let got = select_rows::<EventRow>(&session, &small_pages, ("tenant-5", 4i32)).await;
    report.check(
        true,
        "SELECT by partition key, page size 30 < partition size",
        got.and_then(|rows| {
            let set: BTreeSet<_> = rows.iter().map(key).collect();
            if set == want && rows.len() == want.len() {
                Ok(format!(
                    "{} rows over several pages, exact match",
                    rows.len()
                ))
            } else {
                Err(format!(
                    "got {} rows ({} distinct), expected {}",
                    rows.len(),
                    set.len(),
                    want.len()
                ))
            }
        }),
    );

    // --- upsert ------------------------------------------------------------------------------
    let id = Uuid::from_u128(0xdead_beef);
    let by_id = session
        .prepare(format!(
            "SELECT id, name, email FROM {KS}.users WHERE id = ?"
        ))
        .await
        .expect("prepare select user");
    let r: Result<String, String> = async {
        for (name, email) in [("first", "first@x"), ("second", "second@x")] {
            session
                .execute_unpaged(&insert_user, (id, name, email))
                .await
                .map_err(|e| e.to_string())?;
        }
        let rows = select_rows::<(Uuid, String, String)>(&session, &by_id, (id,)).await?;
        match rows.as_slice() {
            [(_, name, email)] if name == "second" && email == "second@x" => {
                Ok("one row, last values".into())
            }
            other => Err(format!("got {other:?}")),
        }
    }
    .await;
    report.check(true, "upsert same primary key twice", r);

    // --- DELETE by full primary key ------------------------------------------------------------
    let r: Result<String, String> = async {
        let (t, d, ts, _) = event(13); // tenant-3, day 1
        session
            .query_unpaged(
                format!("DELETE FROM {KS}.events WHERE tenant = ? AND day = ? AND ts = ?"),
                (&t, d, ts),
            )
            .await
            .map_err(|e| e.to_string())?;
        let rows = select_rows::<EventRow>(&session, &by_partition, (&t, d)).await?;
        let want = expected.iter().filter(|k| k.0 == t && k.1 == d).count() - 1;
        let gone = rows.iter().all(|r| r.2 != ts);
        if gone && rows.len() == want {
            Ok(format!("row gone, {want} left in partition"))
        } else {
            Err(format!(
                "{} rows left (expected {want}), deleted row still there: {}",
                rows.len(),
                !gone
            ))
        }
    }
    .await;
    report.check(
        true,
        "DELETE by full primary key (composite pk + clustering)",
        r,
    );

    let r: Result<String, String> = async {
        session
            .query_unpaged(format!("DELETE FROM {KS}.users WHERE id = ?"), (id,))
            .await
            .map_err(|e| e.to_string())?;
        let rows = select_rows::<(Uuid, String, String)>(&session, &by_id, (id,)).await?;
        if rows.is_empty() {
            Ok("row gone".into())
        } else {
            Err(format!("still there: {rows:?}"))
        }
    }
    .await;
    report.check(true, "DELETE by full primary key (uuid pk)", r);

    // Report-only extras: UPDATE and whole-partition DELETE.
    let r: Result<String, String> = async {
        session
            .query_unpaged(
                format!("UPDATE {KS}.users SET name = ? WHERE id = ?"),
                ("renamed", Uuid::from_u128(5)),
            )
            .await
            .map_err(|e| e.to_string())?;
        let rows =
            select_rows::<(Uuid, String, String)>(&session, &by_id, (Uuid::from_u128(5),)).await?;
        match rows.as_slice() {
            [(_, name, email)] if name == "renamed" && email == "u4@example.org" => {
                Ok("name changed, email kept".into())
            }
            other => Err(format!("got {other:?}")),
        }
    }
    .await;
    report.check(false, "UPDATE one column by primary key", r);
    let r: Result<String, String> = async {
        session
            .query_unpaged(
                format!("DELETE FROM {KS}.events WHERE tenant = 'tenant-batch' AND day = 7"),
                (),
            )
            .await
            .map_err(|e| e.to_string())?;
        let rows = select_rows::<EventRow>(&session, &by_partition, ("tenant-batch", 7i32)).await?;
        if rows.is_empty() {
            Ok("partition gone".into())
        } else {
            Err(format!("{} rows left", rows.len()))
        }
    }
    .await;
    report.check(false, "DELETE whole partition (partition key only)", r);

    // --- bigint / double round trip ----------------------------------------------------------
    let got = async {
        let pager = session
            .query_iter(format!("SELECT name, total, ratio FROM {KS}.metrics"), ())
            .await
            .map_err(|e| e.to_string())?;
        pager
            .rows_stream::<(String, i64, f64)>()
            .map_err(|e| e.to_string())?
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    report.check(
        true,
        "bigint/double table read back",
        got.and_then(|rows| {
            let map: BTreeMap<_, _> = rows.into_iter().map(|(n, t, r)| (n, (t, r))).collect();
            let ok = map.len() == 1000
                && (0..1000usize).all(|i| {
                    map.get(&format!("metric-{i}"))
                        == Some(&(i as i64 * 1_000_000_007, i as f64 / 3.0))
                });
            if ok {
                Ok("1000 rows, exact values".into())
            } else {
                Err(format!("{} rows or values differ", map.len()))
            }
        }),
    );

    // --- report-only: server robustness and keyspace handling ---------------------------------
    // Counters make kassandra panic; the server must answer with an error and stay up.
    let counter = async {
        session
            .query_unpaged(
                format!("CREATE TABLE IF NOT EXISTS {KS}.hits (k text PRIMARY KEY, n counter)"),
                (),
            )
            .await
            .map_err(|e| format!("create: {e}"))?;
        session
            .query_unpaged(format!("UPDATE {KS}.hits SET n = n + 1 WHERE k = 'a'"), ())
            .await
            .map_err(|e| format!("update: {e}"))?;
        Ok::<_, String>(())
    }
    .await;
    let alive = session
        .query_unpaged(
            format!("SELECT name FROM {KS}.metrics WHERE name = 'metric-1'"),
            (),
        )
        .await;
    report.check(
        true,
        "server survives a kassandra panic (counter table)",
        match alive {
            Ok(_) => Ok(format!("counter statement -> {counter:?}; next query OK")),
            Err(e) => Err(format!("next query failed: {e}")),
        },
    );

    let other = connect(&addr).await;
    let r = other
        .query_unpaged("SELECT name FROM metrics WHERE name = 'metric-1'", ())
        .await;
    report.check(
        false,
        "unqualified table without USE is an error",
        match r {
            Err(e) => Ok(format!("error: {e}")),
            Ok(_) => Err("succeeded".into()),
        },
    );
    let r = async {
        other
            .use_keyspace(KS, false)
            .await
            .map_err(|e| e.to_string())?;
        let n = other
            .query_unpaged("SELECT name FROM metrics WHERE name = 'metric-1'", ())
            .await
            .map_err(|e| e.to_string())?
            .into_rows_result()
            .map_err(|e| e.to_string())?
            .rows_num();
        if n == 1 {
            Ok("USE + unqualified SELECT works".into())
        } else {
            Err(format!("{n} rows"))
        }
    }
    .await;
    report.check(false, "Session::use_keyspace", r);
    // USE on one session must not leak into another connection.
    let r = session
        .query_unpaged("SELECT name FROM metrics WHERE name = 'metric-1'", ())
        .await;
    report.check(
        false,
        "USE is per connection (first session still has no keyspace)",
        match r {
            Err(e) => Ok(format!("error: {e}")),
            Ok(_) => Err("unqualified query succeeded".into()),
        },
    );

    let failed: Vec<_> = report
        .lines
        .iter()
        .filter(|(req, ok, _)| *req && !ok)
        .map(|l| l.2.clone())
        .collect();
    assert!(failed.is_empty(), "required checks failed: {failed:?}");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

async fn select_rows<R>(
    session: &Session,
    stmt: &scylla::statement::prepared::PreparedStatement,
    values: impl scylla::serialize::row::SerializeRow,
) -> Result<Vec<R>, String>
where
    R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    session
        .execute_iter(stmt.clone(), values)
        .await
        .map_err(|e| e.to_string())?
        .rows_stream::<R>()
        .map_err(|e| e.to_string())?
        .try_collect()
        .await
        .map_err(|e| e.to_string())
}

/// The deletes Weir's Cassandra sink sends for a table input's tombstones: `DELETE FROM ks.t
/// WHERE key = ?` on a rows table (one uuid partition key, no clustering), prepared, executed
/// alone and in unlogged batches (also mixed with inserts), then the table read back whole with
/// paging as the tests read it. kassandra 0.14 parses, prepares and executes DELETE by full
/// primary key itself (`Plan::Delete` removes the partition); the server adds nothing. Every
/// check here is required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_deletes_alone_and_in_batches_remove_rows() {
    let (_server, addr) = start_server();
    let session = connect(&addr).await;
    let ks = "smoke_delete";
    for q in [
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ),
        // As Weir's sink creates a rows table.
        format!("CREATE TABLE IF NOT EXISTS {ks}.created_users (id uuid, name text, PRIMARY KEY ((id)))"),
    ] {
        session.query_unpaged(q, ()).await.expect("DDL");
    }
    let insert = session
        .prepare(format!(
            "INSERT INTO {ks}.created_users (id, name) VALUES (?, ?)"
        ))
        .await
        .expect("prepare insert");
    let delete = session
        .prepare(format!("DELETE FROM {ks}.created_users WHERE id = ?"))
        .await
        .expect("prepare delete");
    let id = |i: u128| Uuid::from_u128(0x1000 + i);
    let mut expected: BTreeMap<Uuid, String> = BTreeMap::new();
    for i in 0..600 {
        session
            .execute_unpaged(&insert, (id(i), format!("user {i}")))
            .await
            .expect("insert");
        expected.insert(id(i), format!("user {i}"));
    }
    // Alone: every 7th user.
    for i in (0..600).step_by(7) {
        session
            .execute_unpaged(&delete, (id(i),))
            .await
            .expect("delete");
        expected.remove(&id(i));
    }
    // Twice, and a key that never existed: no error, nothing else changes.
    session
        .execute_unpaged(&delete, (id(0),))
        .await
        .expect("delete again");
    session
        .execute_unpaged(&delete, (Uuid::from_u128(0xffff_ffff),))
        .await
        .expect("delete of a missing key");
    // An unlogged batch of 20 deletes.
    let mut batch = Batch::new(BatchType::Unlogged);
    let mut values = Vec::new();
    for i in (1..600).step_by(29).take(20) {
        batch.append_statement(delete.clone());
        values.push((id(i),));
        expected.remove(&id(i));
    }
    session
        .batch(&batch, &values)
        .await
        .expect("a batch of deletes");
    // A batch of an insert, its delete, a re-insert and the delete of an original user:
    // applied in order.
    let mut mixed = Batch::new(BatchType::Unlogged);
    mixed.append_statement(insert.clone());
    mixed.append_statement(delete.clone());
    mixed.append_statement(insert.clone());
    mixed.append_statement(delete.clone());
    let a = id(5000);
    session
        .batch(&mixed, ((a, "gone"), (a,), (a, "back"), (id(2),)))
        .await
        .expect("a mixed batch");
    expected.insert(a, "back".into());
    expected.remove(&id(2));
    // Re-inserting a deleted key brings it back.
    session
        .execute_unpaged(&insert, (id(7), "again"))
        .await
        .expect("re-insert");
    expected.insert(id(7), "again".into());
    // The whole table, paged (the tests' readers), and by key.
    let mut scan =
        scylla::statement::Statement::new(format!("SELECT id, name FROM {ks}.created_users"));
    scan.set_page_size(50);
    let rows: Vec<(Uuid, String)> = session
        .query_iter(scan, ())
        .await
        .expect("scan")
        .rows_stream::<(Uuid, String)>()
        .expect("rows")
        .try_collect()
        .await
        .expect("scan rows");
    let got: BTreeMap<Uuid, String> = rows.iter().cloned().collect();
    assert_eq!(got.len(), rows.len(), "no row twice in a scan");
    assert_eq!(got, expected, "the table after deletes");
    let by_id = session
        .prepare(format!(
            "SELECT id, name FROM {ks}.created_users WHERE id = ?"
        ))
        .await
        .expect("prepare select");
    for i in [0u128, 1, 2, 3, 7, 14, 5000] {
        let rows = select_rows::<(Uuid, String)>(&session, &by_id, (id(i),))
            .await
            .expect("select by id");
        assert_eq!(
            rows.first().map(|r| r.1.clone()),
            expected.get(&id(i)).cloned(),
            "user {i}"
        );
    }
}

//! The oracle's as-of join on a tiny hand-written data set, checked against hand-computed
//! cells: which version of a user an event is joined with (before, at and after a version's
//! time, after a tombstone, for an unknown user, on a tie across partitions), the window
//! counts per users.nat, tombstones that are late or malformed, and the inner join's
//! unmatched table.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use common::{hex, oracle_inputs, Dataset, Msg, Tables};

/// 2026-11-21T10:00:00Z: a whole minute and a whole 5 minutes.
const T0: i64 = 1_795_255_200_000;
const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
const C: &str = "cccccccc-0000-4000-8000-000000000003";
const D: &str = "dddddddd-0000-4000-8000-000000000004";

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(T0 + ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn user(offset: i64, id: &str, nat: &str, gender: &str, at: i64) -> Msg {
    let json = format!(
        r#"{{"id":"{id}","gender":"{gender}","nat":"{nat}","created_at":"{}"}}"#,
        time(at)
    );
    Msg::new(offset, json.into_bytes(), Some(T0 + at))
}

fn event(offset: i64, id: u32, user: &str, ty: &str, amount: Option<f64>, at: i64) -> Msg {
    let amount = amount.map_or(String::new(), |a| format!(r#","amount":{a}"#));
    let json = format!(
        r#"{{"event_id":"eeeeeeee-0000-4000-8000-{id:012}","user_id":"{user}","type":"{ty}"{amount},"created_at":"{}"}}"#,
        time(at)
    );
    Msg::new(offset, json.into_bytes(), Some(T0 + at))
}

fn topics() -> BTreeMap<String, Dataset> {
    let users = Dataset::from([
        (
            0,
            vec![
                user(0, A, "NO", "female", 0),
                user(1, B, "DE", "male", 1_000),
                user(2, D, "SE", "male", 2_000),
                // A's second version.
                user(3, A, "FR", "female", 10_000),
                // B deleted as of 20 s.
                Msg::tombstone(4, B.as_bytes(), Some(T0 + 20_000)),
                // No key: a dead letter.
                Msg {
                    key: None,
                    ..Msg::tombstone(5, b"", Some(T0 + 20_000))
                },
                // Late (the watermark is 20 s - 5 s): deletes nothing.
                Msg::tombstone(6, A.as_bytes(), Some(T0 + 1_000)),
            ],
        ),
        // D's other version at the same event time, in a later partition: it wins the tie.
        (1, vec![user(0, D, "IT", "male", 2_000)]),
    ]);
    let events = Dataset::from([
        (
            0,
            vec![
                event(0, 0, A, "login", None, 5_000),      // A as NO
                event(1, 1, A, "page_view", None, 10_000), // exactly A's FR version: FR
                event(2, 2, B, "login", None, 15_000),     // B as DE
                event(3, 3, B, "login", None, 25_000),     // B deleted: null
                event(4, 4, C, "login", None, 26_000),     // unknown: null
                Msg::new(5, b"{not json".to_vec(), Some(T0 + 27_000)),
                event(6, 6, A, "purchase", Some(12.5), 30_000), // A as FR
            ],
        ),
        (
            1,
            vec![
                event(0, 7, B, "login", None, 500), // before B's first version: null
                event(1, 8, D, "purchase", Some(2.25), 3_000), // D as IT (the tie)
            ],
        ),
    ]);
    BTreeMap::from([
        ("users_created".into(), users),
        ("user_events".into(), events),
    ])
}

fn dataflow() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dataflows/user_activity.toml")
}

/// The rows of `table` whose first cells are `start`.
fn starting<'a>(tables: &'a Tables, table: &str, start: &[&str]) -> Vec<&'a Vec<String>> {
    tables[table]
        .iter()
        .filter(|row| row.len() >= start.len() && row.iter().zip(start).all(|(c, s)| c == s))
        .collect()
}

/// The aggregates (events, active_users, revenue) of one by_value row.
fn by_value(
    tables: &Tables,
    window: &str,
    dimension: &str,
    label: &str,
    start: i64,
) -> Vec<String> {
    let size = if window == "1m" { 60_000 } else { 300_000 };
    let key = [
        "user_activity".to_string(),
        window.into(),
        dimension.into(),
        label.into(),
        "2026-11-21".into(),
        (T0 + start).to_string(),
        (T0 + start + size).to_string(),
    ];
    let rows: Vec<_> = tables["activity_by_value"]
        .iter()
        .filter(|r| r[..7] == key)
        .collect();
    assert_eq!(rows.len(), 1, "one by_value row {key:?}: {rows:?}");
    rows[0][7..].to_vec()
}

fn strings(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

#[test]
fn the_oracle_joins_each_event_with_its_users_version_as_of_its_time() {
    let t = oracle_inputs(&dataflow(), &topics());

    // 1m per users.nat: NO e0; FR e1, e6 (12.5); DE e2; IT the tie (2.25); null: e3 (B
    // deleted), e4 (C unknown), B before its first version: users B and C.
    assert_eq!(
        by_value(&t, "1m", "users.nat", "NO", 0),
        strings(&["1", "1", "0"])
    );
    assert_eq!(
        by_value(&t, "1m", "users.nat", "FR", 0),
        strings(&["2", "1", "12.5"])
    );
    assert_eq!(
        by_value(&t, "1m", "users.nat", "DE", 0),
        strings(&["1", "1", "0"])
    );
    assert_eq!(
        by_value(&t, "1m", "users.nat", "IT", 0),
        strings(&["1", "1", "2.25"])
    );
    assert_eq!(
        by_value(&t, "1m", "users.nat", "null", 0),
        strings(&["3", "2", "0"])
    );
    assert!(starting(
        &t,
        "activity_by_value",
        &["user_activity", "1m", "users.nat", "SE"]
    )
    .is_empty());
    // Per events.type in 5m: 6 logins/page views... by type.
    assert_eq!(
        by_value(&t, "5m", "events.type", "login", 0),
        strings(&["5", "3", "0"])
    );
    assert_eq!(
        by_value(&t, "5m", "events.type", "purchase", 0),
        strings(&["2", "2", "14.75"])
    );
    // Genders: the deleted and unknown users have none.
    assert_eq!(
        by_value(&t, "1m", "users.gender", "female", 0),
        strings(&["3", "1", "12.5"])
    );
    assert_eq!(
        by_value(&t, "1m", "users.gender", "male", 0),
        strings(&["2", "2", "2.25"])
    );
    assert_eq!(
        by_value(&t, "1m", "users.gender", "null", 0),
        strings(&["3", "2", "0"])
    );
    // by_window holds the same cells, keyed by window first.
    let row = starting(
        &t,
        "activity_by_window",
        &["user_activity", "1m", "users.nat", &T0.to_string(), "null"],
    );
    assert_eq!(row.len(), 1);
    assert_eq!(
        row[0][5..],
        strings(&[&(T0 + 60_000).to_string(), "3", "2", "0"])
    );
    // Every joined event is in the windows (9 events, one malformed).
    let total: i64 = starting(
        &t,
        "activity_by_value",
        &["user_activity", "1m", "users.nat"],
    )
    .iter()
    .map(|r| r[7].parse::<i64>().unwrap())
    .sum();
    assert_eq!(total, 8);

    // The users' rows: A's last version, D's later partition, B deleted; the late tombstone
    // of A deleted nothing.
    let users = &t["created_users"];
    assert_eq!(users.len(), 2, "{users:?}");
    let ids: BTreeSet<&str> = users.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, BTreeSet::from([A, D]));
    assert_eq!(starting(&t, "created_users", &[A])[0][3], "female");
    // Each event's row; the malformed one is a dead letter.
    assert_eq!(t["user_events"].len(), 8);
    let purchase = starting(&t, "user_events", &["eeeeeeee-0000-4000-8000-000000000006"]);
    assert_eq!(purchase[0][1..], strings(&[A, "purchase", "12.5"]));
    let dead = &t["events_dead_letters"];
    assert_eq!(dead.len(), 1);
    let dead = dead.iter().next().unwrap();
    assert_eq!(dead[..4], strings(&["user_events", "0", "5", "malformed"]));
    assert_eq!(common_normalized(&dead[4]), "malformed JSON: ");
    assert_eq!(dead[5..], strings(&[&hex(b"{not json"), "9"]));

    // The tombstone without a key: a malformed dead letter with an empty payload.
    let dead: Vec<_> = t["users_dead_letters"].iter().collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0][..4],
        strings(&["users_created", "0", "5", "malformed"])
    );
    assert!(dead[0][4].starts_with("tombstone"));
    assert_eq!(dead[0][5..], strings(&["", "0"]));
    // The late tombstone: a late row with an empty payload.
    let late: Vec<_> = t["users_late_records"].iter().collect();
    let expected = [
        "users_created".to_string(),
        "0".into(),
        "6".into(),
        (T0 + 1_000).to_string(),
        (T0 + 15_000).to_string(),
        String::new(),
        "0".into(),
    ];
    assert_eq!(late, vec![&expected.to_vec()]);
    assert!(t["events_late_records"].is_empty());
    // A left join has no unmatched table.
    assert!(!t.contains_key("events_unmatched"));
}

fn common_normalized(cell: &str) -> String {
    // The reason's wording after the fixed start is serde_json's.
    if cell.starts_with("malformed JSON: ") {
        "malformed JSON: ".into()
    } else {
        cell.into()
    }
}

#[test]
fn an_inner_join_sends_events_without_a_version_to_the_unmatched_table() {
    let dir = common::temp_dir("oracle_join");
    let path = dir.join("inner.toml");
    let text = std::fs::read_to_string(dataflow()).unwrap();
    assert!(text.contains("type = \"left\""));
    std::fs::write(&path, text.replace("type = \"left\"", "type = \"inner\"")).unwrap();
    let t = oracle_inputs(&path, &topics());
    let unmatched: BTreeSet<Vec<String>> = [("0", "3", B), ("0", "4", C), ("1", "0", B)]
        .iter()
        .map(|(p, o, k)| strings(&["user_events", p, o, k]))
        .collect();
    assert_eq!(t["events_unmatched"], unmatched);
    assert!(starting(
        &t,
        "activity_by_value",
        &["user_activity", "1m", "users.nat", "null"]
    )
    .is_empty());
    assert_eq!(
        by_value(&t, "1m", "users.nat", "FR", 0),
        strings(&["2", "1", "12.5"])
    );
    assert_eq!(
        by_value(&t, "5m", "events.type", "login", 0),
        strings(&["2", "2", "0"])
    );
    // The stream's own rows do not depend on the join.
    assert_eq!(t["user_events"].len(), 8);
}

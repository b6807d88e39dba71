//! The oracle's as-of join on a tiny hand-written data set, checked against hand-computed
//! cells: which version of a user an event is joined with (before, at and after a version's
//! time, after a tombstone, for an unknown user, on a tie across partitions), the window
//! counts per users.nat, tombstones that are late or malformed, and the inner join's
//! unmatched table; the as-of join's `left`/`right` synonyms and `select`; a table input's
//! declared delete marker (deletes as of a record's time, late and dead markers); and the
//! interval join of dataflows/activation.toml (edges, pairs, selection, inner and left, a
//! negative bound).

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

#[test]
fn left_and_right_name_the_stream_and_the_table_of_an_as_of_join() {
    let dir = common::temp_dir("oracle_join");
    let text = std::fs::read_to_string(dataflow()).unwrap();
    let synonyms = text
        .replace("stream = \"events\"", "left = \"events\"")
        .replace("table = \"users\"", "right = \"users\"");
    assert!(synonyms.contains("left = \"events\"") && synonyms.contains("right = \"users\""));
    for ty in ["left", "inner"] {
        let (a, b) = (
            dir.join(format!("stream_{ty}.toml")),
            dir.join(format!("left_{ty}.toml")),
        );
        let ty = format!("type = \"{ty}\"");
        std::fs::write(&a, text.replace("type = \"left\"", &ty)).unwrap();
        std::fs::write(&b, synonyms.replace("type = \"left\"", &ty)).unwrap();
        assert_eq!(oracle_inputs(&a, &topics()), oracle_inputs(&b, &topics()));
    }
}

#[test]
fn an_as_of_join_selects_the_streams_records_by_a_field() {
    let dir = common::temp_dir("oracle_join");
    let path = dir.join("purchases.toml");
    let text = std::fs::read_to_string(dataflow()).unwrap();
    let at = "[[inputs.fields]]\nname = \"event_id\"";
    assert!(text.contains(at));
    let select = format!("select = {{ field = \"type\", values = [\"purchase\"] }}\n\n{at}");
    std::fs::write(&path, text.replacen(at, &select, 1)).unwrap();
    let t = oracle_inputs(&path, &topics());
    // Only the two purchases join: A as FR (12.5), D as IT (2.25).
    assert_eq!(
        by_value(&t, "1m", "users.nat", "FR", 0),
        strings(&["1", "1", "12.5"])
    );
    assert_eq!(
        by_value(&t, "1m", "users.nat", "IT", 0),
        strings(&["1", "1", "2.25"])
    );
    assert_eq!(
        starting(&t, "activity_by_value", &["user_activity", "1m"]).len(),
        // Two nationalities, two genders, one event type.
        5
    );
    // Every event is still a row.
    assert_eq!(t["user_events"].len(), 8);
}

// The interval join of dataflows/activation.toml: users with their purchases.

const E: &str = "eeeeeeee-0000-4000-8000-000000000005";
const F: &str = "ffffffff-0000-4000-8000-000000000006";

fn activation() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dataflows/activation.toml")
}

/// The activation file with `from` replaced by `to` (each must be in it).
fn activation_with(name: &str, changes: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(activation()).unwrap();
    for (from, to) in changes {
        assert!(text.contains(from), "{from:?}");
        text = text.replace(from, to);
    }
    let path = common::temp_dir("oracle_join").join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn purchases() -> BTreeMap<String, Dataset> {
    let users = Dataset::from([
        (
            0,
            vec![
                user(0, A, "NO", "female", 0),
                user(1, B, "DE", "male", 1_000),
                user(2, C, "NO", "female", 2_000), // no purchase
                user(3, D, "SE", "male", 3_000),
            ],
        ),
        (
            1,
            vec![
                user(0, E, "FR", "female", 400_000),
                // Late (the watermark is 395 s): joins nothing, is not unmatched.
                user(1, F, "NO", "male", 300),
            ],
        ),
    ]);
    let p = |offset, id, user, amount, at| event(offset, id, user, "purchase", Some(amount), at);
    let events = Dataset::from([(
        0,
        vec![
            p(0, 0, A, 1.0, 0),                        // A: exactly A's time + 0s
            p(1, 1, F, 50.0, 300),                     // F is late
            p(2, 2, D, 0.5, 2_999),                    // D: 1 ms before D's time
            event(3, 3, C, "login", None, 5_000),      // not a purchase
            event(4, 4, A, "page_view", None, 60_000), // not a purchase
            p(5, 5, E, 16.0, 99_999),                  // E: 1 ms before E's time - 5m
            p(6, 6, E, 8.0, 100_000),                  // E: exactly E's time - 5m
            p(7, 7, D, 3.0, 103_000),                  // D: two purchases within 10m
            p(8, 8, D, 4.0, 203_000),
            p(9, 9, B, 2.5, 601_000),     // B: exactly B's time + 10m
            p(10, 10, B, 100.0, 601_001), // B: 1 ms after
            // Late (the watermark is 596.001 s), within C's interval: joins nothing.
            p(11, 11, C, 32.0, 5_000),
            // A tombstone on a stream: a malformed dead letter.
            Msg::tombstone(12, b"x", Some(T0 + 601_001)),
        ],
    )]);
    BTreeMap::from([
        ("users_created".into(), users),
        ("user_events".into(), events),
    ])
}

/// The aggregates (activated, purchases, revenue) of the 1h window from T0 per users.nat
/// `label`, from both window tables (which must agree), or `None` without a row.
fn activation_cell(t: &Tables, label: &str) -> Option<Vec<String>> {
    let (start, end) = (T0.to_string(), (T0 + 3_600_000).to_string());
    let by_value = starting(
        t,
        "activation_by_value",
        &[
            "activation",
            "1h",
            "users.nat",
            label,
            "2026-11-21",
            &start,
            &end,
        ],
    );
    let by_window = starting(
        t,
        "activation_by_window",
        &["activation", "1h", "users.nat", &start, label, &end],
    );
    assert_eq!(by_value.len(), by_window.len());
    assert!(by_value.len() <= 1);
    let cells = by_value.first().map(|r| r[7..].to_vec());
    assert_eq!(cells, by_window.first().map(|r| r[6..].to_vec()));
    cells
}

fn unmatched_users(ids: &[(&str, &str, &str)]) -> BTreeSet<Vec<String>> {
    ids.iter()
        .map(|(p, o, k)| strings(&["users_created", p, o, k]))
        .collect()
}

#[test]
fn the_oracle_joins_each_user_with_the_purchases_within_the_interval() {
    let t = oracle_inputs(&activation(), &purchases());
    // NO: A's purchase at the lower edge (not its page view); C has none. DE: B's at the upper
    // edge, not the one 1 ms after. SE: D's two (not the one before D's time): two pairs, one
    // user. FR: E's purchases are before E's time.
    assert_eq!(activation_cell(&t, "NO"), Some(strings(&["1", "1", "1"])));
    assert_eq!(activation_cell(&t, "DE"), Some(strings(&["1", "1", "2.5"])));
    assert_eq!(activation_cell(&t, "SE"), Some(strings(&["1", "2", "7"])));
    assert_eq!(activation_cell(&t, "FR"), None);
    assert_eq!(t["activation_by_value"].len(), 3);
    assert_eq!(t["activation_by_window"].len(), 3);
    // C (only a login, and a late purchase) and E are not activated; the late F is neither.
    assert_eq!(
        t["users_not_activated"],
        unmatched_users(&[("0", "2", C), ("1", "0", E)])
    );

    // Each input's own tables, selection or not: every good event is a row.
    assert_eq!(t["activation_events"].len(), 11);
    let login = starting(
        &t,
        "activation_events",
        &["eeeeeeee-0000-4000-8000-000000000003"],
    );
    assert_eq!(login[0][1..], strings(&[C, "login", "null"]));
    let late: Vec<_> = t["activation_events_late"].iter().collect();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0][..3], strings(&["user_events", "0", "11"]));
    let dead: Vec<_> = t["activation_events_dead_letters"].iter().collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0][..4],
        strings(&["user_events", "0", "12", "malformed"])
    );
    assert_eq!(common_normalized(&dead[0][4]), "malformed JSON: ");
    assert_eq!(dead[0][5..], strings(&["", "0"]));
    assert_eq!(t["registered_users"].len(), 5);
    let ids: BTreeSet<&str> = t["registered_users"]
        .iter()
        .map(|r| r[0].as_str())
        .collect();
    assert_eq!(ids, BTreeSet::from([A, B, C, D, E]));
    let late: Vec<_> = t["registrations_late"].iter().collect();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0][..3], strings(&["users_created", "1", "1"]));
    assert!(t["registrations_dead_letters"].is_empty());
}

#[test]
fn a_left_interval_join_gives_users_without_a_purchase_nulls() {
    let path = activation_with("left.toml", &[("type = \"inner\"", "type = \"left\"")]);
    let t = oracle_inputs(&path, &purchases());
    // C and E: one record each, the purchase's fields null (no revenue), the user counted.
    assert_eq!(activation_cell(&t, "NO"), Some(strings(&["2", "2", "1"])));
    assert_eq!(activation_cell(&t, "DE"), Some(strings(&["1", "1", "2.5"])));
    assert_eq!(activation_cell(&t, "SE"), Some(strings(&["1", "2", "7"])));
    assert_eq!(activation_cell(&t, "FR"), Some(strings(&["1", "1", "0"])));
    assert!(!t.contains_key("users_not_activated"));
    assert_eq!(t["activation_events"].len(), 11);
}

#[test]
fn an_interval_join_with_a_negative_lower_bound_looks_back() {
    let path = activation_with(
        "before.toml",
        &[
            ("lower = \"0s\"", "lower = \"-5m\""),
            ("upper = \"10m\"", "upper = \"0s\""),
        ],
    );
    let t = oracle_inputs(&path, &purchases());
    // A: its purchase at its own time (the upper edge; the lower one clamps at 0). D: the one
    // 1 ms before. E: the one exactly 5m before, not the one 1 ms earlier. B and C: none.
    assert_eq!(activation_cell(&t, "NO"), Some(strings(&["1", "1", "1"])));
    assert_eq!(activation_cell(&t, "SE"), Some(strings(&["1", "1", "0.5"])));
    assert_eq!(activation_cell(&t, "FR"), Some(strings(&["1", "1", "8"])));
    assert_eq!(activation_cell(&t, "DE"), None);
    assert_eq!(
        t["users_not_activated"],
        unmatched_users(&[("0", "1", B), ("0", "2", C)])
    );
}

#[test]
fn selection_takes_only_the_selected_values_into_the_join() {
    // Logins too: A's page view stays out, C's login joins.
    let path = activation_with(
        "logins.toml",
        &[(
            "values = [\"purchase\"]",
            "values = [\"purchase\", \"login\"]",
        )],
    );
    let t = oracle_inputs(&path, &purchases());
    assert_eq!(activation_cell(&t, "NO"), Some(strings(&["2", "2", "1"])));
    assert_eq!(t["users_not_activated"], unmatched_users(&[("1", "0", E)]));
    // Selecting by a number's label: the 1.0 amount labels as "1"; nothing else joins.
    let path = activation_with(
        "amount.toml",
        &[(
            "field = \"type\", values = [\"purchase\"]",
            "field = \"amount\", values = [\"1\"]",
        )],
    );
    let t = oracle_inputs(&path, &purchases());
    assert_eq!(activation_cell(&t, "NO"), Some(strings(&["1", "1", "1"])));
    assert_eq!(t["activation_by_value"].len(), 1);
    assert_eq!(t["activation_events"].len(), 11);
}

// A table input's declared delete marker.

/// A user record with an `op` field.
fn marked(offset: i64, id: &str, nat: &str, gender: &str, at: i64, op: &str) -> Msg {
    let json = format!(
        r#"{{"id":"{id}","gender":"{gender}","nat":"{nat}","op":"{op}","created_at":"{}"}}"#,
        time(at)
    );
    Msg::new(offset, json.into_bytes(), Some(T0 + at))
}

/// user_activity.toml with an `op` field of the users and `delete_marker` on it.
fn with_delete_marker(name: &str, join_type: &str) -> PathBuf {
    let mut text = std::fs::read_to_string(dataflow()).unwrap();
    for (from, to) in [
        (
            "kind = \"table\"\n",
            "kind = \"table\"\ndelete_marker = { field = \"op\", values = [\"delete\", \"d\"] }\n",
        ),
        (
            "[inputs.tables]\nrows = \"created_users\"",
            "[[inputs.fields]]\nname = \"op\"\ntype = \"text\"\n\n[inputs.tables]\nrows = \"created_users\"",
        ),
        ("type = \"left\"", join_type),
    ] {
        assert_eq!(text.matches(from).count(), 1, "{from:?}");
        text = text.replace(from, to);
    }
    let path = common::temp_dir("oracle_join").join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// B's marker at 1 s, late (the watermark is 10 s - 5 s): it deletes nothing.
fn late_marker() -> Msg {
    marked(5, B, "DE", "male", 1_000, "delete")
}

fn marker_topics() -> BTreeMap<String, Dataset> {
    // No created_at: a dead letter, whatever its marker.
    let dead_marker = Msg::new(
        9,
        format!(r#"{{"id":"{A}","op":"delete"}}"#).into_bytes(),
        None,
    );
    let users = Dataset::from([(
        0,
        vec![
            user(0, A, "NO", "female", 0),
            user(1, B, "DE", "male", 1_000),
            user(2, D, "SE", "male", 2_000),
            // A deleted as of 5 s (a full record).
            marked(3, A, "NO", "female", 5_000, "delete"),
            // A's new version; "upsert" is no marker value.
            marked(4, A, "FR", "female", 10_000, "upsert"),
            late_marker(),
            marked(6, C, "NO", "male", 12_000, "upsert"),
            // Not late (the watermark is 7 s): deletes C as of 8 s, before its version at
            // 12 s; the rows table, in offset order, loses C.
            marked(7, C, "NO", "male", 8_000, "d"),
            marked(8, D, "SE", "male", 20_000, "d"),
            dead_marker,
        ],
    )]);
    let events = Dataset::from([(
        0,
        vec![
            event(0, 0, A, "login", None, 4_000),  // A as NO
            event(1, 1, A, "login", None, 5_000),  // exactly A's delete: null
            event(2, 2, A, "login", None, 6_000),  // A deleted: null
            event(3, 3, D, "login", None, 7_000),  // D as SE
            event(4, 4, C, "login", None, 9_000),  // C's delete at 8 s: null
            event(5, 5, A, "login", None, 11_000), // A as FR
            event(6, 6, B, "login", None, 12_000), // B as DE: the late marker deleted nothing
            event(7, 7, C, "login", None, 13_000), // C's version at 12 s: NO
            event(8, 8, D, "login", None, 21_000), // D deleted at 20 s: null
            event(9, 9, A, "login", None, 22_000), // A as FR: the dead marker deleted nothing
        ],
    )]);
    BTreeMap::from([
        ("users_created".into(), users),
        ("user_events".into(), events),
    ])
}

#[test]
fn a_table_inputs_delete_marker_deletes_its_key_as_of_the_records_time() {
    let t = oracle_inputs(
        &with_delete_marker("marker.toml", "type = \"left\""),
        &marker_topics(),
    );
    let cell = |label: &str| by_value(&t, "1m", "users.nat", label, 0);
    assert_eq!(cell("NO"), strings(&["2", "2", "0"]));
    assert_eq!(cell("FR"), strings(&["2", "1", "0"]));
    assert_eq!(cell("SE"), strings(&["1", "1", "0"]));
    assert_eq!(cell("DE"), strings(&["1", "1", "0"]));
    assert_eq!(cell("null"), strings(&["4", "3", "0"]));
    assert_eq!(
        starting(
            &t,
            "activity_by_value",
            &["user_activity", "1m", "users.nat"]
        )
        .len(),
        5
    );
    let gender = |label: &str| by_value(&t, "1m", "users.gender", label, 0);
    assert_eq!(gender("female"), strings(&["3", "1", "0"]));
    assert_eq!(gender("male"), strings(&["3", "3", "0"]));
    assert_eq!(gender("null"), strings(&["4", "3", "0"]));

    // The rows: A's new version and B; C and D deleted.
    let users = &t["created_users"];
    assert_eq!(users.len(), 2, "{users:?}");
    let ids: BTreeSet<&str> = users.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, BTreeSet::from([A, B]));
    let a = starting(&t, "created_users", &[A])[0];
    assert_eq!(
        (a[3].as_str(), a.last().unwrap().as_str()),
        ("female", "upsert")
    );
    assert_eq!(
        starting(&t, "created_users", &[B])[0].last().unwrap(),
        "null"
    );
    // The late marker is a late record.
    let late: Vec<_> = t["users_late_records"].iter().collect();
    let expected = strings(&[
        "users_created",
        "0",
        "5",
        &(T0 + 1_000).to_string(),
        &(T0 + 5_000).to_string(),
        &hex(&late_marker().payload),
        &late_marker().payload.len().to_string(),
    ]);
    assert_eq!(late, vec![&expected]);
    // The marker without an event time is a dead letter.
    let dead: Vec<_> = t["users_dead_letters"].iter().collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0][..5],
        strings(&[
            "users_created",
            "0",
            "9",
            "missing_field",
            "missing required field \"created_at\""
        ])
    );
    assert_eq!(t["user_events"].len(), 10);

    // An inner join: the events without a version, deleted or not yet, are unmatched.
    let inner = with_delete_marker("marker_inner.toml", "type = \"inner\"");
    let t = oracle_inputs(&inner, &marker_topics());
    let unmatched: BTreeSet<Vec<String>> = [("1", A), ("2", A), ("4", C), ("8", D)]
        .iter()
        .map(|(o, k)| strings(&["user_events", "0", o, k]))
        .collect();
    assert_eq!(t["events_unmatched"], unmatched);
    assert!(starting(
        &t,
        "activity_by_value",
        &["user_activity", "1m", "users.nat", "null"]
    )
    .is_empty());

    // Without the marker, marked records are versions like any other.
    let t = oracle_inputs(&dataflow(), &marker_topics());
    assert_eq!(t["created_users"].len(), 4);
    assert!(starting(
        &t,
        "activity_by_value",
        &["user_activity", "1m", "users.nat", "null"]
    )
    .is_empty());
}

//! The built-in generator: topics that need no broker.
//!
//! A generated topic has `partitions` partitions; the message at (partition, offset) is a pure
//! function of (seed, partition, offset), so replaying from any offset yields the same bytes,
//! key and timestamp, exactly like re-reading a Kafka partition. Global index `i = offset *
//! partitions + partition` orders messages in time: message `i` has event time `epoch + i *
//! 1000 / rate` (`epoch + i` ms when unthrottled) minus up to 2 s of disorder; a seeded
//! `late_per_mille` share is a further minute old (late), and a `malformed_per_mille` share is
//! malformed (cut in half, its id missing, its `created_at` not a time, or not UTF-8), so the
//! dead-letter and late tables have something to show. Every message carries its event time
//! as its timestamp.
//!
//! Two topics ([`GeneratedTopic`]; [`GeneratorConfig::for_topic`] maps a topic name to one):
//!
//! - `users_created` ([`GeneratedTopic::Users`]): randomuser-like users, already formatted
//!   ([`FormattedUser`]). A `duplicates_per_mille` share repeats the message three offsets
//!   earlier in its partition (a producer retry: same bytes, key and timestamp). Each message
//!   is keyed by its user id (hyphenated uuid text), as `weir produce` keys them; a malformed
//!   message whose id cannot be read has no key. A `tombstones_per_mille` share of the messages
//!   at offset 5 or later are *tombstones* (a Kafka null value: empty payload,
//!   [`Message::tombstone`]) of the user of the message five offsets earlier in the same
//!   partition: key = that user's id, timestamp = the tombstone's own event time, computed as
//!   for any message (so, with the disorder, it may precede its user's). When that earlier
//!   message is not a plain user (a duplicate, malformed, or itself drawn as a tombstone), the
//!   message is an ordinary user instead. With `tombstones_per_mille = 0` the topic is, byte
//!   for byte, what earlier versions generated. [`GeneratorConfig::user_id_at`] tells which
//!   user id a position carries.
//! - `user_events` ([`GeneratedTopic::Events`]): `{"event_id", "user_id", "type", "amount",
//!   "created_at"}` with type `login`, `page_view` or `purchase`; `amount` (two decimals) only
//!   for purchases; keyed by `event_id`. Event `i` refers to the user of the users topic (same
//!   seed, partitions and count) at a global index drawn from `[i - 2000, i + 30]`, so most
//!   events come after their user's row in event time and some before it (left joins, late
//!   tables). When that position holds no user (malformed, a tombstone, past the end of a
//!   bounded topic) the event names a random user that does not exist. Events have no
//!   duplicates and no tombstones.
//!
//! [`GeneratorConfig::write_files`] writes either topic as JSON-lines files; tombstones have no
//! line (a JSON-lines file cannot hold a null value) and are left out.

use std::io::Write;

use super::{Message, Reader, StartAt};
use crate::data::hash::mix64;
use crate::data::user::FormattedUser;
use crate::error::Result;

/// Which topic a generator makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GeneratedTopic {
    /// `users_created`: formatted users (and, optionally, tombstones of earlier users).
    #[default]
    Users,
    /// `user_events`: events of the users of the users topic.
    Events,
}

impl GeneratedTopic {
    /// The topic's name.
    pub fn name(self) -> &'static str {
        match self {
            GeneratedTopic::Users => "users_created",
            GeneratedTopic::Events => "user_events",
        }
    }

    /// The generated topic of this name, if any.
    pub fn from_name(topic: &str) -> Option<GeneratedTopic> {
        match topic {
            "users_created" => Some(GeneratedTopic::Users),
            "user_events" => Some(GeneratedTopic::Events),
            _ => None,
        }
    }
}

/// What the generator makes.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    /// Seed of every choice.
    pub seed: u64,
    /// Number of partitions.
    pub partitions: i32,
    /// Total messages over all partitions (`None`: unbounded).
    pub count: Option<u64>,
    /// Messages per second over all partitions (0: as fast as possible). Also the spacing of
    /// event times (0: 1 ms apart).
    pub rate: f64,
    /// Event time of message 0, epoch ms.
    pub epoch_ms: u64,
    /// Per-mille of messages that repeat an earlier message of their partition (users only).
    pub duplicates_per_mille: u64,
    /// Per-mille of messages whose event time is a minute old (late).
    pub late_per_mille: u64,
    /// Per-mille of messages that are malformed.
    pub malformed_per_mille: u64,
    /// Which topic.
    pub topic: GeneratedTopic,
    /// Per-mille of users messages (at offset 5 or later) that are tombstones of an earlier
    /// user of their partition (users only).
    pub tombstones_per_mille: u64,
    /// Events per user (at least 1). The events topic made by [`Self::for_topic`] from a
    /// users configuration has this many times its `count` and `rate`; event `i` refers to a
    /// user near users index `i / events_per_user`.
    pub events_per_user: u64,
}

/// What [`GeneratorConfig::keyed_message`] made, besides the bytes it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generated {
    /// The message timestamp (its event time), epoch ms.
    pub timestamp: i64,
    /// Whether the message has a key (the key buffer holds it); malformed messages whose id
    /// cannot be read have none.
    pub keyed: bool,
    /// A tombstone: a null value (the payload is empty).
    pub tombstone: bool,
}

/// The draw of a users position (a value of the moment, never stored: its size is no matter).
#[allow(clippy::large_enum_variant)]
enum UserDraw {
    /// The same message as this earlier offset.
    Duplicate(i64),
    /// A tombstone, at this event time, of the user at this earlier offset (a plain user).
    Tombstone { time: u64, of: i64 },
    /// A user; malformed when `malformed_roll < malformed_per_mille`.
    User {
        time: u64,
        user: FormattedUser,
        malformed_roll: u64,
    },
}

/// Salt of the users' tombstone rolls (a stream of its own, so the other draws stay as they
/// were before tombstones existed).
const TOMBSTONE_SALT: u64 = 0x70b5_7013_0000_0001;
/// Salt of the events' draws.
const EVENTS_SALT: u64 = 0xe7e7_0000_0000_0002;
/// How far back (global index) an event's user is drawn from.
const EVENT_USER_BEFORE: u64 = 2000;
/// How far ahead (global index) an event's user is drawn from.
const EVENT_USER_AFTER: u64 = 30;
/// How many offsets before a tombstone its user is.
const TOMBSTONE_BACK: i64 = 5;
/// How many offsets before a duplicate its original is.
const DUPLICATE_BACK: i64 = 3;

impl GeneratorConfig {
    /// The same generator (seed, partitions, count, rate, epoch and shares) making the
    /// generated topic of this name: `users_created` or `user_events`; `None` for others.
    pub fn for_topic(&self, topic: &str) -> Option<GeneratorConfig> {
        let topic = GeneratedTopic::from_name(topic)?;
        let users = self.users();
        if topic == GeneratedTopic::Users {
            return Some(users);
        }
        let k = users.events_per_user.max(1);
        Some(GeneratorConfig {
            topic,
            count: users.count.map(|c| c.saturating_mul(k)),
            rate: users.rate * k as f64,
            ..users
        })
    }

    /// The users topic this configuration's events refer to (itself for a users topic).
    fn users(&self) -> GeneratorConfig {
        if self.topic == GeneratedTopic::Users {
            return self.clone();
        }
        let k = self.events_per_user.max(1);
        GeneratorConfig {
            topic: GeneratedTopic::Users,
            count: self.count.map(|c| c / k),
            rate: self.rate / k as f64,
            ..self.clone()
        }
    }

    /// Number of messages in `partition` (`None`: unbounded).
    pub fn partition_len(&self, partition: i32) -> Option<i64> {
        let p = self.partitions as u64;
        self.count
            .map(|n| (n.saturating_sub(partition as u64)).div_ceil(p) as i64)
    }

    fn index(&self, partition: i32, offset: i64) -> u64 {
        offset as u64 * self.partitions as u64 + partition as u64
    }

    fn nominal_time(&self, index: u64) -> u64 {
        if self.rate > 0.0 {
            self.epoch_ms + (index as f64 * 1000.0 / self.rate) as u64
        } else if self.topic == GeneratedTopic::Events {
            // As fast as possible: the events of a user's millisecond share it.
            self.epoch_ms + index / self.events_per_user.max(1)
        } else {
            self.epoch_ms + index
        }
    }

    /// A nominal time with up to 2 s of disorder, and late by a minute for a seeded share.
    fn event_time(&self, index: u64, rng: &mut fastrand::Rng) -> u64 {
        let mut time = self.nominal_time(index).saturating_sub(rng.u64(0..2000));
        let late_roll = rng.u64(0..1000);
        if late_roll < self.late_per_mille {
            time = time.saturating_sub(60_000);
        }
        time
    }

    /// The message at (partition, offset): its bytes (empty for a tombstone) and timestamp.
    pub fn message(&self, partition: i32, offset: i64, buf: &mut Vec<u8>) -> i64 {
        let mut key = Vec::new();
        self.keyed_message(partition, offset, &mut key, buf)
            .timestamp
    }

    /// The message at (partition, offset): writes its key into `key` (cleared; empty when it
    /// has none) and its bytes into `payload` (cleared; empty for a tombstone).
    pub fn keyed_message(
        &self,
        partition: i32,
        offset: i64,
        key: &mut Vec<u8>,
        payload: &mut Vec<u8>,
    ) -> Generated {
        key.clear();
        payload.clear();
        match self.topic {
            GeneratedTopic::Users => self.user_message(partition, offset, key, payload),
            GeneratedTopic::Events => self.event_message(partition, offset, key, payload),
        }
    }

    fn user_rng(&self, index: u64) -> fastrand::Rng {
        fastrand::Rng::with_seed(mix64(self.seed ^ mix64(index.wrapping_add(0x5eed))))
    }

    /// Whether the tombstone roll of this users position says "tombstone" (before checking
    /// the earlier user).
    fn tombstone_rolled(&self, partition: i32, offset: i64) -> bool {
        if offset < TOMBSTONE_BACK || self.tombstones_per_mille == 0 {
            return false;
        }
        let index = self.index(partition, offset);
        let mut rng = fastrand::Rng::with_seed(mix64(self.seed ^ mix64(index ^ TOMBSTONE_SALT)));
        rng.u64(0..1000) < self.tombstones_per_mille
    }

    /// Draws the users position (partition, offset). The draws are those of earlier versions,
    /// in their order; tombstone rolls come from a stream of their own.
    fn draw_user(&self, partition: i32, offset: i64) -> UserDraw {
        let index = self.index(partition, offset);
        let mut rng = self.user_rng(index);
        let roll = rng.u64(0..1000);
        if roll < self.duplicates_per_mille && offset >= DUPLICATE_BACK {
            // The same message again, as a producer retry or a replayed batch would deliver it.
            return UserDraw::Duplicate(offset - DUPLICATE_BACK);
        }
        let time = self.event_time(index, &mut rng);
        if self.tombstone_rolled(partition, offset)
            && self.is_plain_user(partition, offset - TOMBSTONE_BACK)
        {
            return UserDraw::Tombstone {
                time,
                of: offset - TOMBSTONE_BACK,
            };
        }
        let user = random_user(&mut rng, time);
        let malformed_roll = rng.u64(0..1000);
        UserDraw::User {
            time,
            user,
            malformed_roll,
        }
    }

    /// Whether the users position is a plain, valid user: not a duplicate, not drawn as a
    /// tombstone (whether or not it became one), not malformed. Never recurses.
    fn is_plain_user(&self, partition: i32, offset: i64) -> bool {
        let index = self.index(partition, offset);
        let mut rng = self.user_rng(index);
        if rng.u64(0..1000) < self.duplicates_per_mille && offset >= DUPLICATE_BACK {
            return false;
        }
        if self.tombstone_rolled(partition, offset) {
            return false;
        }
        let time = self.event_time(index, &mut rng);
        let _ = random_user(&mut rng, time);
        rng.u64(0..1000) >= self.malformed_per_mille
    }

    /// The user id the users message at (partition, offset) carries when it is a valid user
    /// (a duplicate carries its original's), `None` when it is malformed, a tombstone, or not
    /// there (a partition or offset outside the topic). About the users topic of this
    /// configuration whatever its [`topic`](Self::topic): events refer to users through it.
    pub fn user_id_at(&self, partition: i32, offset: i64) -> Option<String> {
        if self.topic != GeneratedTopic::Users {
            return self.users().user_id_at(partition, offset);
        }
        if partition < 0 || partition >= self.partitions || offset < 0 {
            return None;
        }
        if self
            .partition_len(partition)
            .is_some_and(|len| offset >= len)
        {
            return None;
        }
        let mut offset = offset;
        loop {
            match self.draw_user(partition, offset) {
                UserDraw::Duplicate(earlier) => offset = earlier,
                UserDraw::Tombstone { .. } => return None,
                UserDraw::User {
                    user,
                    malformed_roll,
                    ..
                } => return (malformed_roll >= self.malformed_per_mille).then_some(user.id),
            }
        }
    }

    fn user_message(
        &self,
        partition: i32,
        offset: i64,
        key: &mut Vec<u8>,
        buf: &mut Vec<u8>,
    ) -> Generated {
        let mut offset = offset;
        loop {
            match self.draw_user(partition, offset) {
                UserDraw::Duplicate(earlier) => offset = earlier,
                UserDraw::Tombstone { time, of } => {
                    // `of` is a plain user: it has an id.
                    let id = self.user_id_at(partition, of).unwrap_or_default();
                    key.extend_from_slice(id.as_bytes());
                    return Generated {
                        timestamp: time as i64,
                        keyed: true,
                        tombstone: true,
                    };
                }
                UserDraw::User {
                    time,
                    user,
                    malformed_roll,
                } => {
                    // Keyed by the id, when the payload carries a readable one (as `weir
                    // produce` keys what it sends).
                    let mut keyed = true;
                    if malformed_roll < self.malformed_per_mille {
                        match malformed_roll % 4 {
                            0 => {
                                let _ = serde_json::to_writer(&mut *buf, &user);
                                buf.truncate(buf.len() / 2);
                                keyed = false;
                            }
                            1 => {
                                let mut json = serde_json::to_value(&user).unwrap_or_default();
                                if let Some(o) = json.as_object_mut() {
                                    o.remove("id");
                                }
                                let _ = serde_json::to_writer(&mut *buf, &json);
                                keyed = false;
                            }
                            2 => {
                                let mut json = serde_json::to_value(&user).unwrap_or_default();
                                json["created_at"] = serde_json::Value::from("not a time");
                                let _ = serde_json::to_writer(&mut *buf, &json);
                            }
                            _ => {
                                buf.extend_from_slice(b"{\"id\":\"\xff\xfe\"}");
                                keyed = false;
                            }
                        }
                    } else {
                        let _ = serde_json::to_writer(&mut *buf, &user);
                    }
                    if keyed {
                        key.extend_from_slice(user.id.as_bytes());
                    }
                    return Generated {
                        timestamp: time as i64,
                        keyed,
                        tombstone: false,
                    };
                }
            }
        }
    }

    fn event_message(
        &self,
        partition: i32,
        offset: i64,
        key: &mut Vec<u8>,
        buf: &mut Vec<u8>,
    ) -> Generated {
        let index = self.index(partition, offset);
        let mut rng = fastrand::Rng::with_seed(mix64(self.seed ^ mix64(index ^ EVENTS_SALT)));
        let time = self.event_time(index, &mut rng);
        let event_id = uuid_from(rng.u128(..));
        let kind = match rng.u32(0..100) {
            0..25 => "login",
            25..85 => "page_view",
            _ => "purchase",
        };
        let cents = rng.u64(100..50_000);
        let near = index / self.events_per_user.max(1);
        let j = rng.u64(near.saturating_sub(EVENT_USER_BEFORE)..=near + EVENT_USER_AFTER);
        let stranger = rng.u128(..);
        let partitions = self.partitions.max(1) as u64;
        let user_id = self
            .user_id_at((j % partitions) as i32, (j / partitions) as i64)
            .unwrap_or_else(|| uuid_from(stranger));
        let created_at = crate::time::rfc3339(time);
        let amount = (kind == "purchase").then_some(cents);
        let malformed_roll = rng.u64(0..1000);
        let mut keyed = true;
        if malformed_roll < self.malformed_per_mille {
            match malformed_roll % 4 {
                0 => {
                    write_event(buf, Some(&event_id), &user_id, kind, amount, &created_at);
                    buf.truncate(buf.len() / 2);
                    keyed = false;
                }
                1 => {
                    write_event(buf, None, &user_id, kind, amount, &created_at);
                    keyed = false;
                }
                2 => write_event(buf, Some(&event_id), &user_id, kind, amount, "not a time"),
                _ => {
                    buf.extend_from_slice(b"{\"event_id\":\"\xff\xfe\"}");
                    keyed = false;
                }
            }
        } else {
            write_event(buf, Some(&event_id), &user_id, kind, amount, &created_at);
        }
        if keyed {
            key.extend_from_slice(event_id.as_bytes());
        }
        Generated {
            timestamp: time as i64,
            keyed,
            tombstone: false,
        }
    }

    /// Writes messages `0..len` of every partition as JSON-lines files `DIR/partition-N.jsonl`,
    /// the file source's layout. Tombstones are left out (a line cannot be a null value), and
    /// keys are not written (the file source has none).
    pub fn write_files(&self, dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let (mut key, mut buf) = (Vec::new(), Vec::new());
        for p in 0..self.partitions {
            let file = std::fs::File::create(dir.join(format!("partition-{p:04}.jsonl")))?;
            let mut out = std::io::BufWriter::new(file);
            let len = self.partition_len(p).unwrap_or(0);
            for o in 0..len {
                if self.keyed_message(p, o, &mut key, &mut buf).tombstone {
                    continue;
                }
                out.write_all(&buf)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        Ok(())
    }
}

/// A version 4 uuid of these random bits, hyphenated.
fn uuid_from(bits: u128) -> String {
    uuid::Builder::from_random_bytes(bits.to_le_bytes())
        .into_uuid()
        .to_string()
}

/// An event as compact JSON (as serde_json writes it); `amount` in cents, written with two
/// decimals. Every text is a uuid, a type name or a time: nothing to escape.
fn write_event(
    buf: &mut Vec<u8>,
    event_id: Option<&str>,
    user_id: &str,
    kind: &str,
    amount_cents: Option<u64>,
    created_at: &str,
) {
    buf.push(b'{');
    if let Some(id) = event_id {
        let _ = write!(buf, "\"event_id\":\"{id}\",");
    }
    let _ = write!(buf, "\"user_id\":\"{user_id}\",\"type\":\"{kind}\",");
    if let Some(cents) = amount_cents {
        let _ = write!(buf, "\"amount\":{}.{:02},", cents / 100, cents % 100);
    }
    let _ = write!(buf, "\"created_at\":\"{created_at}\"}}");
}
const FEMALE: &[&str] = &[
    "Emma", "Olivia", "Åse", "Chloé", "Mia", "Sofía", "Leonie", "Aino", "Zoë", "Ingrid", "Lucía",
    "Nora",
];
const MALE: &[&str] = &[
    "Liam", "Noah", "Jørgen", "Mathéo", "Lukas", "Mateo", "Oliver", "Eino", "Hugo", "Arjun",
    "Emil", "Kai",
];
const LAST: &[&str] = &[
    "Smith",
    "Berg",
    "Müller",
    "García",
    "Dubois",
    "Korhonen",
    "Jensen",
    "Rossi",
    "Novak",
    "Singh",
    "O'Brien",
    "Søndergaard",
];
const NATS: &[(&str, &str, &str)] = &[
    ("US", "United States", "Springfield"),
    ("GB", "United Kingdom", "Leeds"),
    ("NO", "Norway", "Tromsø"),
    ("FR", "France", "Lyon"),
    ("DE", "Germany", "Köln"),
    ("ES", "Spain", "Sevilla"),
    ("FI", "Finland", "Espoo"),
    ("DK", "Denmark", "Aarhus"),
    ("CH", "Switzerland", "Zürich"),
    ("NL", "Netherlands", "Utrecht"),
    ("IN", "India", "Pune"),
    ("BR", "Brazil", "Curitiba"),
];
const STREETS: &[&str] = &[
    "Main Street",
    "Park Avenue",
    "Storgata",
    "Rue de la Paix",
    "Hauptstraße",
    "Calle Mayor",
];

/// A random user, already formatted (what `weir produce` makes of an API user).
fn random_user(rng: &mut fastrand::Rng, created_at: u64) -> FormattedUser {
    let female = rng.bool();
    let first = if female {
        FEMALE[rng.usize(..FEMALE.len())]
    } else {
        MALE[rng.usize(..MALE.len())]
    };
    let last = LAST[rng.usize(..LAST.len())];
    let (nat, country, city) = NATS[rng.usize(..NATS.len())];
    let id = uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes()).into_uuid();
    let username = format!("{}{}", first.to_lowercase(), rng.u32(100..1000));
    let picture_n = rng.u32(0..100);
    FormattedUser {
        id: id.to_string(),
        first_name: first.into(),
        last_name: last.into(),
        gender: if female { "female" } else { "male" }.into(),
        address: format!(
            "{} {}, {}, {}, {}",
            rng.u32(1..9999),
            STREETS[rng.usize(..STREETS.len())],
            city,
            city,
            country
        ),
        post_code: rng.u32(1000..99999).to_string(),
        email: format!(
            "{}.{}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        ),
        username,
        dob: crate::time::rfc3339(rng.u64(0..1_100_000_000_000)),
        registered_date: crate::time::rfc3339(rng.u64(1_000_000_000_000..1_700_000_000_000)),
        phone: format!(
            "({:03}) {:03}-{:04}",
            rng.u32(100..1000),
            rng.u32(100..1000),
            rng.u32(0..10000)
        ),
        picture: format!(
            "https://randomuser.me/api/portraits/med/{}/{picture_n}.jpg",
            if female { "women" } else { "men" }
        ),
        nat: nat.into(),
        country: country.into(),
        created_at: crate::time::rfc3339(created_at),
    }
}

/// Reads the generator's partitions, paced at `rate`.
pub struct GeneratorReader {
    config: GeneratorConfig,
    /// (partition, next offset), for the partitions this worker reads.
    positions: Vec<(i32, i64)>,
    /// (partition, offset it started at).
    starts: Vec<(i32, i64)>,
    started: std::time::Instant,
    released: u64,
    share: f64,
    buf: Vec<u8>,
    key: Vec<u8>,
}

impl GeneratorReader {
    /// A reader of `config`'s topic.
    pub fn new(config: GeneratorConfig) -> Self {
        GeneratorReader {
            config,
            positions: Vec::new(),
            starts: Vec::new(),
            started: std::time::Instant::now(),
            released: 0,
            share: 0.0,
            buf: Vec::new(),
            key: Vec::new(),
        }
    }
}
impl Reader for GeneratorReader {
    fn partitions(&mut self) -> Result<Vec<i32>> {
        Ok((0..self.config.partitions).collect())
    }

    fn assign(&mut self, partitions: &[(i32, StartAt)]) -> Result<Vec<(i32, i64)>> {
        self.positions = partitions
            .iter()
            .map(|(p, start)| {
                let offset = match start {
                    StartAt::Offset(o) => *o,
                    StartAt::Earliest | StartAt::Time(_) => 0,
                    StartAt::Latest => self.config.partition_len(*p).unwrap_or(0),
                };
                (*p, offset)
            })
            .collect();
        self.starts = self.positions.clone();
        self.share = partitions.len() as f64 / self.config.partitions.max(1) as f64;
        self.started = std::time::Instant::now();
        self.released = 0;
        Ok(self.positions.clone())
    }

    fn read(&mut self, max: usize, emit: &mut dyn FnMut(Message<'_>)) -> Result<usize> {
        let mut budget = max as u64;
        if self.config.rate > 0.0 {
            let allowed =
                (self.started.elapsed().as_secs_f64() * self.config.rate * self.share) as u64 + 1;
            budget = budget.min(allowed.saturating_sub(self.released));
        }
        let mut read = 0;
        while (read as u64) < budget {
            // The partition whose next message comes first in the global order.
            let next = self
                .positions
                .iter_mut()
                .filter(|(p, o)| self.config.partition_len(*p).is_none_or(|len| *o < len))
                .min_by_key(|(p, o)| *o as u64 * self.config.partitions as u64 + *p as u64);
            let Some((partition, offset)) = next else {
                break;
            };
            let generated =
                self.config
                    .keyed_message(*partition, *offset, &mut self.key, &mut self.buf);
            emit(Message {
                partition: *partition,
                offset: *offset,
                next_offset: *offset + 1,
                payload: &self.buf,
                timestamp: Some(generated.timestamp),
                key: generated.keyed.then_some(self.key.as_slice()),
                tombstone: generated.tombstone,
            });
            *offset += 1;
            read += 1;
        }
        self.released += read as u64;
        Ok(read)
    }

    fn kind(&self) -> &'static str {
        "generator"
    }

    fn finished(&self, partition: i32) -> bool {
        let len = self.config.partition_len(partition);
        self.positions
            .iter()
            .any(|(p, o)| *p == partition && len.is_some_and(|len| *o >= len))
    }

    fn high_watermark(&self, partition: i32) -> Option<i64> {
        // What the pacer has made available so far, spread evenly over this reader's
        // partitions; the partition's length when unthrottled.
        let len = self.config.partition_len(partition);
        if self.config.rate <= 0.0 {
            return len;
        }
        let start = self.starts.iter().find(|(p, _)| *p == partition)?.1;
        let allowed = self.started.elapsed().as_secs_f64() * self.config.rate * self.share;
        let available = start + (allowed / self.starts.len().max(1) as f64) as i64;
        Some(len.map_or(available, |len| available.min(len)))
    }

    fn idle_wait(&self) -> Option<std::time::Duration> {
        (self.config.rate > 0.0).then(|| {
            std::time::Duration::from_secs_f64(
                (1.0 / (self.config.rate * self.share.max(1e-9))).min(0.05),
            )
        })
    }
}

impl crate::source::Input for GeneratorConfig {
    fn id(&self) -> String {
        // The users topic's id is what it was before there were other topics: stored progress
        // is found under it.
        let users = format!(
            "generator:seed={},partitions={},rate={}",
            self.seed, self.partitions, self.rate
        );
        match self.topic {
            GeneratedTopic::Users => users,
            GeneratedTopic::Events => format!("{users},topic=user_events"),
        }
    }
    fn describe(&self) -> String {
        let (what, topic) = match self.topic {
            GeneratedTopic::Users => ("users", ""),
            GeneratedTopic::Events => ("events", " of user_events"),
        };
        format!(
            "built-in generator{topic} (seed {}, {} partitions, {}, {})",
            self.seed,
            self.partitions,
            if self.rate > 0.0 {
                format!("{} {what}/s", self.rate)
            } else {
                "unthrottled".into()
            },
            self.count
                .map_or("unbounded".to_string(), |n| format!("{n} {what}"))
        )
    }
    fn epoch(&self) -> i64 {
        self.epoch_ms as i64
    }
    fn restore_epoch(&mut self, epoch: i64) {
        self.epoch_ms = epoch as u64;
    }
    fn reader(&self) -> Result<Box<dyn crate::source::Reader>> {
        Ok(Box::new(GeneratorReader::new(self.clone())))
    }
    /// The generator of the dataflow's other topic, with the same seed, partitions, count,
    /// rate and origin. The users topic of a dataflow that joins it gets 5 tombstones per
    /// 1,000 messages, so deletes have something to show.
    fn for_topic(&self, topic: &str) -> Result<Box<dyn crate::source::Input>> {
        let mut other = GeneratorConfig::for_topic(self, topic).ok_or_else(|| {
            crate::error::Error::Config(format!(
                "the built-in generator makes topics users_created and user_events, not {topic:?}; read {topic:?} from Kafka (--brokers)"
            ))
        })?;
        if other.topic == GeneratedTopic::Users && other.tombstones_per_mille == 0 {
            other.tombstones_per_mille = JOINED_TOMBSTONES_PER_MILLE;
        }
        Ok(Box::new(other))
    }
}

/// Tombstones per 1,000 users when a dataflow joins the users topic.
pub const JOINED_TOMBSTONES_PER_MILLE: u64 = 5;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Input;
    use std::collections::HashMap;

    fn config() -> GeneratorConfig {
        GeneratorConfig {
            seed: 7,
            partitions: 3,
            count: Some(10),
            rate: 0.0,
            epoch_ms: 1_700_000_000_000,
            duplicates_per_mille: 100,
            late_per_mille: 10,
            malformed_per_mille: 50,
            topic: GeneratedTopic::Users,
            tombstones_per_mille: 0,
            events_per_user: 1,
        }
    }

    /// The example's inputs: users with tombstones, and their events.
    fn joined() -> GeneratorConfig {
        GeneratorConfig {
            seed: 11,
            partitions: 3,
            count: Some(9_000),
            rate: 200.0,
            epoch_ms: 1_795_255_200_000,
            duplicates_per_mille: 40,
            late_per_mille: 20,
            malformed_per_mille: 20,
            topic: GeneratedTopic::Users,
            tombstones_per_mille: 30,
            events_per_user: 1,
        }
    }

    /// (partition, offset, key, payload, what was generated).
    type Made = (i32, i64, Vec<u8>, Vec<u8>, Generated);

    /// Every message of a bounded topic.
    fn all(c: &GeneratorConfig) -> Vec<Made> {
        let mut out = Vec::new();
        for p in 0..c.partitions {
            for o in 0..c.partition_len(p).unwrap() {
                let (mut key, mut payload) = (Vec::new(), Vec::new());
                let g = c.keyed_message(p, o, &mut key, &mut payload);
                out.push((p, o, key, payload, g));
            }
        }
        out
    }

    #[test]
    fn messages_are_a_pure_function_of_seed_partition_offset() {
        let c = config();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for p in 0..3 {
            for o in 0..50 {
                let ta = c.message(p, o, &mut a);
                let tb = c.message(p, o, &mut b);
                assert_eq!((ta, &a), (tb, &b));
            }
        }
        let other = GeneratorConfig {
            seed: 8,
            ..c.clone()
        };
        other.message(0, 0, &mut b);
        c.message(0, 0, &mut a);
        assert_ne!(a, b);
        // Both topics, keys and tombstones included.
        for topic in ["users_created", "user_events"] {
            let c = joined().for_topic(topic).unwrap();
            let first = all(&c);
            assert_eq!(first, all(&c), "{topic}");
            let other = GeneratorConfig { seed: 12, ..c };
            assert_ne!(first[..50], all(&other)[..50], "{topic}");
        }
    }

    #[test]
    fn users_without_tombstones_are_what_earlier_versions_made() {
        // FNV-1a of (timestamp, payload) of the first 200 offsets of each partition, as the
        // generator made them before keys, tombstones and events existed (checked against a
        // copy of that code when they were added).
        let c = GeneratorConfig {
            count: None,
            ..config()
        };
        let mut buf = Vec::new();
        let mut bytes = Vec::new();
        for p in 0..3 {
            for o in 0..200 {
                let t = c.message(p, o, &mut buf);
                bytes.extend_from_slice(&t.to_le_bytes());
                bytes.extend_from_slice(&buf);
            }
        }
        assert_eq!(crate::data::hash::fnv1a(&bytes), 0x2480_b017_bb6a_a3b0);
    }

    #[test]
    fn the_users_id_is_unchanged_and_events_have_their_own() {
        let c = config();
        assert_eq!(c.id(), "generator:seed=7,partitions=3,rate=0");
        let users = c.for_topic("users_created").unwrap();
        assert_eq!(users, c);
        assert_eq!(users.id(), c.id());
        let events = c.for_topic("user_events").unwrap();
        assert_eq!(events.topic, GeneratedTopic::Events);
        assert_eq!(
            (
                events.seed,
                events.partitions,
                events.count,
                events.epoch_ms
            ),
            (c.seed, c.partitions, c.count, c.epoch_ms)
        );
        assert_eq!(
            events.id(),
            "generator:seed=7,partitions=3,rate=0,topic=user_events"
        );
        assert!(c.for_topic("orders").is_none());
        // Tombstones do not change the id either (it names the position space, not the mix).
        let with = GeneratorConfig {
            tombstones_per_mille: 30,
            events_per_user: 1,
            ..c.clone()
        };
        assert_eq!(with.id(), c.id());
    }

    #[test]
    fn users_are_keyed_by_id_and_user_id_at_tells_the_id() {
        let c = joined();
        for (p, o, key, payload, g) in all(&c) {
            match c.user_id_at(p, o) {
                Some(id) => {
                    let user: FormattedUser = serde_json::from_slice(&payload).unwrap();
                    assert_eq!(user.id, id);
                    assert!(g.keyed && !g.tombstone);
                    assert_eq!(key, id.as_bytes());
                    assert_eq!(user.created_at, crate::time::rfc3339(g.timestamp as u64));
                }
                None => assert!(
                    g.tombstone
                        || serde_json::from_slice::<FormattedUser>(&payload).is_err()
                        || payload.windows(12).any(|w| w == b"\"not a time\""),
                    "({p}, {o}) is a valid user with no id"
                ),
            }
        }
        assert_eq!(
            c.user_id_at(0, c.partition_len(0).unwrap()),
            None,
            "past the end"
        );
        assert_eq!(c.user_id_at(3, 0), None, "no such partition");
    }

    #[test]
    fn tombstones_delete_earlier_users_and_carry_timestamps() {
        let c = joined();
        let mut tombstones = 0;
        for (p, o, key, payload, g) in all(&c) {
            if !g.tombstone {
                continue;
            }
            tombstones += 1;
            assert!(payload.is_empty() && g.keyed);
            // A duplicate of a tombstone replays it; the user is 5 offsets before the original.
            let user = (1..=o)
                .filter_map(|back| c.user_id_at(p, o - back))
                .any(|id| id.as_bytes() == key);
            assert!(
                user,
                "({p}, {o}): a tombstone of an earlier user of its partition"
            );
            assert_eq!(c.user_id_at(p, o), None);
            let nominal = c.nominal_time(c.index(p, o)) as i64;
            assert!(g.timestamp <= nominal && g.timestamp > nominal - 100_000);
        }
        let n = c.count.unwrap();
        assert!(
            tombstones > n * 15 / 1000 && tombstones < n * 45 / 1000,
            "{tombstones} tombstones"
        );
        // Exactly 5 offsets back, for the ones that are not duplicates.
        let direct = (0..c.partitions)
            .flat_map(|p| (5..c.partition_len(p).unwrap()).map(move |o| (p, o)))
            .filter(|(p, o)| matches!(c.draw_user(*p, *o), UserDraw::Tombstone { .. }))
            .inspect(|(p, o)| {
                let (mut key, mut payload) = (Vec::new(), Vec::new());
                c.keyed_message(*p, *o, &mut key, &mut payload);
                assert_eq!(c.user_id_at(*p, o - 5).unwrap().as_bytes(), key);
            })
            .count();
        assert!(direct > 0);
        // Through the reader: a null value with a key and a timestamp.
        let mut reader = GeneratorReader::new(GeneratorConfig {
            rate: 0.0,
            ..c.clone()
        });
        reader.assign(&[(0, StartAt::Earliest)]).unwrap();
        let mut seen = 0;
        reader
            .read(usize::MAX, &mut |m| {
                if m.tombstone {
                    seen += 1;
                    assert!(m.payload.is_empty() && m.timestamp.is_some());
                    assert_eq!(m.key.unwrap().len(), 36);
                } else if let Ok(user) = serde_json::from_slice::<FormattedUser>(m.payload) {
                    assert_eq!(m.key, Some(user.id.as_bytes()));
                }
            })
            .unwrap();
        assert!(seen > 0);
        // None without the share.
        let none = GeneratorConfig {
            tombstones_per_mille: 0,
            events_per_user: 1,
            ..c
        };
        assert!(all(&none).iter().all(|m| !m.4.tombstone));
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Event {
        event_id: uuid::Uuid,
        user_id: uuid::Uuid,
        #[serde(rename = "type")]
        kind: String,
        amount: Option<f64>,
        created_at: String,
    }

    #[test]
    fn events_refer_to_users_mostly_after_their_rows() {
        let users = joined();
        let events = users.for_topic("user_events").unwrap();
        // Each user id's first event time.
        let mut born: HashMap<String, i64> = HashMap::new();
        for (p, o, _, _, g) in all(&users) {
            if let Some(id) = users.user_id_at(p, o) {
                let t = born.entry(id).or_insert(g.timestamp);
                *t = (*t).min(g.timestamp);
            }
        }
        let (mut total, mut known, mut before, mut malformed) = (0, 0, 0, 0);
        let mut kinds: HashMap<String, usize> = HashMap::new();
        for (p, o, key, payload, g) in all(&events) {
            assert!(!g.tombstone);
            let Ok(event) = serde_json::from_slice::<Event>(&payload) else {
                malformed += 1;
                assert!(!g.keyed || payload.starts_with(b"{\"event_id\""));
                continue;
            };
            total += 1;
            assert_eq!(key, event.event_id.to_string().as_bytes(), "({p}, {o})");
            assert_eq!(event.amount.is_some(), event.kind == "purchase");
            if let Some(amount) = event.amount {
                assert!((1.0..500.0).contains(&amount));
                let text = String::from_utf8_lossy(&payload).into_owned();
                assert!(text.contains(&format!("\"amount\":{amount:.2}")), "{text}");
            }
            if event.created_at != "not a time" {
                assert_eq!(event.created_at, crate::time::rfc3339(g.timestamp as u64));
            }
            *kinds.entry(event.kind).or_default() += 1;
            if let Some(t) = born.get(&event.user_id.to_string()) {
                known += 1;
                if g.timestamp < *t {
                    before += 1;
                }
            }
        }
        assert!(malformed > 0);
        assert!(
            known * 10 > total * 9,
            "{known} of {total} events name a user"
        );
        assert!(known < total, "some events name a user that does not exist");
        assert!(before > 0, "some events come before their user's row");
        assert!(
            before * 4 < known,
            "{before} of {known} before their user's row"
        );
        assert_eq!(kinds.len(), 3, "{kinds:?}");
    }

    #[test]
    fn write_files_writes_both_topics_without_tombstones() {
        let c = joined();
        for topic in ["users_created", "user_events"] {
            let c = GeneratorConfig {
                count: Some(3_000),
                ..c.for_topic(topic).unwrap()
            };
            let dir =
                std::env::temp_dir().join(format!("weir-generator-{topic}-{}", std::process::id()));
            c.write_files(&dir).unwrap();
            let mut lines = 0;
            for p in 0..c.partitions {
                let text = std::fs::read(dir.join(format!("partition-{p:04}.jsonl"))).unwrap();
                lines += text
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count();
            }
            let expected = all(&c).iter().filter(|m| !m.4.tombstone).count();
            assert_eq!(lines, expected, "{topic}");
            if topic == "users_created" {
                assert!(expected < 3_000, "tombstones are left out");
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn count_splits_over_partitions() {
        let c = config();
        assert_eq!(
            (0..3)
                .map(|p| c.partition_len(p).unwrap())
                .collect::<Vec<_>>(),
            [4, 3, 3]
        );
        let mut r = GeneratorReader::new(c);
        r.assign(&[(0, StartAt::Earliest), (2, StartAt::Offset(1))])
            .unwrap();
        let mut seen = Vec::new();
        r.read(100, &mut |m| seen.push((m.partition, m.offset)))
            .unwrap();
        assert_eq!(seen, [(0, 0), (0, 1), (2, 1), (0, 2), (2, 2), (0, 3)]);
        assert!(r.finished(0) && r.finished(2));
    }

    #[test]
    fn several_events_per_user_span_the_users_time_and_refer_to_them() {
        let users = GeneratorConfig {
            count: Some(2_000),
            tombstones_per_mille: 0,
            events_per_user: 10,
            ..joined()
        };
        let events = users.for_topic("user_events").unwrap();
        assert_eq!(events.count, Some(20_000));
        assert_eq!(events.for_topic("users_created").unwrap(), users);
        let ids: std::collections::HashSet<String> = (0..users.partitions)
            .flat_map(|p| (0..users.partition_len(p).unwrap()).map(move |o| (p, o)))
            .filter_map(|(p, o)| users.user_id_at(p, o))
            .collect();
        let all = all(&events);
        let known = all
            .iter()
            .filter(|(_, _, _, payload, _)| {
                serde_json::from_slice::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| v["user_id"].as_str().map(|u| ids.contains(u)))
                    .unwrap_or(false)
            })
            .count();
        assert!(
            known * 10 > all.len() * 9,
            "{known} of {} events name a user",
            all.len()
        );
        // The same span of event time as the users.
        let last = |c: &GeneratorConfig| all_times(c).into_iter().max().unwrap();
        let (u, e) = (last(&users), last(&events));
        assert!(u.abs_diff(e) < 5_000, "users end at {u}, events at {e}");
    }

    fn all_times(c: &GeneratorConfig) -> Vec<i64> {
        all(c).into_iter().map(|m| m.4.timestamp).collect()
    }
}

//! The built-in generator of randomuser-like users: a topic that needs no broker.
//!
//! The "topic" has `partitions` partitions; the message at (partition, offset) is a pure
//! function of (seed, partition, offset), so replaying from any offset yields the same bytes,
//! exactly like re-reading a Kafka partition. Global index `i = offset * partitions +
//! partition` orders messages in time: message `i` has event time `epoch + i * 1000 / rate`
//! minus up to 2 s of disorder. A small, seeded share of messages are duplicates of an earlier
//! message of the same partition, late, or malformed, so the dead-letter and late tables and
//! the distinct counts have something to show.

use std::io::Write;

use super::{Message, Reader, StartAt};
use crate::data::hash::mix64;
use crate::data::user::FormattedUser;
use crate::error::Result;

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
    /// Per-mille of messages that repeat an earlier message of their partition.
    pub duplicates_per_mille: u64,
    /// Per-mille of messages whose event time is a minute old (late).
    pub late_per_mille: u64,
    /// Per-mille of messages that are malformed.
    pub malformed_per_mille: u64,
}

impl GeneratorConfig {
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
        } else {
            self.epoch_ms + index
        }
    }

    /// The message at (partition, offset): its bytes and timestamp.
    pub fn message(&self, partition: i32, offset: i64, buf: &mut Vec<u8>) -> i64 {
        buf.clear();
        let index = self.index(partition, offset);
        let mut rng =
            fastrand::Rng::with_seed(mix64(self.seed ^ mix64(index.wrapping_add(0x5eed))));
        let roll = rng.u64(0..1000);
        if roll < self.duplicates_per_mille && offset >= 3 {
            // The same message again, as a producer retry or a replayed batch would deliver it.
            return self.message(partition, offset - 3, buf);
        }
        let mut time = self.nominal_time(index).saturating_sub(rng.u64(0..2000));
        let late_roll = rng.u64(0..1000);
        if late_roll < self.late_per_mille {
            time = time.saturating_sub(60_000);
        }
        let user = random_user(&mut rng, time);
        let malformed_roll = rng.u64(0..1000);
        if malformed_roll < self.malformed_per_mille {
            match malformed_roll % 4 {
                0 => {
                    let _ = serde_json::to_writer(&mut *buf, &user);
                    buf.truncate(buf.len() / 2);
                }
                1 => {
                    let mut json = serde_json::to_value(&user).unwrap_or_default();
                    if let Some(o) = json.as_object_mut() {
                        o.remove("id");
                    }
                    let _ = serde_json::to_writer(&mut *buf, &json);
                }
                2 => {
                    let mut json = serde_json::to_value(&user).unwrap_or_default();
                    json["created_at"] = serde_json::Value::from("not a time");
                    let _ = serde_json::to_writer(&mut *buf, &json);
                }
                _ => {
                    buf.extend_from_slice(b"{\"id\":\"\xff\xfe\"}");
                }
            }
        } else {
            let _ = serde_json::to_writer(&mut *buf, &user);
        }
        time as i64
    }

    /// Writes messages `0..len` of every partition as JSON-lines files `DIR/partition-N.jsonl`,
    /// the file source's layout.
    pub fn write_files(&self, dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut buf = Vec::new();
        for p in 0..self.partitions {
            let file = std::fs::File::create(dir.join(format!("partition-{p:04}.jsonl")))?;
            let mut out = std::io::BufWriter::new(file);
            let len = self.partition_len(p).unwrap_or(0);
            for o in 0..len {
                self.message(p, o, &mut buf);
                out.write_all(&buf)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        Ok(())
    }
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
            let timestamp = self.config.message(*partition, *offset, &mut self.buf);
            emit(Message {
                partition: *partition,
                offset: *offset,
                next_offset: *offset + 1,
                payload: &self.buf,
                timestamp: Some(timestamp),
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
        format!(
            "generator:seed={},partitions={},rate={}",
            self.seed, self.partitions, self.rate
        )
    }
    fn describe(&self) -> String {
        format!(
            "built-in generator (seed {}, {} partitions, {}, {})",
            self.seed,
            self.partitions,
            if self.rate > 0.0 {
                format!("{} users/s", self.rate)
            } else {
                "unthrottled".into()
            },
            self.count
                .map_or("unbounded".to_string(), |n| format!("{n} users"))
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
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
}

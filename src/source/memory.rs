//! An in-memory topic, for tests: partitions of messages that tests append to and grow while
//! a dataflow reads them, as a producer and `kafka-topics --alter --partitions` would.
//!
//! Offsets are positions (0, 1, 2, ...). Every worker's reader shares the topic; each reads
//! the partitions assigned to it. A topic is *bounded* once [`MemoryTopic::end`] is called:
//! a partition is then finished when it is read to its end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{Input, Message, Reader, StartAt};
use crate::error::{Error, Result};

/// One message of a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryMessage {
    /// Bytes (empty for a tombstone).
    pub payload: Vec<u8>,
    /// Message timestamp, epoch ms.
    pub timestamp: Option<i64>,
    /// The message key, if any.
    pub key: Option<Vec<u8>>,
    /// A tombstone: a null value (`payload` is empty).
    pub tombstone: bool,
}

#[derive(Debug, Default)]
struct Topic {
    partitions: Vec<Vec<MemoryMessage>>,
    /// Per partition, the first offset still held (retention); 0 when absent.
    log_start: BTreeMap<i32, i64>,
    ended: bool,
    /// Its name, when it is another topic's sibling (it is then `memory:NAME`).
    name: Option<String>,
    /// The other topics of a dataflow with `[[inputs]]`, by name ([`Input::for_topic`]).
    siblings: BTreeMap<String, MemoryTopic>,
}

/// A topic in memory, shared by the test and every worker's reader.
#[derive(Clone, Debug, Default)]
pub struct MemoryTopic(Arc<Mutex<Topic>>);

impl MemoryTopic {
    /// A topic of `partitions` empty partitions.
    pub fn new(partitions: usize) -> Self {
        let topic = MemoryTopic::default();
        topic.lock().partitions = vec![Vec::new(); partitions];
        topic
    }

    /// Makes `other` this topic's sibling named `topic`: a dataflow reading this topic reads
    /// `other` for its input of that topic.
    pub fn add_sibling(&self, topic: &str, other: MemoryTopic) {
        other.lock().name = Some(topic.to_string());
        self.lock().siblings.insert(topic.to_string(), other);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Topic> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a message without a key to `partition` (which must exist).
    pub fn push(&self, partition: i32, payload: Vec<u8>, timestamp: Option<i64>) {
        self.push_keyed(partition, None, Some(payload), timestamp);
    }

    /// Appends a message with this key to `partition` (which must exist); a `payload` of
    /// `None` is a null value: a tombstone.
    pub fn push_keyed(
        &self,
        partition: i32,
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        timestamp: Option<i64>,
    ) {
        let mut topic = self.lock();
        if let Some(messages) = topic.partitions.get_mut(partition as usize) {
            messages.push(MemoryMessage {
                tombstone: payload.is_none(),
                payload: payload.unwrap_or_default(),
                timestamp,
                key,
            });
        }
    }

    /// Grows the topic to `partitions` partitions.
    pub fn grow(&self, partitions: usize) {
        let mut topic = self.lock();
        if topic.partitions.len() < partitions {
            topic.partitions.resize(partitions, Vec::new());
        }
    }

    /// Drops the messages of `partition` before `offset`, as retention does: readers start
    /// there at the earliest.
    pub fn trim(&self, partition: i32, offset: i64) {
        self.lock().log_start.insert(partition, offset);
    }

    /// No more messages or partitions will be added: readers finish at the ends.
    pub fn end(&self) {
        self.lock().ended = true;
    }

    /// Every message, by partition.
    pub fn messages(&self) -> Vec<Vec<MemoryMessage>> {
        self.lock().partitions.clone()
    }
}

impl Input for MemoryTopic {
    fn id(&self) -> String {
        match &self.lock().name {
            None => "memory".into(),
            Some(name) => format!("memory:{name}"),
        }
    }
    fn for_topic(&self, topic: &str) -> Result<Box<dyn Input>> {
        match self.lock().siblings.get(topic) {
            Some(other) => Ok(Box::new(other.clone())),
            None => Err(Error::Config(format!(
                "memory topic: no sibling topic {topic:?}"
            ))),
        }
    }
    fn describe(&self) -> String {
        format!("memory topic ({} partitions)", self.lock().partitions.len())
    }
    fn grows(&self) -> bool {
        true
    }
    fn earliest_offsets(&self) -> Result<BTreeMap<i32, i64>> {
        Ok(self.lock().log_start.clone())
    }
    fn reader(&self) -> Result<Box<dyn Reader>> {
        Ok(Box::new(MemoryReader {
            topic: self.clone(),
            positions: BTreeMap::new(),
            buf: Vec::new(),
            key: Vec::new(),
        }))
    }
}

/// One worker's reader of a [`MemoryTopic`].
pub struct MemoryReader {
    topic: MemoryTopic,
    /// Assigned partitions and their next offsets.
    positions: BTreeMap<i32, i64>,
    buf: Vec<u8>,
    key: Vec<u8>,
}

impl Reader for MemoryReader {
    fn partitions(&mut self) -> Result<Vec<i32>> {
        Ok((0..self.topic.lock().partitions.len() as i32).collect())
    }

    fn assign(&mut self, partitions: &[(i32, StartAt)]) -> Result<Vec<(i32, i64)>> {
        let topic = self.topic.lock();
        let mut assigned = Vec::new();
        for (p, start) in partitions {
            let len = topic
                .partitions
                .get(*p as usize)
                .ok_or_else(|| Error::Input(format!("memory topic: no partition {p}")))?
                .len() as i64;
            let low = topic.log_start.get(p).copied().unwrap_or(0).min(len);
            let offset = match start {
                StartAt::Offset(o) => (*o).clamp(low, len),
                StartAt::Earliest | StartAt::Time(_) => low,
                StartAt::Latest => len,
            };
            self.positions.insert(*p, offset);
            assigned.push((*p, offset));
        }
        Ok(assigned)
    }

    fn read(&mut self, max: usize, emit: &mut dyn FnMut(Message<'_>)) -> Result<usize> {
        let mut read = 0;
        for (p, offset) in self.positions.iter_mut() {
            while read < max {
                let message = {
                    let topic = self.topic.lock();
                    topic.partitions[*p as usize].get(*offset as usize).cloned()
                };
                let Some(message) = message else { break };
                self.buf.clear();
                self.buf.extend_from_slice(&message.payload);
                self.key.clear();
                if let Some(key) = &message.key {
                    self.key.extend_from_slice(key);
                }
                emit(Message {
                    partition: *p,
                    offset: *offset,
                    next_offset: *offset + 1,
                    payload: &self.buf,
                    timestamp: message.timestamp,
                    key: message.key.is_some().then_some(self.key.as_slice()),
                    tombstone: message.tombstone,
                });
                *offset += 1;
                read += 1;
            }
        }
        Ok(read)
    }

    fn finished(&self, partition: i32) -> bool {
        let topic = self.topic.lock();
        topic.ended
            && self.positions.get(&partition).is_some_and(|o| {
                *o as usize >= topic.partitions.get(partition as usize).map_or(0, Vec::len)
            })
    }

    fn idle_wait(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(1))
    }

    fn kind(&self) -> &'static str {
        "memory topic"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_tombstones_are_read_back() {
        let topic = MemoryTopic::new(1);
        topic.push(0, b"{}".to_vec(), Some(1));
        topic.push_keyed(0, Some(b"k".to_vec()), Some(b"{\"a\":1}".to_vec()), Some(2));
        topic.push_keyed(0, Some(b"k".to_vec()), None, Some(3));
        topic.end();
        let mut reader = topic.reader().unwrap();
        reader.assign(&[(0, StartAt::Earliest)]).unwrap();
        let mut seen = Vec::new();
        reader
            .read(10, &mut |m| {
                seen.push((
                    m.offset,
                    m.key.map(<[u8]>::to_vec),
                    m.payload.to_vec(),
                    m.timestamp,
                    m.tombstone,
                ))
            })
            .unwrap();
        assert_eq!(
            seen,
            [
                (0, None, b"{}".to_vec(), Some(1), false),
                (
                    1,
                    Some(b"k".to_vec()),
                    b"{\"a\":1}".to_vec(),
                    Some(2),
                    false
                ),
                (2, Some(b"k".to_vec()), Vec::new(), Some(3), true),
            ]
        );
        assert!(reader.finished(0));
        assert!(topic.messages()[0][2].tombstone);
    }
}

//! Which worker reads which partition: a pure function of (topic, partition, workers).
//!
//! Every worker of every process evaluates the same function, so the partitions are split
//! without coordination, each exactly once, and a restart with another `-w`/`-n` simply
//! recomputes the split (progress is stored per partition, not per worker).

use crate::data::hash::fnv1a;

/// The worker (0-based, across all processes) that owns `partition` of `topic`.
///
/// Partitions of one topic go round-robin from a topic-dependent first worker, so several
/// dataflows do not all load worker 0.
pub fn owner(topic: &str, partition: i32, workers: usize) -> usize {
    let workers = workers.max(1) as u64;
    ((fnv1a(topic.as_bytes()) % workers + partition as u64 % workers) % workers) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_exactly_one_owner_and_load_is_even() {
        for workers in 1..9 {
            let mut load = vec![0; workers];
            for p in 0..(workers as i32 * 3) {
                load[owner("users_created", p, workers)] += 1;
            }
            assert!(load.iter().all(|l| *l == 3), "{workers}: {load:?}");
        }
        assert_eq!(owner("t", 5, 1), 0);
    }
}

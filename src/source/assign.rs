//! Which worker reads which partition: a pure function of (topic, partition, workers).
//!
//! Every worker of every process evaluates the same function, so the partitions are split
//! without coordination, each exactly once, and a restart with another `-w`/`-n` simply
//! recomputes the split (progress is stored per partition, not per worker).

/// The worker (0-based, across all processes) that owns `partition` of `topic`.
///
/// Partitions of one topic go round-robin from a topic-dependent first worker, so several
/// dataflows do not all load worker 0.
pub fn owner(topic: &str, partition: i32, workers: usize) -> usize {
    let workers = workers.max(1) as u64;
    ((fnv1a(topic.as_bytes()) % workers + partition as u64 % workers) % workers) as usize
}

/// 64-bit FNV-1a: a stable hash (unlike std's, it is the same in every process and release).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A stable 64-bit mixer (splitmix64's finaliser).
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
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

    #[test]
    fn hashes_are_stable() {
        assert_eq!(fnv1a(b"users_created"), fnv1a(b"users_created"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}

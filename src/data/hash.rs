//! Stable hashes: the same in every process, worker and release (unlike std's), so routing
//! and partition assignment agree across a cluster and across restarts. Pure.

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
    fn hashes_are_stable() {
        assert_eq!(fnv1a(b"users_created"), fnv1a(b"users_created"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(mix64(0), 0);
    }
}

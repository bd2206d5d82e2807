//! PID 1's word to the loader child on the go pipe: first the go (the
//! manifest was valid; the pool width and the deadline PID 1 decided),
//! then one byte saying whether the kernel now runs the module helper.
//! A pipe closed before the go means stop: the boot loads nothing.

use std::time::Duration;

/// The go message's length: the pool width, then the deadline in ms, each
/// a little-endian u64.
pub const GO_LEN: usize = 16;

/// PID 1's go message.
pub fn encode_go(jobs: usize, deadline: Duration) -> [u8; GO_LEN] {
    let mut msg = [0u8; GO_LEN];
    msg[..8].copy_from_slice(&u64::try_from(jobs).unwrap_or(u64::MAX).to_le_bytes());
    let ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
    msg[8..].copy_from_slice(&ms.to_le_bytes());
    msg
}

/// The pool width and the deadline of a go message.
pub fn decode_go(msg: &[u8; GO_LEN]) -> (usize, Duration) {
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&msg[r]);
        u64::from_le_bytes(b)
    };
    let jobs = usize::try_from(word(0..8)).unwrap_or(usize::MAX);
    (jobs, Duration::from_millis(word(8..16)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_go_message_carries_the_width_and_the_deadline() {
        let d = Duration::from_millis(12_345);
        assert_eq!(decode_go(&encode_go(7, d)), (7, d));
        assert_eq!(
            decode_go(&encode_go(1, Duration::from_secs(3600))),
            (1, Duration::from_secs(3600))
        );
    }
}

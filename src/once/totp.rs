//! Rotating sequences: the knock ports for time step T, derived from a shared secret.
//!
//! T = floor(unix seconds / step). The ports come from the byte stream
//! HMAC-SHA256(secret, T as 8 bytes big-endian ‖ c as 1 byte) for c = 0, 1, 2, …, read as
//! 4-byte big-endian words: each word w gives port `first + w mod (last − first + 1)`, and a
//! port already chosen is skipped, until `length` distinct ports are chosen. All knocks are TCP.
//! `docs/replay.md` has the test vectors.

use std::time::Duration;

use crate::config::model::{KnockPort, Proto, Totp};
use crate::spa::Key;

/// The time step a Unix time falls in.
pub fn step_of(totp: &Totp, unix_now: Duration) -> u64 {
    unix_now.as_secs() / totp.step.as_secs().max(1)
}

/// The steps accepted now: T − skew ..= T + skew.
pub fn window(totp: &Totp, unix_now: Duration) -> std::ops::RangeInclusive<u64> {
    let now = step_of(totp, unix_now);
    let skew = u64::from(totp.skew);
    now.saturating_sub(skew)..=now.saturating_add(skew)
}

/// The sequence of step `step`.
pub fn sequence(secret: &Key, step: u64, length: usize, ports: (u16, u16)) -> Vec<KnockPort> {
    let (first, last) = ports;
    let span = u32::from(last - first) + 1;
    let length = length.min(usize::try_from(span).unwrap_or(usize::MAX));
    let mut chosen: Vec<KnockPort> = Vec::with_capacity(length);
    let mut message = [0u8; 9];
    message[..8].copy_from_slice(&step.to_be_bytes());
    for counter in 0..=u8::MAX {
        message[8] = counter;
        for word in secret.sign(&message).chunks_exact(4) {
            let word = u32::from_be_bytes(word.try_into().expect("4 bytes"));
            let offset = u16::try_from(word % span).expect("below a u16 span");
            let knock = KnockPort {
                port: first + offset,
                proto: Proto::Tcp,
            };
            if !chosen.contains(&knock) {
                chosen.push(knock);
            }
            if chosen.len() == length {
                return chosen;
            }
        }
    }
    chosen
}

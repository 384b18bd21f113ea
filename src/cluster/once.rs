//! Fleet-wide once-only uses: a TOTP step or one-time line that granted at one gateway is
//! refused at every other.
//!
//! A worker records the use in its local store first ([`crate::once::OnceState`], durably),
//! so a replay at this gateway is refused without the network. Then, while the cluster is up,
//! it asks the cluster task to *claim* the use: etcd creates `{prefix}once/{door}/{use}` only
//! if it is absent, in one transaction (`create_revision == 0` then put), with a lease as long
//! as the use could be replayed (a TOTP step's window; none for a one-time line). Another
//! gateway that took it first makes it [`Claim::Used`]: no grant.
//!
//! This is the one place where the packet path waits on etcd, for once-only doors only and at
//! most [`CLAIM_BUDGET`]. While the cluster is down it does not ask at all: the use is
//! [`Claim::Unverified`] and grants on the local record alone (available, but replayable at
//! another gateway during the partition).
//!
//! SPA nonces are claimed the same way, with a lease until the message is too old anyway.

use std::time::Duration;

use crate::config::{OnceUse as Use, SequenceOrigin};

/// The longest a worker waits for etcd's answer to a claim.
pub const CLAIM_BUDGET: Duration = Duration::from_millis(100);

/// A claim for the cluster task: create `key` if absent, with a lease of `lease`.
#[derive(Debug)]
pub struct ClaimRequest {
    pub key: String,
    pub lease: Option<Duration>,
    pub reply: std::sync::mpsc::SyncSender<Claim>,
}

/// The key and lease of a TOTP step or one-time line of `door`. A line is named by its number
/// and its knocks, so gateways whose files differ never mistake one line for another.
pub fn claim_key(
    prefix: &str,
    door: &str,
    origin: &SequenceOrigin,
    use_: Use,
) -> Option<(String, Option<Duration>)> {
    match (use_, origin) {
        (Use::TotpStep(step), SequenceOrigin::Totp(t)) => {
            // Replayable while the step is within T ± skew of someone's clock.
            let window = t.step.saturating_mul(2 * u32::from(t.skew) + 2);
            Some((format!("{prefix}once/{door}/step-{step}"), Some(window)))
        }
        (Use::OneTimeLine(number), SequenceOrigin::OneTime(one)) => {
            let line = one.lines.iter().find(|line| line.number == number)?;
            let knocks: Vec<String> = line.sequence.iter().map(ToString::to_string).collect();
            let key = format!("{prefix}once/{door}/line-{number}-{}", knocks.join(","));
            Some((key, None))
        }
        _ => None,
    }
}

/// What the fleet says about a use already recorded here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No other gateway had used it: it is now claimed, and the grant may go ahead.
    First,
    /// Another gateway used it first: refuse.
    Used,
    /// The fleet could not be asked (no cluster, etcd away, no answer within the budget): the
    /// local record alone decides.
    Unverified,
}

/// The key and lease of an SPA nonce of `door`, replayable until `expires` (Unix seconds).
pub fn nonce_key(
    prefix: &str,
    door: &str,
    nonce: &[u8],
    expires: u64,
    unix_now: Duration,
) -> (String, Option<Duration>) {
    let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let left = Duration::from_secs(expires).saturating_sub(unix_now);
    (format!("{prefix}once/{door}/nonce-{hex}"), Some(left))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KnockPort, OneTime, OneTimeLine, Proto};

    #[test]
    fn a_one_time_line_is_named_by_number_and_knocks_and_kept_without_a_lease() {
        let knock = |port| KnockPort {
            port,
            proto: Proto::Tcp,
        };
        let origin = SequenceOrigin::OneTime(std::sync::Arc::new(OneTime {
            file: "/var/lib/knock-nfq/ssh.seq".into(),
            lines: vec![OneTimeLine {
                number: 3,
                sequence: vec![knock(7501), knock(7502)],
            }],
        }));
        assert_eq!(
            claim_key("/k/", "ssh", &origin, Use::OneTimeLine(3)),
            Some(("/k/once/ssh/line-3-7501:tcp,7502:tcp".to_owned(), None))
        );
        assert_eq!(claim_key("/k/", "ssh", &origin, Use::OneTimeLine(4)), None);
        assert_eq!(claim_key("/k/", "ssh", &origin, Use::TotpStep(4)), None);
    }

    #[test]
    fn a_nonce_is_kept_until_its_message_is_too_old_to_be_accepted() {
        let (key, lease) = nonce_key("/k/", "spa", &[0xab, 0x01], 1035, Duration::from_secs(1000));
        assert_eq!(key, "/k/once/spa/nonce-ab01");
        assert_eq!(lease, Some(Duration::from_secs(35)));
    }
}

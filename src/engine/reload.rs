//! Matching doors across a live reload.

use std::collections::HashMap;

use crate::config::model::{Door, KnockPort};

/// For each old door, the id of the same door in the new list, if it is still there unchanged
/// in what an attempt's progress depends on: name, sequence, tcp flags, timeout, `from` and
/// `interfaces`. A TOTP
/// door is several doors of one name, one per step: each is found by its sequence too.
pub(super) fn door_map(old: &[Door], new: &[Door]) -> Vec<Option<u16>> {
    let mut by_name: HashMap<(&str, &[KnockPort]), usize> = HashMap::with_capacity(new.len());
    for (id, door) in new.iter().enumerate().rev() {
        by_name.insert((door.name.as_str(), &door.sequence), id);
    }
    old.iter()
        .map(|door| {
            let id = *by_name.get(&(door.name.as_str(), door.sequence.as_slice()))?;
            let same = same_progress_rules(door, &new[id]);
            same.then(|| u16::try_from(id).expect("door count checked by DoorPlan"))
        })
        .collect()
}

fn same_progress_rules(a: &Door, b: &Door) -> bool {
    a.sequence == b.sequence
        && a.tcp_flags == b.tcp_flags
        && a.seq_timeout == b.seq_timeout
        && a.from == b.from
        && a.interfaces == b.interfaces
}

//! From the parsed knockd.conf to door drafts: what each door becomes, or why it can't, with a
//! note for every knockd setting whose meaning changes. Each translated door is then checked
//! with the real config parser, so the output never holds a door the daemon would refuse.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::config::{Action, Config, ConfigError, Door, KnockPort, Proto, Target};

use super::command::{self, Grant, GrantOp};
use super::knockd::{DEFAULT_CMD_TIMEOUT_SECS, DEFAULT_SEQ_TIMEOUT_SECS, KnockdConf, KnockdDoor};
use super::render;

/// The lifetime given to grants that had none in knockd (a rule that stayed until a close door
/// or a reboot removed it): knock-nfq grants always expire.
pub const UNTIMED_OPEN_FOR: Duration = Duration::from_secs(60 * 60);
/// The config's upper bound for `open_for`.
const MAX_OPEN_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// The whole translation, ready to render.
#[derive(Debug, Clone)]
pub struct Translation {
    pub conf: KnockdConf,
    pub interfaces: Interfaces,
    pub doors: Vec<DoorPart>,
}

/// What `[daemon] interfaces` becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interfaces {
    /// knockd's `Interface`.
    Named(String),
    /// No `Interface`: knockd listened on eth0 or on `-i`, which the file does not show.
    KnockdDefault,
    /// An `Interface` the config refuses; the message says why.
    Invalid { name: String, reason: String },
}

/// One knockd door and what became of it.
#[derive(Debug, Clone)]
pub struct DoorPart {
    pub knockd: KnockdDoor,
    pub draft: DoorDraft,
    pub outcome: Outcome,
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Translated,
    /// The door is left as a comment; the reason reads after "not translated: ".
    NotTranslated(String),
}

/// A `[[door]]` as far as it could be filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorDraft {
    pub name: String,
    pub sequence: Option<Vec<KnockPort>>,
    /// Instead of `sequence`: knockd's one-time sequence file.
    pub one_time_sequences: Option<String>,
    pub seq_timeout: Duration,
    pub tcp_flags: Option<String>,
    pub targets: Vec<Target>,
    /// `None` on a close door.
    pub open_for: Option<Duration>,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub severity: Severity,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Only a comment in the output.
    Info,
    /// Also printed on stderr: the meaning changed, or something was dropped.
    Warning,
}

impl Note {
    fn info(text: impl Into<String>) -> Note {
        Note {
            severity: Severity::Info,
            text: text.into(),
        }
    }

    fn warning(text: impl Into<String>) -> Note {
        Note {
            severity: Severity::Warning,
            text: text.into(),
        }
    }
}

pub fn translate(conf: KnockdConf) -> Translation {
    let interfaces = interfaces(conf.options.interface.as_deref());
    let mut names = HashSet::new();
    let mut doors: Vec<DoorPart> = conf
        .doors
        .iter()
        .map(|door| door_part(door, &mut names))
        .collect();
    same_knocks_other_target(&mut doors);
    validate(&interfaces, &mut doors);
    Translation {
        conf,
        interfaces,
        doors,
    }
}

fn interfaces(interface: Option<&str>) -> Interfaces {
    let Some(name) = interface else {
        return Interfaces::KnockdDefault;
    };
    let named = Interfaces::Named(name.to_owned());
    let probe = format!(
        "{}[[door]]\nname = \"probe\"\nsequence = [1]\nopen = [\"2/tcp\"]\n",
        render::daemon_toml(&named)
    );
    match Config::from_toml_str(&probe, Path::new("translation")) {
        Ok(_) => named,
        Err(e) => Interfaces::Invalid {
            name: name.to_owned(),
            reason: e.to_string(),
        },
    }
}

fn door_part(knockd: &KnockdDoor, names: &mut HashSet<String>) -> DoorPart {
    let mut notes = Vec::new();
    let name = door_name(&knockd.name, names, &mut notes);
    let mut part = DoorPart {
        draft: DoorDraft {
            name,
            sequence: knockd.sequence.clone(),
            one_time_sequences: None,
            seq_timeout: Duration::from_secs(
                knockd.seq_timeout.unwrap_or(DEFAULT_SEQ_TIMEOUT_SECS),
            ),
            tcp_flags: None,
            targets: Vec::new(),
            open_for: None,
            action: Action::Open,
        },
        knockd: knockd.clone(),
        outcome: Outcome::Translated,
        notes,
    };
    if let Err(reason) = fill(&mut part) {
        part.outcome = Outcome::NotTranslated(reason);
    }
    part
}

/// A name the config accepts and no earlier door has; a note when it had to change.
fn door_name(knockd_name: &str, taken: &mut HashSet<String>, notes: &mut Vec<Note>) -> String {
    let mut base: String = knockd_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    if base.is_empty() {
        base = "door".to_owned();
    }
    let mut name = base.clone();
    for n in 2.. {
        if taken.insert(name.clone()) {
            break;
        }
        name = format!("{base}-{n}");
    }
    if name != knockd_name {
        notes.push(Note::info(format!(
            "named {name:?}: door names are unique and use only letters, digits, _ . -"
        )));
    }
    name
}

/// Fills the draft as far as it goes (an untranslated door's comment shows what was
/// understood); an `Err` is why the door can't be translated.
fn fill(part: &mut DoorPart) -> Result<(), String> {
    let knockd = part.knockd.clone();
    let sequence = sequence(&knockd, &mut part.notes);
    part.draft.tcp_flags = match &sequence {
        Ok(Knocks::Fixed(sequence)) => tcp_flags(&knockd, sequence, &mut part.notes),
        Ok(Knocks::OneTime(file)) => {
            part.draft.sequence = None;
            part.draft.one_time_sequences = Some(file.clone());
            knockd.tcp_flags.as_deref().map(str::to_ascii_lowercase)
        }
        Err(_) => knockd.tcp_flags.as_deref().map(str::to_ascii_lowercase),
    };
    let grant = start_grant(&knockd);
    if let Ok(grant) = &grant {
        apply_grant(&knockd, grant, part);
    }
    sequence?;
    grant?;
    let Some(target) = &knockd.target else {
        return Ok(());
    };
    part.notes.push(target_note(target)?);
    Ok(())
}

/// knockd's per-door `Target`: knocks count only when sent to that address (knockd compares
/// the packet's destination, as text, with it). knock-nfq's per-door rules are `from` (the
/// knocker's networks) and `interfaces` (where knocks arrive): neither is a destination, so
/// the door is kept without it and the warning says how to narrow it by hand.
fn target_note(target: &str) -> Result<Note, String> {
    if target.parse::<IpAddr>().is_err() {
        return Err(format!(
            "its Target = {target} is not an IP address: knockd compares it with each knock's \
             destination address, so this door never opened"
        ));
    }
    Ok(Note::warning(format!(
        "Target = {target} was dropped: knockd counted only knocks sent to {target}; a \
         knock-nfq door has no destination address (its per-door rules are `from`, the \
         knocker's networks, and `interfaces`, where knocks arrive), so it counts knocks sent \
         to this host on every guarded interface. If {target} is this host's address on one \
         interface, add interfaces = [\"THAT-INTERFACE\"] to the door; if it is a host behind \
         the gateway, knock-nfq never sees knocks forwarded to it: knock on the gateway"
    )))
}

/// knockd tells doors with the same sequence apart by `Target`; knock-nfq can't, so the later
/// door of such a pair would open on the first one's knocks. It is left as a comment.
fn same_knocks_other_target(doors: &mut [DoorPart]) {
    for later in 1..doors.len() {
        let (earlier, rest) = doors.split_at_mut(later);
        let part = &mut rest[0];
        if part.outcome != Outcome::Translated || part.draft.sequence.is_none() {
            continue;
        }
        let twin = earlier.iter().find(|e| {
            e.outcome == Outcome::Translated
                && e.draft.sequence == part.draft.sequence
                && e.knockd.target != part.knockd.target
        });
        if let Some(twin) = twin {
            let shown = |t: &Option<String>| t.as_deref().unwrap_or("any address").to_owned();
            part.outcome = Outcome::NotTranslated(format!(
                "it has the sequence of [{}], and knockd told them apart by Target ({} there, \
                 {} here); a knock-nfq door has no destination address, so these knocks \
                 would open both doors: give this door a sequence of its own",
                twin.knockd.name,
                shown(&twin.knockd.target),
                shown(&part.knockd.target),
            ));
        }
    }
}

fn apply_grant(knockd: &KnockdDoor, grant: &Grant, part: &mut DoorPart) {
    part.notes
        .extend(grant.notes.iter().map(|n| Note::warning(n.clone())));
    part.draft.targets.clone_from(&grant.targets);
    match grant.op {
        GrantOp::Delete => close(knockd, part),
        GrantOp::Add => {
            let (open_for, notes) = lifetime(knockd, grant);
            part.draft.open_for = Some(open_for);
            part.notes.extend(notes);
        }
    }
}

/// Where a translated door's knocks come from.
enum Knocks {
    Fixed(Vec<KnockPort>),
    OneTime(String),
}

fn sequence(knockd: &KnockdDoor, notes: &mut Vec<Note>) -> Result<Knocks, String> {
    let ots = knockd.one_time_sequences.as_deref();
    if knockd.totp.is_some() {
        let reason = "its sequence comes from a TOTP Key, whose derivation differs from \
                      knock-nfq's totp (docs/replay.md)";
        match (&knockd.sequence, ots) {
            (None, None) => return Err(reason.into()),
            _ => notes.push(Note::warning(format!(
                "Key is not translated: {}; this door takes its other sequence",
                reason.trim_start_matches("its sequence comes from ")
            ))),
        }
    }
    match (&knockd.sequence, ots) {
        (sequence, Some(file)) => {
            if !file.starts_with('/') {
                return Err(format!(
                    "one_time_sequences = {file} is not an absolute path (knockd resolves it \
                     from its working directory); write the full path"
                ));
            }
            if sequence.is_some() {
                notes.push(Note::warning(
                    "Sequence was dropped: knockd takes the one-time sequences instead",
                ));
            }
            notes.push(Note::warning(format!(
                "one_time_sequences = {file}: knock-nfq comments out each used line by \
                 rewriting the file, and the shipped unit may write only /var/lib/knock-nfq: \
                 move the file there, mode 0600"
            )));
            Ok(Knocks::OneTime(file.to_owned()))
        }
        (Some(sequence), None) => Ok(Knocks::Fixed(sequence.clone())),
        (None, None) => Err("it has no sequence (knockd refuses such a door too)".into()),
    }
}

/// knockd's `tcpflags`, carried as written; the config parser reads the same syntax.
fn tcp_flags(knockd: &KnockdDoor, sequence: &[KnockPort], notes: &mut Vec<Note>) -> Option<String> {
    let flags = knockd.tcp_flags.as_deref()?.trim().to_ascii_lowercase();
    if sequence.iter().all(|k| k.proto == Proto::Udp) {
        notes.push(Note::info(format!(
            "tcpflags = {flags} was dropped: every knock of this door is UDP, which has no flags"
        )));
        return None;
    }
    let requires_ack = flags.split(',').any(|f| f.trim() == "ack");
    if requires_ack {
        notes.push(Note::warning(format!(
            "tcpflags = {flags} requires ACK, but the SYN of a knock client (knock, knock-nfq \
             knock, nmap, nc) has none, so its TCP knocks are ignored; kept as knockd had it, \
             but you probably want \"syn,!ack\""
        )));
    }
    Some(flags)
}

/// The grant of `command` (alias `start_command`), with `start_command_6` reconciled.
fn start_grant(knockd: &KnockdDoor) -> Result<Grant, String> {
    let Some(start) = knockd
        .start_command
        .as_deref()
        .filter(|c| !c.trim().is_empty())
    else {
        return Err("it has no command, so knockd only logged the knock".into());
    };
    let grant = command::grant(start).map_err(|u| format!("its command {start:?} {}", u.0))?;
    let Some(start6) = knockd.start_command6.as_deref() else {
        return Ok(grant);
    };
    if start6.trim().is_empty() {
        let mut grant = grant;
        grant.notes.push(
            "start_command_6 is empty, so knockd did nothing for IPv6 knockers; knock-nfq \
             opens the same targets for IPv4 and IPv6 knockers"
                .into(),
        );
        return Ok(grant);
    }
    let grant6 =
        command::grant(start6).map_err(|u| format!("its start_command_6 {start6:?} {}", u.0))?;
    merge_families(grant, grant6)
}

/// One door opens its targets for both families: the IPv6 command must open the same ones, or
/// the IPv6 twins of forwarded IPv4 targets.
fn merge_families(mut grant: Grant, grant6: Grant) -> Result<Grant, String> {
    let forwards_only = |targets: &[Target], v6: bool| {
        targets.iter().all(
            |t| matches!(t, Target::Forward { addr, .. } if matches!(addr, IpAddr::V6(_)) == v6),
        )
    };
    let same = grant6.targets == grant.targets;
    let twins = forwards_only(&grant.targets, false) && forwards_only(&grant6.targets, true);
    if grant6.op != grant.op || !(same || twins) {
        return Err(format!(
            "its start_command_6 opens {} while its command opens {}, and a knock-nfq door \
             opens the same targets for both families; split it into two doors by hand",
            render::targets_list(&grant6.targets),
            render::targets_list(&grant.targets)
        ));
    }
    if twins {
        grant.targets.extend(grant6.targets);
    }
    grant.notes.extend(grant6.notes);
    Ok(grant)
}

/// `iptables -D` in `command`: a door that revokes.
fn close(knockd: &KnockdDoor, part: &mut DoorPart) {
    part.draft.action = Action::Close;
    if knockd.stop_command.is_some() {
        part.notes.push(Note::warning(
            "stop_command was dropped: a close door revokes at once and has nothing to undo",
        ));
    }
}

/// How long the grant lasts: knockd's start/cmd_timeout/stop pattern, an nft element timeout,
/// or [`UNTIMED_OPEN_FOR`] for a grant that never ended in knockd.
fn lifetime(knockd: &KnockdDoor, grant: &Grant) -> (Duration, Vec<Note>) {
    let mut notes = Vec::new();
    let open_for = match (&knockd.stop_command, grant.timeout) {
        (Some(stop), timeout) => {
            let secs = knockd.cmd_timeout.unwrap_or(DEFAULT_CMD_TIMEOUT_SECS);
            notes.push(stop_note(stop, grant, secs));
            let after_cmd = Duration::from_secs(secs);
            timeout.map_or(after_cmd, |t| t.min(after_cmd))
        }
        (None, Some(timeout)) => {
            notes.push(Note::info("open_for is the nft element's timeout"));
            timeout
        }
        (None, None) => {
            notes.push(Note::warning(format!(
                "knockd's grant had no end (it stayed until a close door or a reboot removed \
                 it); knock-nfq grants always expire, so open_for = \"{}\" is a choice to review \
                 (at most 24h)",
                render::duration(UNTIMED_OPEN_FOR)
            )));
            UNTIMED_OPEN_FOR
        }
    };
    if knockd.stop_command.is_none() && knockd.cmd_timeout.is_some() {
        notes.push(Note::info(
            "cmd_timeout was dropped: without a stop_command knockd ran nothing after it",
        ));
    }
    if open_for > MAX_OPEN_FOR {
        notes.push(Note::warning(format!(
            "the grant lasted {} in knockd; knock-nfq grants last at most 24h",
            render::duration(open_for)
        )));
    }
    (open_for.min(MAX_OPEN_FOR), notes)
}

fn stop_note(stop: &str, grant: &Grant, secs: u64) -> Note {
    match command::grant(stop) {
        Ok(undo)
            if undo.op == GrantOp::Delete
                && undo.targets.iter().all(|t| grant.targets.contains(t)) =>
        {
            Note::info(format!(
                "open_for is knockd's cmd_timeout ({secs}s), after which stop_command undid the \
                 grant"
            ))
        }
        Ok(_) => Note::warning(format!(
            "stop_command {stop:?} does not undo the command; the grant just ends after \
             cmd_timeout ({secs}s)"
        )),
        Err(why) => Note::warning(format!(
            "stop_command {stop:?} was not translated (it {}); the grant just ends after \
             cmd_timeout ({secs}s)",
            why.0
        )),
    }
}

/// The door as the parser can check it here: a one-time sequence file is read where the
/// daemon runs, often not on this machine, so a stand-in sequence takes its place.
fn checkable(draft: &DoorDraft) -> String {
    let mut draft = draft.clone();
    if draft.one_time_sequences.take().is_some() {
        draft.sequence = Some(vec![KnockPort {
            port: 65535,
            proto: Proto::Tcp,
        }]);
    }
    render::door_toml(&draft)
}

/// Checks each translated door with the config parser, in order and together with the doors
/// before it (names, knocks on ports another door opens); a refused door becomes a comment, an
/// accepted one a port scan opens gets a warning.
fn validate(interfaces: &Interfaces, doors: &mut [DoorPart]) {
    let daemon = render::daemon_toml(interfaces);
    let mut accepted = String::new();
    for part in doors.iter_mut() {
        if part.outcome != Outcome::Translated {
            continue;
        }
        let door = render::door_toml(&part.draft);
        let candidate = format!("{daemon}{accepted}{}", checkable(&part.draft));
        match Config::from_toml_str(&candidate, Path::new("translation")) {
            Ok(config) => {
                accepted.push_str(&door);
                if part.draft.one_time_sequences.is_none() {
                    part.notes.extend(config.doors.last().and_then(scan_note));
                }
            }
            Err(e) => {
                part.outcome = Outcome::NotTranslated(format!(
                    "the config parser refuses its translation: {}",
                    refusal(&e)
                ));
            }
        }
    }
}

/// A warning for a door a port scan in port order opens (it opened knockd's door the same way).
fn scan_note(door: &Door) -> Option<Note> {
    door.scan_risk().map(|risk| {
        Note::warning(format!(
            "{risk} (knockd's door opened to the same scan; a new order means a new knock \
             command for your users)"
        ))
    })
}

/// The parser's message without the scratch document's name and door index, which mean
/// nothing to the reader of the output.
fn refusal(error: &ConfigError) -> String {
    let message = error.to_string();
    let message = message.strip_prefix("translation: ").unwrap_or(&message);
    match message.split_once(").") {
        Some((door, key)) if door.starts_with("door[") => key.to_owned(),
        _ => message.to_owned(),
    }
}

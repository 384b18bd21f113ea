//! knockd.conf into a typed form, read the way knockd 0.8 reads it: `#` comment lines,
//! `[section]` headers, `KEY = VALUE` directives with case-insensitive keys, and `UseSyslog`
//! as a flag without a value. What knockd itself refuses is an [`ImportError::Syntax`].

use std::path::{Path, PathBuf};

use crate::config::KnockPort;
use crate::config::parse;

use super::ImportError;

/// A whole knockd.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnockdConf {
    pub path: PathBuf,
    pub options: Options,
    pub doors: Vec<KnockdDoor>,
}

/// The `[options]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub interface: Option<String>,
    /// UseSyslog, LogFile and PidFile, in file order: knock-nfq logs through tracing instead.
    pub logging: Vec<Logging>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logging {
    UseSyslog,
    LogFile(String),
    PidFile(String),
}

/// One knock/event section (`[openSSH]`). Every directive is optional here; what a door
/// without a sequence or a command means is the translator's question.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnockdDoor {
    pub name: String,
    /// Line of the `[name]` header.
    pub line: usize,
    pub sequence: Option<Vec<KnockPort>>,
    pub one_time_sequences: Option<String>,
    /// Seconds.
    pub seq_timeout: Option<u64>,
    pub tcp_flags: Option<String>,
    /// `Start_Command`, or its alias `Command`.
    pub start_command: Option<String>,
    /// `Start_Command_6` (alias `Command_6`): for IPv6 knockers; knockd falls back to the
    /// IPv4 command without it.
    pub start_command6: Option<String>,
    pub stop_command: Option<String>,
    pub stop_command6: Option<String>,
    /// Seconds between the start and the stop command.
    pub cmd_timeout: Option<u64>,
    /// `Target`: the address knocks must be sent to.
    pub target: Option<String>,
    pub totp: Option<TotpKey>,
    /// The section as written, for the comments of the output (a TOTP key is masked).
    pub source: Vec<SourceLine>,
}

/// The door has a `Key` (TOTP-derived sequences, in later knockd versions). The secret itself
/// is not kept, so it can't leak into the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpKey;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLine {
    pub number: usize,
    pub text: String,
}

/// knockd's defaults (knockd.c: SEQ_TIMEOUT, CMD_TIMEOUT, SEQ_MAX).
pub const DEFAULT_SEQ_TIMEOUT_SECS: u64 = 25;
pub const DEFAULT_CMD_TIMEOUT_SECS: u64 = 10;

const OPTIONS_KEYS: &str = "UseSyslog, LogFile, PidFile, Interface";
const DOOR_KEYS: &str = "Sequence, One_Time_Sequences, Seq_Timeout, TCPFlags, Command, \
                         Start_Command, Start_Command_6, Stop_Command, Stop_Command_6, \
                         Cmd_Timeout, Target, Key";

/// Which section the parser is in.
enum Section {
    None,
    Options,
    /// Index into the doors.
    Door(usize),
}

/// Parses knockd.conf text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<KnockdConf, ImportError> {
    let mut conf = KnockdConf {
        path: path.to_owned(),
        options: Options::default(),
        doors: Vec::new(),
    };
    let mut section = Section::None;
    for (index, raw) in text.lines().enumerate() {
        let line = Line {
            number: index + 1,
            text: raw.trim(),
            path,
        };
        if line.text.is_empty() || line.text.starts_with('#') {
            continue;
        }
        if let Some(name) = line.section_name()? {
            section = if name == "options" {
                Section::Options
            } else {
                conf.doors.push(KnockdDoor {
                    name: name.to_owned(),
                    line: line.number,
                    ..KnockdDoor::default()
                });
                Section::Door(conf.doors.len() - 1)
            };
            continue;
        }
        match section {
            Section::None => return Err(line.error("a directive before any [section]")),
            Section::Options => options_directive(&mut conf.options, &line)?,
            Section::Door(i) => door_directive(&mut conf.doors[i], &mut conf.options, &line)?,
        }
    }
    Ok(conf)
}

/// One meaningful line, for parsing and for errors.
struct Line<'a> {
    number: usize,
    text: &'a str,
    path: &'a Path,
}

impl<'a> Line<'a> {
    fn error(&self, message: impl Into<String>) -> ImportError {
        ImportError::Syntax {
            path: self.path.to_owned(),
            line: self.number,
            message: message.into(),
        }
    }

    /// `[name]` → `Some(name)`; `[options]` in any case is the options section.
    fn section_name(&self) -> Result<Option<&'a str>, ImportError> {
        let Some(inner) = self
            .text
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        else {
            return Ok(None);
        };
        match inner.trim() {
            "" => Err(self.error("an empty section name \"[]\"")),
            name if name.eq_ignore_ascii_case("options") => Ok(Some("options")),
            name => Ok(Some(name)),
        }
    }

    /// The upper-cased key and the value, `None` for a flag such as `UseSyslog`.
    fn directive(&self) -> (String, Option<&'a str>) {
        match self.text.split_once('=') {
            Some((key, value)) => (key.trim().to_ascii_uppercase(), Some(value.trim())),
            None => (self.text.to_ascii_uppercase(), None),
        }
    }
}

fn options_directive(options: &mut Options, line: &Line) -> Result<(), ImportError> {
    let (key, value) = line.directive();
    let Some(value) = value else {
        return use_syslog(options, line, &key);
    };
    match key.as_str() {
        "LOGFILE" => options.logging.push(Logging::LogFile(value.to_owned())),
        "PIDFILE" => options.logging.push(Logging::PidFile(value.to_owned())),
        "INTERFACE" => options.interface = Some(value.to_owned()),
        // knockd refuses a value here; there is nothing to lose in taking it as the flag.
        "USESYSLOG" => options.logging.push(Logging::UseSyslog),
        _ => {
            return Err(line.error(format!(
                "unknown [options] key {key:?}; knockd knows {OPTIONS_KEYS}"
            )));
        }
    }
    Ok(())
}

/// A valueless line: only `UseSyslog` (which knockd takes in any section).
fn use_syslog(options: &mut Options, line: &Line, key: &str) -> Result<(), ImportError> {
    if key == "USESYSLOG" {
        options.logging.push(Logging::UseSyslog);
        Ok(())
    } else {
        Err(line.error(format!(
            "expected KEY = VALUE (or UseSyslog), found {:?}",
            line.text
        )))
    }
}

fn door_directive(
    door: &mut KnockdDoor,
    options: &mut Options,
    line: &Line,
) -> Result<(), ImportError> {
    let (key, value) = line.directive();
    let Some(value) = value else {
        return use_syslog(options, line, &key);
    };
    let text = value.to_owned();
    match key.as_str() {
        "SEQUENCE" => door.sequence = Some(sequence(value, line)?),
        "ONE_TIME_SEQUENCES" => door.one_time_sequences = Some(text),
        "SEQ_TIMEOUT" | "TIMEOUT" => door.seq_timeout = Some(seconds(value, line)?),
        "TCPFLAGS" => door.tcp_flags = Some(text),
        "START_COMMAND" | "COMMAND" => door.start_command = Some(text),
        "START_COMMAND_6" | "COMMAND_6" => door.start_command6 = Some(text),
        "STOP_COMMAND" => door.stop_command = Some(text),
        "STOP_COMMAND_6" => door.stop_command6 = Some(text),
        "CMD_TIMEOUT" => door.cmd_timeout = Some(seconds(value, line)?),
        "TARGET" => door.target = Some(text),
        "KEY" => door.totp = Some(TotpKey),
        // knockd listens on one interface for every door: it refuses this key in a door.
        "INTERFACE" => {
            return Err(line.error(format!(
                "Interface in [{}]: knockd takes Interface only in [options] (one interface \
                 for every door) and refuses it here; move it to [options], or after the \
                 import give the knock-nfq door interfaces = [\"{value}\"]",
                door.name
            )));
        }
        _ => {
            return Err(line.error(format!(
                "unknown key {key:?} in [{}]; knockd knows {DOOR_KEYS}",
                door.name
            )));
        }
    }
    let shown = match key.as_str() {
        "KEY" => format!(
            "{} = (secret, not copied)",
            line.text.split('=').next().unwrap_or("").trim()
        ),
        _ => line.text.to_owned(),
    };
    door.source.push(SourceLine {
        number: line.number,
        text: shown,
    });
    Ok(())
}

/// `7000,8000:udp,9000`: knockd's `PORT[:tcp|udp]` list, TCP by default.
fn sequence(value: &str, line: &Line) -> Result<Vec<KnockPort>, ImportError> {
    value
        .split(',')
        .map(|item| {
            knock(item).ok_or_else(|| {
                line.error(format!(
                    "sequence: {:?} is not PORT[:tcp|udp] with PORT 1-65535",
                    item.trim()
                ))
            })
        })
        .collect()
}

/// Like knockd, spaces around the port and the protocol are fine.
fn knock(item: &str) -> Option<KnockPort> {
    let (port, proto) = item.split_once(':').unwrap_or((item, "tcp"));
    Some(KnockPort {
        port: parse::port(port.trim())?,
        proto: parse::proto(proto.trim())?,
    })
}

fn seconds(value: &str, line: &Line) -> Result<u64, ImportError> {
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| value.parse().ok())
        .flatten()
        .ok_or_else(|| line.error(format!("expected a number of seconds, found {value:?}")))
}

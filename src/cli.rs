//! The command line (DESIGN.md section 4) and the commands that are not the daemon.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config};
use crate::nft::{Nft, NftError};

#[derive(Debug, Parser)]
#[command(
    name = "knock-nfq",
    version,
    about = "Port knocking for Linux hosts and gateways: NFQUEUE verdicts, nftables grants"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (systemd Type=notify; SIGHUP reloads; SIGTERM stops).
    Run(ConfigArg),
    /// Validate the config, and the nftables table it names where that table exists.
    Check(ConfigArg),
    /// See it all work in a throw-away sandbox of network namespaces (root).
    Demo,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The configuration file.
    #[arg(long, short = 'c', value_name = "PATH", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
}

/// What `check` found about the nftables side.
#[derive(Debug)]
pub enum TableCheck {
    Verified,
    /// No table here (or no permission to look): the config alone was checked.
    NotChecked(String),
}

/// `knock-nfq check`: prints one line per door, then the table's state. Errors are the caller's
/// to print; an absent table is a note, a wrong one an error.
pub fn check(config: &Config, out: &mut impl Write) -> Result<TableCheck, NftError> {
    let _ = writeln!(
        out,
        "{}: ok, {} door(s)",
        config.path.display(),
        config.doors.len()
    );
    for door in &config.doors {
        let _ = writeln!(out, "  {}", door.summary());
    }
    let table = &config.daemon.table;
    let verdict = match Nft::open(table).and_then(|mut nft| nft.verify()) {
        Ok(()) => TableCheck::Verified,
        Err(NftError::MissingTable { .. }) => {
            TableCheck::NotChecked(format!("table inet {table} is not loaded here"))
        }
        Err(NftError::Socket(err)) => {
            TableCheck::NotChecked(format!("cannot query nftables ({err})"))
        }
        Err(err) => return Err(err),
    };
    let _ = match &verdict {
        TableCheck::Verified => writeln!(
            out,
            "table inet {table}: every set the daemon fills is present with the right type"
        ),
        TableCheck::NotChecked(why) => writeln!(out, "table inet {table}: not checked: {why}"),
    };
    Ok(verdict)
}

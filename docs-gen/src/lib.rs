//! Writes knock-nfq's man pages and shell completions from its clap definitions
//! ([`knock_nfq::cli::Cli`]), plus the hand-written knock-nfq.toml(5), for packagers:
//!
//! - `man/knock-nfq.1` and `man/knock-nfq-SUBCOMMAND.1` for every subcommand (clap_mangen);
//! - `man/knock-nfq.toml.5`, copied from `docs/man/knock-nfq.toml.5`;
//! - `completions/knock-nfq.bash`, `completions/_knock-nfq` (zsh), `completions/knock-nfq.fish`
//!   (clap_complete).
//!
//! This is its own crate so that xtask never depends on the daemon (`cargo xtask deps` must
//! build before the C libraries the daemon links are installed).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::{Command, CommandFactory};
use clap_complete::Shell;

/// The binary's name, as installed and as the man pages and completions call it.
pub const BIN: &str = "knock-nfq";

/// The config file's page, written by hand (clap knows nothing of the TOML keys).
pub const CONFIG_PAGE: &str = include_str!("../../docs/man/knock-nfq.toml.5");
pub const CONFIG_PAGE_NAME: &str = "knock-nfq.toml.5";

/// The shells a completion script is written for, with the script's file name.
pub const SHELLS: &[(Shell, &str)] = &[
    (Shell::Bash, "knock-nfq.bash"),
    (Shell::Zsh, "_knock-nfq"),
    (Shell::Fish, "knock-nfq.fish"),
];

/// Why the pages were not written.
#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The command line as the binary parses it, with the name it is installed under.
pub fn command() -> Command {
    knock_nfq::cli::Cli::command().bin_name(BIN)
}

/// Writes every page and script under `out` (`out/man/`, `out/completions/`); returns the
/// files written, in order.
pub fn generate(out: &Path) -> Result<Vec<PathBuf>, DocsError> {
    let man = out.join("man");
    let completions = out.join("completions");
    let mut written = Vec::new();
    let mut command = command().disable_help_subcommand(true);
    // Names each subcommand's page ("knock-nfq-knock") and synopsis ("knock-nfq knock").
    command.build();
    for (file, page) in man_pages(&command) {
        written.push(write(&man.join(file), &page)?);
    }
    written.push(write(&man.join(CONFIG_PAGE_NAME), CONFIG_PAGE.as_bytes())?);
    for (shell, file) in SHELLS {
        written.push(write(&completions.join(file), &completion(*shell))?);
    }
    Ok(written)
}

/// The completion script for `shell`.
pub fn completion(shell: Shell) -> Vec<u8> {
    // For a binary whose name has a hyphen, clap_complete's bash script completes nothing
    // after a subcommand (clap-rs/clap#6421: its loop and its case arms escape the name
    // differently): generate it for `knock_nfq`, and register its function for the real name.
    let generated_as = match shell {
        Shell::Bash => BASH_NAME,
        _ => BIN,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command(), generated_as, &mut script);
    if shell != Shell::Bash {
        return script;
    }
    let script = String::from_utf8(script).expect("clap_complete writes UTF-8");
    let registered = format!(" {BASH_NAME}\n");
    let lines = script.split_inclusive('\n').map(|line| {
        match line.trim_start().starts_with("complete ") && line.ends_with(&registered) {
            true => line.replace(&registered, &format!(" {BIN}\n")),
            false => line.to_owned(),
        }
    });
    lines.collect::<String>().into_bytes()
}

/// The name bash's script is generated for (see [`completion`]).
const BASH_NAME: &str = "knock_nfq";

/// The page of `command` and of each of its subcommands at any depth, as (file name, roff).
pub fn man_pages(command: &Command) -> Vec<(String, Vec<u8>)> {
    let man = clap_mangen::Man::new(command.clone()).manual("knock-nfq");
    let mut page = Vec::new();
    man.render(&mut page).expect("writing to a Vec cannot fail");
    page.extend_from_slice(see_also(command).as_bytes());
    let mut pages = vec![(man.get_filename(), page)];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.extend(man_pages(sub));
    }
    pages
}

/// A SEE ALSO section: the config page, and the top page from a subcommand's.
fn see_also(command: &Command) -> String {
    let mut refs = vec![r"\fBknock\-nfq.toml\fR(5)".to_owned()];
    if command.get_name() != BIN {
        refs.insert(0, r"\fBknock\-nfq\fR(1)".to_owned());
    }
    format!(".SH \"SEE ALSO\"\n{}\n", refs.join(",\n"))
}

fn write(path: &Path, contents: &[u8]) -> Result<PathBuf, DocsError> {
    let error = |source| DocsError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(error)?;
    }
    fs::write(path, contents).map_err(error)?;
    Ok(path.to_owned())
}

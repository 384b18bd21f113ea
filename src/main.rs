//! The `knock-nfq` binary: parse arguments, load config, set up tracing, call the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use knock_nfq::cli::{self, Cli, Command};
use knock_nfq::config::{Config, Exposure, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Check(args) => check(&args),
        Command::Demo => demo(),
        Command::Knock(args) => cli::knock(&args, &mut std::io::stdout()).map_err(Into::into),
        Command::Spa(args) => cli::spa(&args, &mut std::io::stdout()).map_err(Into::into),
        Command::Keygen(args) => cli::keygen(&args, &mut std::io::stdout()).map_err(Into::into),
        Command::Unban(args) => unban(&args),
        Command::ImportKnockd(args) => {
            cli::import_knockd(&args, &mut std::io::stdout(), &mut std::io::stderr())
                .map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("knock-nfq: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &cli::ConfigArg) -> anyhow::Result<()> {
    let (config, exposure) = Config::load_trusted(&args.config)?;
    init_tracing(config.daemon.log_format);
    if let Exposure::WorldReadable { mode } = exposure {
        tracing::warn!(config = %args.config.display(), mode = %format!("{mode:04o}"), "{}", cli::WORLD_READABLE);
    }
    knock_nfq::daemon::run(config).context("the daemon stopped on an error")
}

fn check(args: &cli::CheckArgs) -> anyhow::Result<()> {
    let path = &args.config.config;
    let (config, exposure) = Config::load_trusted(path)?;
    if let Exposure::WorldReadable { mode } = exposure {
        let path = path.display();
        println!("warning: {path} (mode {mode:04o}): {}", cli::WORLD_READABLE);
    }
    cli::check(&config, args.ruleset(), &mut std::io::stdout())?;
    Ok(())
}

fn unban(args: &cli::UnbanArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config.config)?;
    let mut nft = knock_nfq::nft::Nft::open(&config.daemon.table)?;
    // The ban this config would make, and the address alone (a narrowed or older ban).
    let mut scopes = vec![config.blocklist.ban_scope(args.address)];
    if scopes[0] != args.address.into() {
        scopes.push(args.address.into());
    }
    nft.unban(&scopes)
        .with_context(|| format!("cannot lift the ban of {}", args.address))?;
    println!("{} is no longer banned", args.address);
    Ok(())
}

fn demo() -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("cannot find the knock-nfq binary to start")?;
    knock_nfq::demo::run(&binary, &mut std::io::stdout())?;
    Ok(())
}

/// Level from `RUST_LOG` (default `info`); text or JSON lines on stderr (journald keeps them).
/// Colours only on a terminal: journald and log files would store the escape codes.
fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

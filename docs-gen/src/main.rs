//! `cargo run -p knock-nfq-docs -- DIR`: the man pages into DIR/man, the completions into
//! DIR/completions.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: knock-nfq-docs DIR (e.g. target/assets)");
        return ExitCode::from(2);
    };
    match knock_nfq_docs::generate(&PathBuf::from(out)) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("knock-nfq-docs: {err}");
            ExitCode::FAILURE
        }
    }
}

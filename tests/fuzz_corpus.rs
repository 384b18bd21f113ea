//! The fuzz targets (fuzz/targets.rs) as plain tests over their committed corpora, so every
//! seed and every crash found so far (kept in the corpus as `crash-*`) runs on stable in the
//! README's test command. `cargo xtask fuzz` fuzzes the same bodies with cargo-fuzz.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::fs;
use std::path::Path;

/// Runs `target` over every file in fuzz/corpus/`name`; a corpus must not be empty.
fn over_corpus(name: &str, target: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        let data = fs::read(&path).expect("a corpus file");
        let run = std::panic::catch_unwind(|| target(&data));
        assert!(run.is_ok(), "{name} panicked on {}", path.display());
        count += 1;
    }
    assert!(count > 0, "the {name} corpus is empty");
}

#[test]
fn spa_decode_over_its_corpus() {
    over_corpus("spa_decode", targets::spa_decode);
}

#[test]
fn packet_path_over_its_corpus() {
    over_corpus("packet_path", targets::packet_path);
}

#[test]
fn config_load_over_its_corpus() {
    over_corpus("config_load", targets::config_load);
}

#[test]
fn import_knockd_over_its_corpus() {
    over_corpus("import_knockd", targets::import_knockd);
}

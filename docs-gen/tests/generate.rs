//! The generator as a packager runs it (`knock-nfq-docs DIR`), and what a user then sees: every
//! page renders without a groff warning, and each shell's completion offers the subcommands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The subcommands of the CLI contract (README's Client and Deploy sections).
const SUBCOMMANDS: &[&str] = &[
    "run",
    "check",
    "demo",
    "knock",
    "import-knockd",
    "spa",
    "keygen",
    "unban",
];

/// Runs the generator binary into a new directory.
fn generated() -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_knock-nfq-docs"))
        .arg(dir.path())
        .output()
        .expect("run knock-nfq-docs");
    assert!(
        out.status.success(),
        "knock-nfq-docs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, out)
}

fn run(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (cargo xtask deps installs it)"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The page as `man` shows it; groff's warnings (`-ww`) fail the test.
fn render(page: &Path) -> String {
    let out = run(Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-rLL=200n"])
        .arg(page)
        .env("LC_ALL", "C.UTF-8"));
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(warnings.is_empty(), "{}: {warnings}", page.display());
    // Plain text: drop the overstrikes groff uses for bold and underline.
    let text = String::from_utf8_lossy(&out.stdout);
    let mut plain = String::new();
    for c in text.chars() {
        match c {
            '\u{8}' => {
                plain.pop();
            }
            '\u{2010}' | '\u{2212}' => plain.push('-'),
            c => plain.push(c),
        }
    }
    plain
}

fn man(dir: &Path, name: &str) -> PathBuf {
    dir.join("man").join(name)
}

#[test]
fn writes_a_page_per_subcommand_and_lists_what_it_wrote() {
    let (dir, out) = generated();
    let listed = String::from_utf8(out.stdout).expect("utf-8");
    let mut expected = vec!["knock-nfq.1".to_owned(), "knock-nfq.toml.5".to_owned()];
    expected.extend(SUBCOMMANDS.iter().map(|s| format!("knock-nfq-{s}.1")));
    for page in &expected {
        let path = man(dir.path(), page);
        assert!(path.is_file(), "no {}", path.display());
        assert!(
            listed.contains(&path.display().to_string()),
            "{page} not listed"
        );
    }
    // No page the contract doesn't know (a subcommand added without updating this test).
    let mut found: Vec<String> = std::fs::read_dir(dir.path().join("man"))
        .expect("man dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    expected.sort();
    assert_eq!(found, expected);
    for script in ["knock-nfq.bash", "_knock-nfq", "knock-nfq.fish"] {
        assert!(dir.path().join("completions").join(script).is_file());
    }
}

#[test]
fn pages_render_without_warnings_and_show_the_options() {
    let (dir, _) = generated();
    let top = render(&man(dir.path(), "knock-nfq.1"));
    for sub in SUBCOMMANDS {
        assert!(
            top.contains(&format!("knock-nfq-{sub}(1)")),
            "{sub} in knock-nfq(1)"
        );
        let page = render(&man(dir.path(), &format!("knock-nfq-{sub}.1")));
        assert!(
            page.contains(&format!("knock-nfq {sub}")),
            "synopsis of {sub}"
        );
        assert!(page.contains("knock-nfq.toml(5)"), "SEE ALSO of {sub}");
    }
    let knock = render(&man(dir.path(), "knock-nfq-knock.1"));
    for option in ["--delay", "--udp", "--door", "--config", "PORT[:PROTO]"] {
        assert!(knock.contains(option), "knock-nfq-knock(1) lacks {option}");
    }
    let check = render(&man(dir.path(), "knock-nfq-check.1"));
    assert!(
        check.contains("/etc/knock-nfq/knock-nfq.toml"),
        "--config's default"
    );
}

#[test]
fn config_page_is_the_hand_written_one_and_renders_without_warnings() {
    let (dir, _) = generated();
    let path = man(dir.path(), "knock-nfq.toml.5");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/man/knock-nfq.toml.5");
    assert_eq!(
        std::fs::read(&path).expect("copied page"),
        std::fs::read(source).expect("docs/man page")
    );
    let page = render(&path);
    for shown in [
        "KNOCK_NFQ_DAEMON__MAX_SOURCES=5000",
        "seq_timeout",
        "ipv6_prefix",
    ] {
        assert!(page.contains(shown), "knock-nfq.toml(5) lacks {shown}");
    }
}

/// What bash offers for the last of `words` (the cursor at its end) with the script sourced,
/// through the function the script registered with `complete -F`.
fn bash_completions(script: &Path, words: &[&str]) -> Vec<String> {
    let words_array: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let line = words.join(" ");
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{line}'\nCOMP_POINT={}\n\
         spec=$(complete -p knock-nfq) && function=${{spec##*-F }} && function=${{function%% *}}\n\
         \"$function\" knock-nfq '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words_array.join(" "),
        words.len() - 1,
        line.len(),
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = run(Command::new("bash").args(["--norc", "-c", &program]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_offers_the_subcommands_and_their_options() {
    let (dir, _) = generated();
    let script = dir.path().join("completions/knock-nfq.bash");
    let offered = bash_completions(&script, &["knock-nfq", ""]);
    for sub in SUBCOMMANDS {
        assert!(offered.iter().any(|o| o == sub), "{sub} not in {offered:?}");
    }
    assert_eq!(
        bash_completions(&script, &["knock-nfq", "imp"]),
        ["import-knockd"]
    );
    let options = bash_completions(&script, &["knock-nfq", "knock", "--d"]);
    assert!(options.contains(&"--delay".to_owned()), "{options:?}");
    assert!(options.contains(&"--door".to_owned()), "{options:?}");
}

#[test]
fn fish_completion_offers_the_subcommands() {
    let (dir, _) = generated();
    let script = dir.path().join("completions/knock-nfq.fish");
    let program = format!(
        "source '{}'; complete -C 'knock-nfq '; echo ---; complete -C 'knock-nfq spa --'",
        script.display()
    );
    let out = run(Command::new("fish").args(["--no-config", "-c", &program]));
    let text = String::from_utf8_lossy(&out.stdout);
    let (subs, spa) = text.split_once("---").expect("both completions");
    let offered: Vec<&str> = subs
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(l))
        .collect();
    for sub in SUBCOMMANDS {
        assert!(offered.contains(sub), "{sub} not in {offered:?}");
    }
    assert!(spa.contains("--key-file"), "spa's options: {spa}");
}

#[test]
fn zsh_completion_parses_and_describes_the_subcommands() {
    let (dir, _) = generated();
    let script = dir.path().join("completions/_knock-nfq");
    run(Command::new("zsh").arg("-n").arg(&script));
    let text = std::fs::read_to_string(&script).expect("zsh script");
    assert!(text.starts_with("#compdef knock-nfq"));
    for sub in SUBCOMMANDS {
        assert!(
            text.contains(&format!("'{sub}:")),
            "{sub} not described in _knock-nfq"
        );
    }
}

//! knock-nfq.toml(5) (docs/man/knock-nfq.toml.5, written by hand) against the keys the config
//! accepts: every key has an item under its table's heading, with its type, its default (or
//! that it is required) and an example, and the page documents no key that is not accepted.

use std::collections::BTreeMap;
use std::path::Path;

use super::{blocklist, build, cluster, once, spa};

/// Each table's heading in the page, and the keys the config accepts in it.
const TABLES: &[(&str, &[&str])] = &[
    ("[daemon]", build::DAEMON_KEYS),
    ("[[door]]", build::DOOR_KEYS),
    ("[[door]].spa", spa::SPA_KEYS),
    ("[[door]].totp", once::TOTP_KEYS),
    ("[blocklist]", blocklist::BLOCKLIST_KEYS),
    ("[blocklist].scan", blocklist::SCAN_KEYS),
    ("[cluster]", cluster::CLUSTER_KEYS),
];

/// An item of the page: its key and the text of its body.
type Items = BTreeMap<String, Vec<(String, String)>>;

/// The `.TP` items whose tag is `.B key`, by the `.SS` heading they are under.
fn items(page: &str) -> Items {
    let mut items = Items::new();
    let mut heading = String::new();
    let mut lines = page.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(title) = line.strip_prefix(".SS ") {
            heading = title.trim_matches('"').to_owned();
        } else if line.starts_with(".SH ") {
            heading.clear();
        } else if line == ".TP" && !heading.is_empty() {
            let Some(key) = lines.peek().and_then(|tag| tag.strip_prefix(".B ")) else {
                continue;
            };
            let key = key.to_owned();
            lines.next();
            let mut body = String::new();
            while let Some(next) = lines.next_if(|l| !l.starts_with(".TP") && !l.starts_with(".S"))
            {
                body.push_str(next);
                body.push('\n');
            }
            items.entry(heading.clone()).or_default().push((key, body));
        }
    }
    items
}

fn page() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/man/knock-nfq.toml.5");
    std::fs::read_to_string(&path).expect("docs/man/knock-nfq.toml.5")
}

#[test]
fn config_page_documents_every_key_and_no_other() {
    let items = items(&page());
    for (heading, keys) in TABLES {
        let documented: Vec<&str> = (items.get(*heading).into_iter().flatten())
            .map(|(key, _)| key.as_str())
            .collect();
        for key in *keys {
            assert!(
                documented.contains(key),
                "knock-nfq.toml(5) has no item for {heading} {key} (under `.SS \"{heading}\"`)"
            );
        }
        for key in &documented {
            assert!(
                keys.contains(key),
                "knock-nfq.toml(5) documents {heading} {key}, which the config does not accept"
            );
        }
    }
    let headings: Vec<&str> = TABLES.iter().map(|(h, _)| *h).collect();
    for heading in items.keys() {
        assert!(
            headings.contains(&heading.as_str()),
            "knock-nfq.toml(5) has items under {heading:?}, which is no table the test knows"
        );
    }
}

#[test]
fn config_page_gives_each_key_its_type_default_and_example() {
    for (heading, entries) in items(&page()) {
        for (key, body) in entries {
            assert!(body.starts_with("Type: "), "{heading} {key}: no `Type:`");
            assert!(
                body.contains("\nDefault: ") || body.contains("\nRequired"),
                "{heading} {key}: neither `Default:` nor `Required`"
            );
            let example = format!("Example: {key} = ");
            assert!(body.contains(&example), "{heading} {key}: no `{example}`");
        }
    }
}

#[test]
fn config_page_names_every_table() {
    let page = page();
    for key in build::TOP_KEYS {
        let shown = [format!("[{key}]"), format!("[[{key}]]")];
        assert!(
            shown.iter().any(|s| page.contains(&format!(".SS \"{s}\""))),
            "knock-nfq.toml(5) has no section for the top-level key {key}"
        );
    }
    assert!(page.contains(super::ENV_PREFIX), "the env override scheme");
}

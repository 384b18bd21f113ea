//! deploy/grafana-dashboard.json as the tests read it: its queries, the metric names they use,
//! and Grafana's variables replaced so that Prometheus can run them directly.
//!
//! Each test crate that includes it uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeSet;

use serde_json::Value;

pub const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana-dashboard.json");

pub fn load() -> Value {
    let text = std::fs::read_to_string(PATH).expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included (rows themselves are not returned).
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            if panel["type"] == "row" {
                walk(&panel["panels"], out);
            } else {
                out.push(panel);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The PromQL of every panel target.
pub fn queries(dashboard: &Value) -> Vec<String> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .map(|target| target["expr"].as_str().expect("a target expr").to_owned())
        .collect()
}

/// Whether a query shows the fleet's metrics, which a daemon exports only with `[cluster]`:
/// the fleet tests check those panels, the others the rest.
pub fn fleet_only(query: &str) -> bool {
    metric_names(query)
        .iter()
        .any(|name| name.starts_with("knock_nfq_cluster_"))
}

/// The template variables' queries (`label_values(...)`).
pub fn variable_queries(dashboard: &Value) -> Vec<String> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|var| var["definition"].as_str().map(str::to_owned))
        .collect()
}

/// The `knock_nfq_*` metric names a query uses.
pub fn metric_names(query: &str) -> BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    query
        .split(|c: char| !ident(c))
        .filter(|word| word.starts_with("knock_nfq_"))
        .map(str::to_owned)
        .collect()
}

/// Grafana's variables as a direct query needs them: every instance and door, fixed windows.
pub fn substitute(query: &str) -> String {
    query
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
        .replace("$instance", ".*")
        .replace("$door", ".*")
}

/// The series selector of a `label_values(SELECTOR, LABEL)` variable query.
pub fn variable_selector(definition: &str) -> String {
    let inner = definition
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .expect("a label_values(SELECTOR, LABEL) query");
    let (selector, _label) = inner.rsplit_once(',').expect("SELECTOR, LABEL");
    selector.trim().to_owned()
}

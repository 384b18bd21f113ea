//! `[cluster]`: the etcd cluster through which a fleet of gateways shares its grants. Absent,
//! the gateway works alone.

use std::path::Path;

use super::ConfigError;
use super::build::optional;
use super::model::{Cluster, ClusterBackend, ClusterTls, PemFile};
use super::spa::{absolute, secret};
use super::tree::{Node, describe};

pub const CLUSTER_KEYS: &[&str] = &[
    "backend",
    "endpoints",
    "prefix",
    "node",
    "ca_file",
    "cert_file",
    "key_file",
];

const EXPECT_CLUSTER: &str =
    "a table such as [cluster] backend = \"etcd\", endpoints = [\"https://10.0.0.5:2379\"]";
const EXPECT_BACKEND: &str = "\"etcd\"";
const EXPECT_ENDPOINTS: &str = "a non-empty array of etcd client URLs such as \
                                [\"https://10.0.0.5:2379\", \"https://10.0.0.6:2379\"]";
const EXPECT_ENDPOINT: &str = "an etcd client URL http://HOST:PORT or https://HOST:PORT";
const EXPECT_HTTPS: &str = "https:// endpoints, as the cluster has TLS files";
const EXPECT_PREFIX: &str = "a key prefix that starts and ends with '/', such as \"/knock-nfq/\"";
const EXPECT_NODE: &str = "this gateway's name: 1-64 characters from A-Z a-z 0-9 _ . -";
const EXPECT_CA: &str = "an absolute path to the PEM file of the CA that signed etcd's certificate";
const EXPECT_CERT: &str = "an absolute path to this gateway's PEM client certificate";
const EXPECT_KEY: &str = "an absolute path to the PEM private key of cert_file, mode 0600";
const EXPECT_PAIR: &str = "cert_file and key_file together (a client certificate and its key)";
const DEFAULT_PREFIX: &str = "/knock-nfq/";
const MAX_ENDPOINTS: usize = 16;

type Result<T> = std::result::Result<T, ConfigError>;

pub fn cluster(node: &Node) -> Result<Cluster> {
    let t = node.table(EXPECT_CLUSTER, CLUSTER_KEYS)?;
    let backend_node = t.require("backend", EXPECT_BACKEND)?;
    let backend = match backend_node.str(EXPECT_BACKEND)? {
        "etcd" => ClusterBackend::Etcd,
        _ => return Err(backend_node.invalid(EXPECT_BACKEND)),
    };
    let endpoints_node = t.require("endpoints", EXPECT_ENDPOINTS)?;
    let endpoints = endpoints(&endpoints_node)?;
    let tls = tls(&t)?;
    if tls.is_some() && endpoints.iter().any(|e| !e.starts_with("https://")) {
        return Err(endpoints_node.invalid(EXPECT_HTTPS));
    }
    Ok(Cluster {
        backend,
        endpoints,
        tls,
        prefix: optional(&t, "prefix", prefix)?.unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
        node: t
            .require("node", EXPECT_NODE)
            .and_then(|n| checked(&n, EXPECT_NODE, is_node_name))?,
    })
}

fn endpoints(node: &Node) -> Result<Vec<String>> {
    let items = node.array(EXPECT_ENDPOINTS)?;
    if items.is_empty() || items.len() > MAX_ENDPOINTS {
        return Err(node.invalid(EXPECT_ENDPOINTS));
    }
    items
        .iter()
        .map(|item| checked(item, EXPECT_ENDPOINT, is_endpoint))
        .collect()
}

fn prefix(node: &Node) -> Result<String> {
    checked(node, EXPECT_PREFIX, |s| {
        s.len() >= 2 && s.starts_with('/') && s.ends_with('/') && !s.contains(char::is_whitespace)
    })
}

fn checked(node: &Node, expected: &str, valid: impl Fn(&str) -> bool) -> Result<String> {
    let s = node.str(expected)?;
    match valid(s) {
        true => Ok(s.to_owned()),
        false => Err(node.invalid(expected)),
    }
}

/// `http(s)://HOST:PORT` with a port; a path would be ignored by the client, so it is refused.
fn is_endpoint(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return false;
    };
    !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
}

pub(super) fn is_node_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The TLS files: a CA (to verify etcd), optionally with a client certificate and its key.
fn tls(t: &super::tree::Table) -> Result<Option<ClusterTls>> {
    let ca = optional(t, "ca_file", |n| pem(n, EXPECT_CA, Secrecy::Public))?;
    let cert = optional(t, "cert_file", |n| pem(n, EXPECT_CERT, Secrecy::Public))?;
    let key = optional(t, "key_file", |n| pem(n, EXPECT_KEY, Secrecy::Private))?;
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            let node = t.get("cert_file").or_else(|| t.get("key_file"));
            return Err(node.expect("one of them is set").invalid(EXPECT_PAIR));
        }
    };
    Ok(match (ca, identity) {
        (None, None) => None,
        (ca, identity) => Some(ClusterTls { ca, identity }),
    })
}

/// Whether a file may be readable by others: a private key may not.
#[derive(Clone, Copy)]
enum Secrecy {
    Public,
    Private,
}

fn pem(node: &Node, expected: &str, secrecy: Secrecy) -> Result<PemFile> {
    let path = absolute(node, expected)?;
    let bytes = match secrecy {
        Secrecy::Private => secret(node, &path, expected)?,
        Secrecy::Public => read_public(node, &path, expected)?,
    };
    Ok(PemFile { path, bytes })
}

fn read_public(node: &Node, path: &Path, expected: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| {
        node.invalid_found(
            expected,
            format!("{} (cannot read it: {error})", describe(node.value)),
        )
    })
}

//! Typed reading of figment's merged value tree, keeping for every value its key path
//! (`door[2] ("ssh").sequence[1]`) and its origin (the file, or the environment variable).
//!
//! We walk the tree ourselves instead of deriving `Deserialize`. figment's serde errors do carry
//! the path (`invalid type: found string "yes", expected a boolean for key "default.door.2.strict"`)
//! but not the door's name, and they phrase expectations as Rust types; value checks (ports,
//! durations) would need a second format. One walk gives one format for both.

use std::path::Path;

use figment::value::{Dict, Value};
use figment::{Figment, Provider};

use super::error::{ConfigError, Origin};
use super::{ENV_PREFIX, ENV_SEPARATOR};

/// What every node needs to name its origin.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub figment: &'a Figment,
    pub file: &'a Path,
}

/// A key path in two forms: as shown to the user, and as the keys of an environment variable.
#[derive(Debug, Clone, Default)]
pub struct KeyPath {
    shown: String,
    env_keys: Vec<String>,
}

impl KeyPath {
    fn key(&self, key: &str) -> KeyPath {
        let mut env_keys = self.env_keys.clone();
        env_keys.push(key.to_ascii_uppercase());
        // Show a key as TOML would need it written: `daemon."max sources"`.
        let bare = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let key_shown = if bare {
            key.to_owned()
        } else {
            format!("{key:?}")
        };
        let shown = if self.shown.is_empty() {
            key_shown
        } else {
            format!("{}.{key_shown}", self.shown)
        };
        KeyPath { shown, env_keys }
    }

    fn index(&self, index: usize) -> KeyPath {
        KeyPath {
            shown: format!("{}[{index}]", self.shown),
            env_keys: self.env_keys.clone(),
        }
    }

    /// `door[2]` becomes `door[2] ("ssh")` once the door's name is known to be valid.
    fn named(&self, name: &str) -> KeyPath {
        KeyPath {
            shown: format!("{} ({name:?})", self.shown),
            env_keys: self.env_keys.clone(),
        }
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// One value of the tree with its key path.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    pub value: &'a Value,
    pub path: KeyPath,
    sources: Sources<'a>,
}

impl<'a> Node<'a> {
    pub fn root(value: &'a Value, sources: Sources<'a>) -> Self {
        Node {
            value,
            path: KeyPath::default(),
            sources,
        }
    }

    /// The file, or for an environment override the variable that set this value.
    pub fn origin(&self) -> Origin {
        if is_env(self.sources.figment.get_metadata(self.value.tag())) {
            let keys = self.path.env_keys.join(ENV_SEPARATOR);
            Origin::Env(format!("{ENV_PREFIX}{keys}"))
        } else {
            Origin::File(self.sources.file.to_owned())
        }
    }

    /// The value is wrong: say what was expected and show what was found.
    pub fn invalid(&self, expected: &str) -> ConfigError {
        self.invalid_found(expected, describe(self.value))
    }

    pub fn invalid_found(&self, expected: &str, found: String) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin(),
            key: self.path.shown.clone(),
            expected: expected.to_owned(),
            found,
        }
    }

    /// A table whose keys must all be in `known`.
    pub fn table(
        &self,
        expected: &str,
        known: &'static [&'static str],
    ) -> Result<Table<'a>, ConfigError> {
        let Value::Dict(_, dict) = self.value else {
            return Err(self.invalid(expected));
        };
        let table = Table {
            node: self.clone(),
            dict,
        };
        if let Some((key, value)) = dict.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            let child = table.child(key, value);
            return Err(ConfigError::UnknownKey {
                origin: child.origin(),
                key: child.path.shown,
                expected: known,
            });
        }
        Ok(table)
    }

    pub fn array(&self, expected: &str) -> Result<Vec<Node<'a>>, ConfigError> {
        let Value::Array(_, items) = self.value else {
            return Err(self.invalid(expected));
        };
        let children = items.iter().enumerate().map(|(i, value)| Node {
            value,
            path: self.path.index(i),
            sources: self.sources,
        });
        Ok(children.collect())
    }

    pub fn str(&self, expected: &str) -> Result<&'a str, ConfigError> {
        match self.value {
            Value::String(_, s) => Ok(s),
            _ => Err(self.invalid(expected)),
        }
    }

    pub fn bool(&self, expected: &str) -> Result<bool, ConfigError> {
        match self.value {
            Value::Bool(_, b) => Ok(*b),
            _ => Err(self.invalid(expected)),
        }
    }

    /// An integer converted to `T`, or an error if it is not one or does not fit.
    pub fn int<T: TryFrom<i128>>(&self, expected: &str) -> Result<T, ConfigError> {
        integer(self.value)
            .and_then(|i| T::try_from(i).ok())
            .ok_or_else(|| self.invalid(expected))
    }
}

/// A table node: its keys have been checked against the known ones.
#[derive(Debug, Clone)]
pub struct Table<'a> {
    pub node: Node<'a>,
    dict: &'a Dict,
}

impl<'a> Table<'a> {
    pub fn get(&self, key: &str) -> Option<Node<'a>> {
        self.dict.get(key).map(|value| self.child(key, value))
    }

    pub fn require(&self, key: &str, expected: &str) -> Result<Node<'a>, ConfigError> {
        self.get(key).ok_or_else(|| ConfigError::Missing {
            origin: self.node.origin(),
            key: self.node.path.key(key).shown,
            expected: expected.to_owned(),
        })
    }

    /// The same table, shown with its name from now on.
    pub fn named(mut self, name: &str) -> Self {
        self.node.path = self.node.path.named(name);
        self
    }

    fn child(&self, key: &str, value: &'a Value) -> Node<'a> {
        Node {
            value,
            path: self.node.path.key(key),
            sources: self.node.sources,
        }
    }
}

/// Whether a value came from the environment provider (the file's provider has another name).
fn is_env(metadata: Option<&figment::Metadata>) -> bool {
    let env_name = figment::providers::Env::prefixed(ENV_PREFIX)
        .metadata()
        .name;
    metadata.is_some_and(|m| m.name == env_name)
}

fn integer(value: &Value) -> Option<i128> {
    let num = value.to_num()?;
    num.to_i128()
        .or_else(|| num.to_u128().and_then(|u| i128::try_from(u).ok()))
}

/// A found value as the user wrote it: strings quoted, numbers as numbers, containers by kind.
pub fn describe(value: &Value) -> String {
    match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("\"{c}\""),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, num) => integer(value)
            .map(|i| i.to_string())
            .or_else(|| num.to_f64().map(|f| format!("{f:?}")))
            .unwrap_or_else(|| "a number".to_owned()),
        Value::Empty(..) => "nothing".to_owned(),
        Value::Dict(..) => "a table".to_owned(),
        Value::Array(_, items) if items.is_empty() => "an empty array".to_owned(),
        Value::Array(..) => "an array".to_owned(),
    }
}

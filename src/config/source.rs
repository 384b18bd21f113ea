//! The TOML text as a figment provider. We parse it here rather than with figment's `Toml`
//! provider so that a syntax error keeps its line and column instead of becoming a string.

use std::path::{Path, PathBuf};

use figment::value::{Dict, Map};
use figment::{Metadata, Profile, Provider};

use super::error::ConfigError;

/// A parsed config file (or string), named by `path` in messages.
#[derive(Debug, Clone)]
pub struct TomlFile {
    path: PathBuf,
    dict: Dict,
}

impl TomlFile {
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let dict = toml::from_str::<Dict>(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            position: e.span().and_then(|span| line_column(text, span.start)),
            // The parser's message may span lines (`...\nexpected ...`); keep ours on one.
            message: e.message().trim().replace('\n', "; "),
        })?;
        Ok(TomlFile {
            path: path.to_owned(),
            dict,
        })
    }
}

impl Provider for TomlFile {
    fn metadata(&self) -> Metadata {
        Metadata::from("TOML file", self.path.as_path())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> Option<(usize, usize)> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    Some((line, before[line_start..].chars().count() + 1))
}

//! The configuration: the file as written ([`raw`]), every default ([`defaults`]), and the one
//! function that compiles it into a typed [`Plan`] ([`compile`]), reporting every problem at
//! once with its file, line, key and reason.
//!
//! Everything a deployment changes lives in it: services (URL path, WSDL, profile), operation
//! mappings (backend routes and JSON templates), backends and credentials. Adding an operation
//! or a backend is a change to the file plus a WSDL, not to Rust code.

mod compile;
pub mod defaults;
mod plan;
pub mod raw;

use std::path::{Path, PathBuf};

pub use compile::{compile, parse_offset};
pub use plan::*;
pub use raw::{RawConfig, SecretSource, StoreConfig};

/// One configuration problem: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {key}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    /// The line of the key, or of the table holding it.
    pub line: Option<usize>,
    pub key: String,
    pub reason: String,
}

/// Every problem of a configuration, in the order found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// What compiling may read besides the configuration text: the files it names and the
/// environment's secrets.
pub trait Sources {
    fn read(&self, path: &Path) -> std::io::Result<String>;
    fn env(&self, name: &str) -> Option<String>;
}

/// The file system and the process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Sources for System {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A configuration file, read and parsed (not yet compiled).
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    /// Where relative paths in the file start from.
    pub base_dir: PathBuf,
    text: String,
    pub raw: RawConfig,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            key: "(file)".into(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses configuration text; `path` names the file in errors and anchors relative paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let mut config = Config {
            file: path.to_path_buf(),
            base_dir: path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            text: text.to_string(),
            raw: RawConfig::default(),
        };
        config.raw = toml::from_str(text).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: e.span().map(|s| config.line_of(s.start)),
            key: "(syntax)".into(),
            reason: e.message().to_string(),
        })?;
        Ok(config)
    }

    /// Compiles the configuration, reading what it names from the file system and the
    /// environment.
    pub fn compile(&self) -> Result<Plan, ConfigErrors> {
        compile(self, &System)
    }

    /// Reads and compiles a configuration file (and the WSDLs it names), with the listen
    /// address overridden when `listen` is given: what `serve` starts from and what a reload
    /// reads again.
    pub fn compile_file(
        path: &Path,
        listen: Option<std::net::SocketAddr>,
    ) -> Result<Plan, ConfigErrors> {
        let mut cfg = Config::load(path)?;
        if let Some(l) = listen {
            cfg.raw.server.listen = Some(l);
        }
        cfg.compile()
    }

    /// A path from the file, relative to the file's directory.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The 1-based line of a byte offset in the file.
    pub fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }
}

#[cfg(test)]
pub(crate) mod tests;

//! How a key's value is read: from a flag's text, from the TOML file (whose typed value is
//! first turned into that same text, so both paths share one parser and one set of error
//! messages), and checked again when a `Config` was built in code. One kind per shape of
//! value; the key table (`keys.rs`) names the kind of every key.

use super::{err, ConfigError, DuplicatePolicy, LogLevel};
use crate::net::Cidr;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The shape of a key's value of type `T`.
pub(super) trait Kind<T> {
    /// What the TOML file holds for the key; serde reads it, so a wrong type reads as serde's
    /// message.
    type File: FileText;

    /// The value of the flag's (or the file's) text; errors name `key`.
    fn parse(&self, key: &str, text: &str) -> Result<T, ConfigError>;

    /// The rule [`Self::parse`] enforces, for a value set in code.
    fn check(&self, _key: &str, _value: &T) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// A value as the TOML file holds it, turned into the text a flag would give.
pub(super) trait FileText: DeserializeOwned {
    /// The flag's text for this value; errors name `key`.
    fn text(self, key: &str) -> Result<String, ConfigError>;
}

impl FileText for String {
    fn text(self, _key: &str) -> Result<String, ConfigError> {
        Ok(self)
    }
}

impl FileText for i64 {
    fn text(self, _key: &str) -> Result<String, ConfigError> {
        Ok(self.to_string())
    }
}

/// Seconds in the file: a whole or a decimal number.
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct SecondsFile(toml::Value);

impl FileText for SecondsFile {
    fn text(self, key: &str) -> Result<String, ConfigError> {
        match self.0 {
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            other => err(format!("{key}: expected seconds, got {other}")),
        }
    }
}

/// Address blocks in the file: one string of them, or a list of strings.
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct CidrsFile(toml::Value);

impl FileText for CidrsFile {
    fn text(self, key: &str) -> Result<String, ConfigError> {
        list_text(key, self.0, "CIDR strings", "a list of CIDRs")
    }
}

/// URLs in the file: one string of them, or a list of strings.
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct UrlsFile(toml::Value);

impl FileText for UrlsFile {
    fn text(self, key: &str) -> Result<String, ConfigError> {
        list_text(key, self.0, "URL strings", "URL strings")
    }
}

/// A string or a list of strings, joined with commas (the flag's form). `item` and `whole`
/// say what was expected in the two errors.
fn list_text(key: &str, file: toml::Value, item: &str, whole: &str) -> Result<String, ConfigError> {
    match file {
        toml::Value::String(s) => Ok(s),
        toml::Value::Array(items) => {
            let mut list = Vec::with_capacity(items.len());
            for i in items {
                match i {
                    toml::Value::String(s) => list.push(s),
                    other => return err(format!("{key}: expected {item}, got {other}")),
                }
            }
            Ok(list.join(","))
        }
        other => err(format!("{key}: expected {whole}, got {other}")),
    }
}

fn int_in<T: TryFrom<i64>>(key: &str, v: i64, min: i64, max: i64) -> Result<T, ConfigError> {
    if v < min || v > max {
        return err(format!("{key}: {v} is out of range ({min}..={max})"));
    }
    T::try_from(v).or_else(|_| err(format!("{key}: {v} is out of range")))
}

fn parse_int(key: &str, s: &str) -> Result<i64, ConfigError> {
    s.trim()
        .parse::<i64>()
        .or_else(|_| err(format!("{key}: expected a whole number, got {s:?}")))
}

/// A whole number in `min..=max`.
pub(super) struct Int(pub i64, pub i64);

impl<T: TryFrom<i64> + TryInto<i64> + Copy + Display> Kind<T> for Int {
    type File = i64;

    fn parse(&self, key: &str, text: &str) -> Result<T, ConfigError> {
        int_in(key, parse_int(key, text)?, self.0, self.1)
    }

    fn check(&self, key: &str, value: &T) -> Result<(), ConfigError> {
        let (min, max) = (self.0, self.1);
        match (*value).try_into() {
            Ok(v) if (min..=max).contains(&v) => Ok(()),
            _ => err(format!("{key}: {value} is out of range ({min}..={max})")),
        }
    }
}

/// Seconds, decimals allowed, held as milliseconds (at least 1).
pub(super) struct Seconds;

/// The longest [`Seconds`] value, in milliseconds.
const MAX_SECONDS_MS: u64 = 86_400_000;

impl Kind<u64> for Seconds {
    type File = SecondsFile;

    fn parse(&self, key: &str, text: &str) -> Result<u64, ConfigError> {
        match text.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => {
                Ok((v * 1000.0).round().max(1.0) as u64)
            }
            _ => err(format!(
                "{key}: expected seconds between 0 and 86400, got {text:?}"
            )),
        }
    }

    fn check(&self, key: &str, value: &u64) -> Result<(), ConfigError> {
        if !(1..=MAX_SECONDS_MS).contains(value) {
            return err(format!(
                "{key} (ms): {value} is out of range (1..={MAX_SECONDS_MS})"
            ));
        }
        Ok(())
    }
}

/// A socket address; the text is an example for the error.
pub(super) struct Addr(pub &'static str);

impl Kind<SocketAddr> for Addr {
    type File = String;

    fn parse(&self, key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        let example = self.0;
        text.parse()
            .or_else(|_| err(format!("{key}: {text:?} is not an address like {example}")))
    }
}

/// A socket address, or `""` / `"off"` for none; the text is an example for the error.
pub(super) struct OptionalAddr(pub &'static str);

impl Kind<Option<SocketAddr>> for OptionalAddr {
    type File = String;

    fn parse(&self, key: &str, text: &str) -> Result<Option<SocketAddr>, ConfigError> {
        let example = self.0;
        match text {
            "" | "off" => Ok(None),
            v => Ok(Some(v.parse().or_else(|_| {
                err(format!(
                    "{key}: {v:?} is not an address like {example} (or \"off\")"
                ))
            })?)),
        }
    }
}

/// A token that must not be empty.
pub(super) struct Secret;

impl Kind<String> for Secret {
    type File = String;

    fn parse(&self, key: &str, text: &str) -> Result<String, ConfigError> {
        let value = text.to_string();
        self.check(key, &value)?;
        Ok(value)
    }

    fn check(&self, key: &str, value: &String) -> Result<(), ConfigError> {
        if value.is_empty() {
            return err(format!("{key}: must not be empty"));
        }
        Ok(())
    }
}

/// An optional token: `""` is none.
pub(super) struct OptionalSecret;

impl Kind<Option<String>> for OptionalSecret {
    type File = String;

    fn parse(&self, _key: &str, text: &str) -> Result<Option<String>, ConfigError> {
        Ok((!text.is_empty()).then(|| text.to_string()))
    }

    fn check(&self, key: &str, value: &Option<String>) -> Result<(), ConfigError> {
        if value.as_deref() == Some("") {
            return err(format!("{key}: must not be empty (use None)"));
        }
        Ok(())
    }
}

/// An optional path: `""` is none.
pub(super) struct OptionalPath;

impl Kind<Option<PathBuf>> for OptionalPath {
    type File = String;

    fn parse(&self, _key: &str, text: &str) -> Result<Option<PathBuf>, ConfigError> {
        Ok((!text.is_empty()).then(|| PathBuf::from(text)))
    }
}

/// `replace` or `reject`.
pub(super) struct Policy;

impl Kind<DuplicatePolicy> for Policy {
    type File = String;

    fn parse(&self, key: &str, text: &str) -> Result<DuplicatePolicy, ConfigError> {
        match text {
            "replace" => Ok(DuplicatePolicy::Replace),
            "reject" => Ok(DuplicatePolicy::Reject),
            _ => err(format!("{key}: expected replace or reject, got {text:?}")),
        }
    }
}

/// A log level, in any case.
pub(super) struct Level;

impl Kind<LogLevel> for Level {
    type File = String;

    fn parse(&self, key: &str, text: &str) -> Result<LogLevel, ConfigError> {
        match text.to_ascii_lowercase().as_str() {
            "off" => Ok(LogLevel::Off),
            "error" => Ok(LogLevel::Error),
            "warn" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => err(format!(
                "{key}: expected off|error|warn|info|debug|trace, got {text:?}"
            )),
        }
    }
}

/// Address blocks, comma-separated (a list of strings in the file).
pub(super) struct CidrList;

impl Kind<Vec<Cidr>> for CidrList {
    type File = CidrsFile;

    fn parse(&self, key: &str, text: &str) -> Result<Vec<Cidr>, ConfigError> {
        text.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.parse::<Cidr>()
                    .map_err(|e| ConfigError(format!("{key}: {e}")))
            })
            .collect()
    }
}

/// `http://` URLs, comma-separated (a list of strings in the file); trailing `/` dropped.
pub(super) struct UrlList;

impl Kind<Vec<String>> for UrlList {
    type File = UrlsFile;

    fn parse(&self, key: &str, text: &str) -> Result<Vec<String>, ConfigError> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.starts_with("http://") {
                    Ok(s.trim_end_matches('/').to_string())
                } else {
                    err(format!(
                        "{key}: {s:?} is not an http:// URL (TLS is not supported)"
                    ))
                }
            })
            .collect()
    }
}

/// A key prefix: starts with `/`, names more than the root; trailing `/` dropped.
pub(super) struct Prefix;

impl Kind<String> for Prefix {
    type File = String;

    fn parse(&self, key: &str, text: &str) -> Result<String, ConfigError> {
        let p = text.trim_end_matches('/');
        if !p.starts_with('/') || p.len() < 2 {
            return err(format!(
                "{key}: {text:?} must start with / and name a prefix"
            ));
        }
        Ok(p.to_string())
    }
}

/// A name of 1..200 bytes, optional only in that it has a default computed elsewhere.
pub(super) struct Name;

impl Kind<Option<String>> for Name {
    type File = String;

    fn parse(&self, key: &str, text: &str) -> Result<Option<String>, ConfigError> {
        if text.is_empty() || text.len() > 200 {
            return err(format!("{key}: 1..200 characters"));
        }
        Ok(Some(text.to_string()))
    }
}

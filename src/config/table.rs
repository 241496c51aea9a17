//! The macro that turns the key table (`keys.rs`) into everything a key needs: the field of
//! [`super::Config`], its default, its TOML field, its `--help` line, parsing its text,
//! checking a value set in code, and whether SIGHUP applies it. Separate from the table so
//! the table reads as data, one row per key.

/// One row per key:
///
/// ```text
/// /// doc of the field
/// field: Type = default,
///     "key", Kind(args), reloadable | restart,
///     "--flag" "VALUE" "help line";
/// ```
macro_rules! config_keys {
    (@restart reloadable) => { false };
    (@restart restart) => { true };
    (@reloadable [$($done:literal)*]) => { &[$($done),*] };
    (@reloadable [$($done:literal)*] reloadable $key:literal $($rest:tt)*) => {
        config_keys!(@reloadable [$($done)* $key] $($rest)*)
    };
    (@reloadable [$($done:literal)*] restart $key:literal $($rest:tt)*) => {
        config_keys!(@reloadable [$($done)*] $($rest)*)
    };
    (@apply reloadable $to:ident $from:ident $field:ident) => {
        $to.$field = $from.$field.clone();
    };
    (@apply restart $to:ident $from:ident $field:ident) => {};
    ($(
        $(#[doc = $doc:literal])+
        $field:ident: $ty:ty = $default:expr,
            $key:literal, $kind:ident $(($($arg:expr),*))?, $reload:ident,
            $flag:literal $value_name:literal $help:literal;
    )+) => {
        /// The whole configuration of a login node.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Config {
            $(
                $(#[doc = $doc])+
                pub $field: $ty,
            )+
        }

        impl Default for Config {
            fn default() -> Self {
                Config {
                    $($field: $default,)+
                }
            }
        }

        /// Keys SIGHUP applies to a running node; the others need a restart.
        pub const RELOADABLE: &[&str] = config_keys!(@reloadable [] $($reload $key)+);

        /// Every key, in the order of the table.
        #[cfg(test)]
        pub(super) const KEYS: &[&str] = &[$($key),+];

        /// One line per flag for `--help`: (flag, value name, description).
        pub const FLAGS: &[(&str, &str, &str)] = &[
            (
                "--config",
                "FILE",
                "TOML config file; flags given after it override its keys",
            ),
            $(($flag, $value_name, $help),)+
        ];

        /// The TOML file: every key optional, unknown keys refused.
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct FileConfig {
            $(
                #[serde(rename = $key)]
                $field: Option<<$kind as Kind<$ty>>::File>,
            )+
        }

        impl FileConfig {
            /// Sets every key the file holds, in the order of the table.
            pub(super) fn apply(self, config: &mut Config) -> Result<(), ConfigError> {
                $(
                    if let Some(v) = self.$field {
                        config.set($key, &FileText::text(v, $key)?)?;
                    }
                )+
                Ok(())
            }
        }

        impl Config {
            /// Sets one key from its textual value (flag or file). `key` uses underscores.
            pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
                match key {
                    $($key => {
                        self.$field =
                            <$kind as Kind<$ty>>::parse(&$kind $(($($arg),*))?, key, value)?
                    })+
                    _ => return err(format!("unknown key {key:?}")),
                }
                Ok(())
            }

            /// The rules [`Self::set`] enforces on text, for a `Config` built in code.
            pub(super) fn check_keys(&self) -> Result<(), ConfigError> {
                $(<$kind as Kind<$ty>>::check(&$kind $(($($arg),*))?, $key, &self.$field)?;)+
                Ok(())
            }

            /// The keys whose values differ between `self` and `other`, as (key, restart
            /// needed). Token values are never part of the answer, only their names.
            pub fn changed_keys(&self, other: &Config) -> Vec<(&'static str, bool)> {
                let mut out = Vec::new();
                $(
                    if self.$field != other.$field {
                        out.push(($key, config_keys!(@restart $reload)));
                    }
                )+
                out
            }

            /// Takes the value of every reloadable key from `new` (SIGHUP); the keys that
            /// need a restart keep their running values. The one place that decides what a
            /// reload changes.
            #[allow(clippy::clone_on_copy)] // one generated line for every field type
            pub fn apply_reloadable(&mut self, new: &Config) {
                $(config_keys!(@apply $reload self new $field);)+
            }
        }
    };
}

pub(super) use config_keys;

//! A function's settings, read from its environment once at cold start. Every
//! variable is named where it is read, so a misconfigured deployment fails before its
//! first event with the variable's name and what was wrong with it, not later with an
//! empty table name in an AWS error.

use std::str::FromStr;

/// A setting is missing or does not parse; the function cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    /// A variable is set to something the function cannot use.
    #[error("environment variable {name} is {value:?}; expected {expected}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What it was set to.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
}

/// The environment a function reads its settings from: the process environment in
/// `main.rs`, the template's `Environment.Variables` in the local runtime.
#[derive(Clone, Copy)]
pub struct Settings<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

fn process_variable(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Settings<'static> {
    /// The process environment, as Lambda sets it from the template.
    pub fn process() -> Self {
        Self::new(&process_variable)
    }
}

/// Runs `read` on settings made of `pairs` (a later pair wins over an earlier one
/// with the same name): a function's configuration as a test or a tool gives it.
pub fn with_pairs<T>(pairs: &[(&str, &str)], read: impl FnOnce(Settings<'_>) -> T) -> T {
    let lookup = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    read(Settings::new(&lookup))
}

impl<'a> Settings<'a> {
    /// Settings looked up by `lookup`.
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self { lookup }
    }

    /// A variable that must be set and not empty.
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        (self.lookup)(name)
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::Missing(name))
    }

    /// The function's name, `AWS_LAMBDA_FUNCTION_NAME`: Lambda sets it (the local
    /// runtime sets it as Lambda does), and the function's failures are counted under
    /// it, as Lambda's own metrics count its errors.
    pub fn function_name(&self) -> Result<String, ConfigError> {
        self.required("AWS_LAMBDA_FUNCTION_NAME")
    }

    /// An optional variable parsed as `T`, `default` when unset; `valid` says what
    /// parsed values are acceptable and `expected` says so in words for the error.
    pub fn parsed<T: FromStr>(
        &self,
        name: &'static str,
        default: T,
        expected: &'static str,
        valid: impl Fn(&T) -> bool,
    ) -> Result<T, ConfigError> {
        match (self.lookup)(name) {
            None => Ok(default),
            Some(value) => match value.parse::<T>() {
                Ok(parsed) if valid(&parsed) => Ok(parsed),
                _ => Err(ConfigError::Invalid {
                    name,
                    value,
                    expected,
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_environment_is_read_as_it_is() {
        for name in ["PATH", "CARGO_PKG_NAME"] {
            assert_eq!(process_variable(name), std::env::var(name).ok(), "{name}");
        }
        assert!(process_variable("PATH").is_some_and(|p| !p.is_empty()));
        assert_eq!(process_variable("SHOP_NO_SUCH_VARIABLE_EVER"), None);
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn a_missing_or_empty_variable_is_named() {
        let lookup = env(&[("EMPTY", "")]);
        let settings = Settings::new(&lookup);
        assert_eq!(
            settings.required("ABSENT"),
            Err(ConfigError::Missing("ABSENT"))
        );
        assert_eq!(
            settings.required("EMPTY"),
            Err(ConfigError::Missing("EMPTY"))
        );
    }

    #[test]
    fn a_parsed_variable_defaults_when_unset_and_names_a_bad_value() {
        let lookup = env(&[("GOOD", "7"), ("ZERO", "0"), ("WORDS", "ten")]);
        let settings = Settings::new(&lookup);
        let positive = |n: &u64| *n > 0;
        assert_eq!(
            settings.parsed("UNSET", 5, "a positive number", positive),
            Ok(5)
        );
        assert_eq!(
            settings.parsed("GOOD", 5, "a positive number", positive),
            Ok(7)
        );
        for name in ["ZERO", "WORDS"] {
            let error = settings
                .parsed(name, 5, "a positive number", positive)
                .err()
                .map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains(name) && e.contains("a positive number")),
                "{name}: {error:?}"
            );
        }
        assert_eq!(
            settings.parsed("WORDS", 5u64, "a positive number", positive),
            Err(ConfigError::Invalid {
                name: "WORDS",
                value: "ten".into(),
                expected: "a positive number"
            })
        );
    }
}

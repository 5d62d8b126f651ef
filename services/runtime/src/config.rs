//! Configuration in layers, later ones winning: built-in defaults, a TOML file (`--config`),
//! `BULKHEAD_*` environment variables (nested keys with `__`: `BULKHEAD_NATS__URL`), then
//! command-line flags.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(String),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
}

/// Builds a `T` from the layers. `flags` holds only what was given on the command line: its
/// `None` fields must be skipped when serialised (`#[serde(skip_serializing_if = "Option::is_none")]`)
/// so they do not hide the layers below.
pub fn load<T, F>(file: Option<&Path>, flags: &F) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
    F: Serialize,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path.display().to_string()));
        }
        figment = figment.merge(Toml::file(path));
    }
    figment
        .merge(Env::prefixed("BULKHEAD_").split("__"))
        .merge(Serialized::defaults(flags))
        .extract()
        .map_err(|e| ConfigError::Invalid(Box::new(e)))
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's own error type
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Sample {
        listen: String,
        depth: u32,
        nested: Nested,
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Nested {
        url: String,
    }

    #[derive(Serialize)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        depth: Option<u32>,
    }

    #[test]
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "listen = \"file\"\ndepth = 1\n[nested]\nurl = \"from-file\"",
            )?;
            jail.set_env("BULKHEAD_DEPTH", "2");
            jail.set_env("BULKHEAD_NESTED__URL", "from-env");
            let only_file: Sample =
                load(Some(Path::new("c.toml")), &Flags { depth: None }).unwrap();
            assert_eq!(only_file.listen, "file");
            assert_eq!(only_file.depth, 2, "environment beats the file");
            assert_eq!(only_file.nested.url, "from-env");
            let flagged: Sample =
                load(Some(Path::new("c.toml")), &Flags { depth: Some(3) }).unwrap();
            assert_eq!(flagged.depth, 3, "flags beat the environment");
            Ok(())
        });
    }

    #[test]
    fn missing_file_and_bad_values_are_errors() {
        figment::Jail::expect_with(|jail| {
            let err = load::<Sample, _>(Some(Path::new("nope.toml")), &Flags { depth: None })
                .unwrap_err();
            assert!(matches!(err, ConfigError::MissingFile(_)));
            jail.set_env("BULKHEAD_DEPTH", "deep");
            let err = load::<Sample, _>(None, &Flags { depth: None }).unwrap_err();
            assert!(
                err.to_string().contains("DEPTH") && err.to_string().contains("BULKHEAD_"),
                "{err}"
            );
            Ok(())
        });
    }
}

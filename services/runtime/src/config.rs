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

/// The flags given on the command line, by dotted key (`nats.url`). Flags not given are not
/// set, so they do not hide the layers below.
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Flags(serde_json::Map<String, serde_json::Value>);

impl Flags {
    /// Sets `dotted_key` when `value` is `Some`.
    pub fn set<V: Serialize>(mut self, dotted_key: &str, value: Option<V>) -> Self {
        let Some(value) = value else { return self };
        let value = serde_json::to_value(value).expect("flag values are plain data");
        let mut keys: Vec<&str> = dotted_key.split('.').collect();
        let last = keys.pop().expect("a key");
        let mut table = &mut self.0;
        for key in keys {
            table = table
                .entry(key)
                .or_insert_with(|| serde_json::Value::Object(Default::default()))
                .as_object_mut()
                .expect("a flag key is not also a table");
        }
        table.insert(last.to_owned(), value);
        self
    }
}

/// Builds a `T` from the layers: defaults, `file`, environment, `flags`.
pub fn load<T>(file: Option<&Path>, flags: &Flags) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
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

    fn depth(depth: Option<u32>) -> Flags {
        Flags::default().set("depth", depth)
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
            let only_file: Sample = load(Some(Path::new("c.toml")), &depth(None)).unwrap();
            assert_eq!(only_file.listen, "file");
            assert_eq!(only_file.depth, 2, "environment beats the file");
            assert_eq!(only_file.nested.url, "from-env");
            let flagged: Sample = load(Some(Path::new("c.toml")), &depth(Some(3))).unwrap();
            assert_eq!(flagged.depth, 3, "flags beat the environment");
            let nested: Sample =
                load(None, &Flags::default().set("nested.url", Some("flag"))).unwrap();
            assert_eq!(
                nested.nested.url, "flag",
                "dotted flags reach nested tables"
            );
            Ok(())
        });
    }

    #[test]
    fn missing_file_and_bad_values_are_errors() {
        figment::Jail::expect_with(|jail| {
            let err = load::<Sample>(Some(Path::new("nope.toml")), &depth(None)).unwrap_err();
            assert!(matches!(err, ConfigError::MissingFile(_)));
            jail.set_env("BULKHEAD_DEPTH", "deep");
            let err = load::<Sample>(None, &depth(None)).unwrap_err();
            assert!(
                err.to_string().contains("DEPTH") && err.to_string().contains("BULKHEAD_"),
                "{err}"
            );
            Ok(())
        });
    }
}

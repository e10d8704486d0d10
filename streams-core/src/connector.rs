//! The connector registry: how `WITH ('connector' = 'queue', ...)` becomes a source or a sink.
//! `streams-core` defines the trait and the registry; `streams-connectors` provides the
//! connectors and the binary fills the registry, so the SQL frontend depends on neither.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;

use crate::sink::SinkFactory;
use crate::source::SourceFactory;
use crate::{Error, Result};

/// One option a connector accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionSpec {
    /// Key, e.g. `topic` or `format.on-error`.
    pub name: &'static str,
    /// Whether the table must set it.
    pub required: bool,
    /// What it means, with its default.
    pub doc: &'static str,
}

/// A table's `WITH` options, keys as written (without `connector`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    values: BTreeMap<String, String>,
}

impl Options {
    /// Options from key-value pairs.
    pub fn new(values: impl IntoIterator<Item = (String, String)>) -> Self {
        Options {
            values: values.into_iter().collect(),
        }
    }

    /// A value, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A value parsed as `T`, or an error naming the option and the table.
    pub fn parse<T: std::str::FromStr>(&self, table: &str, key: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.get(key)
            .map(|v| {
                v.parse::<T>().map_err(|e| {
                    Error::plan(format!(
                        "table `{table}`: option '{key}' = '{v}' is not valid: {e}"
                    ))
                })
            })
            .transpose()
    }

    /// All keys and values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A kind of external system tables can read or write.
pub trait Connector: Send + Sync + Debug {
    /// The `'connector'` value, e.g. `queue`.
    fn name(&self) -> &str;

    /// Every option it accepts; the registry rejects others and requires the required ones
    /// before calling `source` or `sink`.
    fn options(&self) -> &[OptionSpec];

    /// A source for table `table` with columns `schema`.
    fn source(
        &self,
        table: &str,
        schema: SchemaRef,
        options: &Options,
    ) -> Result<Arc<dyn SourceFactory>>;

    /// A sink for table `table` with columns `schema`.
    fn sink(
        &self,
        table: &str,
        schema: SchemaRef,
        options: &Options,
    ) -> Result<Arc<dyn SinkFactory>>;
}

/// The connectors a program knows, by name.
#[derive(Clone, Debug, Default)]
pub struct ConnectorRegistry {
    connectors: HashMap<String, Arc<dyn Connector>>,
}

impl ConnectorRegistry {
    /// No connectors.
    pub fn new() -> Self {
        ConnectorRegistry::default()
    }

    /// Adds (or replaces) a connector.
    pub fn register(&mut self, connector: Arc<dyn Connector>) {
        self.connectors
            .insert(connector.name().to_string(), connector);
    }

    /// The connector called `name`, checked against `options`: unknown options (with the
    /// closest known one) and missing required ones are errors that name them.
    pub fn resolve(
        &self,
        table: &str,
        name: &str,
        options: &Options,
    ) -> Result<Arc<dyn Connector>> {
        let Some(c) = self.connectors.get(name) else {
            let mut known: Vec<&str> = self.connectors.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(Error::plan(format!(
                "table `{table}`: unknown connector '{name}' (known: {})",
                known.join(", ")
            )));
        };
        let specs = c.options();
        for (key, _) in options.iter() {
            if !specs.iter().any(|s| s.name == key) {
                let hint = closest(key, specs.iter().map(|s| s.name))
                    .map(|k| format!("; did you mean '{k}'?"))
                    .unwrap_or_default();
                return Err(Error::plan(format!(
                    "table `{table}`: connector '{name}' has no option '{key}'{hint}"
                )));
            }
        }
        if let Some(missing) = specs
            .iter()
            .find(|s| s.required && options.get(s.name).is_none())
        {
            return Err(Error::plan(format!(
                "table `{table}`: connector '{name}' needs option '{}' ({})",
                missing.name, missing.doc
            )));
        }
        Ok(Arc::clone(c))
    }
}

/// The candidate nearest to `word` by edit distance, if it is near enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                datafusion::common::utils::datafusion_strsim::levenshtein(word, c),
                c,
            )
        })
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) || c.starts_with(word) || word.starts_with(c))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fake;

    const SPECS: &[OptionSpec] = &[
        OptionSpec {
            name: "topic",
            required: true,
            doc: "the topic to read",
        },
        OptionSpec {
            name: "scan.startup.mode",
            required: false,
            doc: "earliest (default) or latest",
        },
    ];

    impl Connector for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        fn options(&self) -> &[OptionSpec] {
            SPECS
        }
        fn source(&self, _: &str, _: SchemaRef, _: &Options) -> Result<Arc<dyn SourceFactory>> {
            Err(Error::plan("no"))
        }
        fn sink(&self, _: &str, _: SchemaRef, _: &Options) -> Result<Arc<dyn SinkFactory>> {
            Err(Error::plan("no"))
        }
    }

    #[test]
    fn options_are_checked_by_name() {
        let mut r = ConnectorRegistry::new();
        r.register(Arc::new(Fake));
        let opts = |kv: &[(&str, &str)]| {
            Options::new(kv.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        };
        assert!(r.resolve("t", "fake", &opts(&[("topic", "x")])).is_ok());
        let e = r.resolve(
            "t",
            "fake",
            &opts(&[("topic", "x"), ("scan.startup.mod", "latest")]),
        );
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("no option 'scan.startup.mod'; did you mean 'scan.startup.mode'?")
        );
        let e = r.resolve("t", "fake", &opts(&[]));
        assert!(e.unwrap_err().to_string().contains("needs option 'topic'"));
        let e = r.resolve("t", "kafka", &opts(&[]));
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("unknown connector 'kafka' (known: fake)")
        );
    }
}

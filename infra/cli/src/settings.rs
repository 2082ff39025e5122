//! Where `cosell local` gets its settings: the same names the Lambda functions read from their
//! environment (`COSELL_*`, `AWS_*`), from an optional TOML file with the environment on top.
//!
//! In the file, a value may be a string, a number or a boolean; a table or an array is passed on
//! as JSON, so the JSON settings (`COSELL_DATAVERSE_FIELDS`, `COSELL_SALESFORCE_STAGES`…) can be
//! written as TOML tables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cosell_shared::config::{Config, ConfigError, Env};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the settings file {path} is not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error(
        "the settings file {path} names {key}, which is not a connector setting (they start with COSELL_ or AWS_)"
    )]
    UnknownKey { path: PathBuf, key: String },
    #[error("{0}")]
    Config(#[from] ConfigError),
}

/// Settings by name; later sources win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

impl Settings {
    /// The file (when given), then every `COSELL_*` and `AWS_*` variable of `environment`.
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        let mut settings = match file {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        for (key, value) in environment {
            if is_setting(&key) {
                settings.values.insert(key, value);
            }
        }
        Ok(settings)
    }

    fn from_file(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| SettingsError::Toml {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut values = BTreeMap::new();
        for (key, value) in table {
            if !is_setting(&key) {
                return Err(SettingsError::UnknownKey {
                    path: path.to_owned(),
                    key,
                });
            }
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Datetime(d) => d.to_string(),
                other @ (toml::Value::Array(_) | toml::Value::Table(_)) => {
                    serde_json::to_string(&other).map_err(|e| SettingsError::Toml {
                        path: path.to_owned(),
                        message: format!("{key} cannot be passed on as JSON: {e}"),
                    })?
                }
            };
            values.insert(key, text);
        }
        Ok(Settings { values })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_owned(), value.into());
    }

    /// The connector's typed configuration, validated as the Lambda functions validate theirs.
    pub fn config(&self) -> Result<Config, ConfigError> {
        Config::from_env(&Env(&|name| self.values.get(name).cloned()))
    }

    /// Every setting by name.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }
}

fn is_setting(key: &str) -> bool {
    key.starts_with("COSELL_") || key.starts_with("AWS_")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn the_environment_wins_over_the_file_and_tables_become_json() {
        let f = file(
            r#"
COSELL_CRM = "salesforce"
COSELL_MARKER = false
COSELL_AUDIT_MAX_CHARS = 4000

[COSELL_SALESFORCE_FIELDS]
referralId = "PC_Referral__c"
"#,
        );
        let env = [
            ("COSELL_CRM".to_string(), "dynamics".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let s = Settings::load(Some(f.path()), env).expect("loads");
        assert_eq!(s.get("COSELL_CRM"), Some("dynamics"));
        assert_eq!(s.get("COSELL_MARKER"), Some("false"));
        assert_eq!(s.get("COSELL_AUDIT_MAX_CHARS"), Some("4000"));
        assert_eq!(
            s.get("COSELL_SALESFORCE_FIELDS"),
            Some(r#"{"referralId":"PC_Referral__c"}"#)
        );
        assert_eq!(s.get("PATH"), None, "only the connector's settings");
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_problem() {
        let typo = file("COSEL_CRM = \"dynamics\"\n");
        let err = Settings::load(Some(typo.path()), []).expect_err("unknown key");
        assert!(err.to_string().contains("COSEL_CRM"), "{err}");

        let broken = file("COSELL_CRM = \n");
        let err = Settings::load(Some(broken.path()), []).expect_err("not TOML");
        assert!(err.to_string().contains("not valid TOML"), "{err}");

        let missing = Path::new("/nonexistent/cosell.toml");
        let err = Settings::load(Some(missing), []).expect_err("no file");
        assert!(
            err.to_string().contains("/nonexistent/cosell.toml"),
            "{err}"
        );
    }
}

//! The connector's secrets from AWS Secrets Manager: one secret, named by `COSELL_SECRET_ARN`,
//! holding a JSON object whose keys are the secret settings (`COSELL_PC_CLIENT_SECRET`…). The
//! functions read it once at start (a cold start) and keep it for the life of the process, so
//! secrets never sit in plain environment variables and no call is made per invocation.
//!
//! Locally (`cosell local`, tests) the same settings may come from the environment or a file.

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::error::DisplayErrorContext;

/// The setting that names the secret (its ARN, or its name).
pub const SECRET_ARN_SETTING: &str = "COSELL_SECRET_ARN";

/// The settings a secret may hold: every credential the connector uses, and nothing else (a
/// key outside this list is a mistake the admin should hear about).
pub const SECRET_SETTINGS: &[&str] = &[
    "COSELL_PC_CLIENT_SECRET",
    "COSELL_PC_CLIENT_PRIVATE_KEY",
    // Not secret, but kept beside its private key so a certificate is rotated in one place.
    "COSELL_PC_CLIENT_CERTIFICATE",
    "COSELL_PC_PASSWORD",
    "COSELL_PC_REFRESH_TOKEN",
    "COSELL_DATAVERSE_CLIENT_SECRET",
    "COSELL_DATAVERSE_CLIENT_PRIVATE_KEY",
    "COSELL_DATAVERSE_CLIENT_CERTIFICATE",
    "COSELL_SALESFORCE_CLIENT_SECRET",
    "COSELL_SALESFORCE_PRIVATE_KEY",
];

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{SECRET_ARN_SETTING}: the secret {arn} cannot be read: {reason}")]
    Unreadable { arn: String, reason: String },
    #[error(
        "{SECRET_ARN_SETTING}: the secret {arn} must be a JSON object of settings, e.g. {{\"COSELL_PC_CLIENT_SECRET\": \"…\"}}: {reason}"
    )]
    NotSettings { arn: String, reason: String },
    #[error(
        "{SECRET_ARN_SETTING}: the secret {arn} holds {key}, which is not a secret setting (one of: {})",
        SECRET_SETTINGS.join(", ")
    )]
    UnknownKey { arn: String, key: String },
}

/// Reads the secret `arn` and answers its settings. Values are never part of an error.
pub async fn load(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<BTreeMap<String, String>, SecretsError> {
    let output = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretsError::Unreadable {
            arn: arn.to_string(),
            reason: DisplayErrorContext(&e).to_string(),
        })?;
    let text = output
        .secret_string()
        .ok_or_else(|| SecretsError::NotSettings {
            arn: arn.to_string(),
            reason: "it holds binary data, not text".into(),
        })?;
    parse(arn, text)
}

/// The settings in a secret's text.
pub fn parse(arn: &str, text: &str) -> Result<BTreeMap<String, String>, SecretsError> {
    let not_settings = |reason: String| SecretsError::NotSettings {
        arn: arn.to_string(),
        reason,
    };
    let value: serde_json::Value = serde_json::from_str(text)
        // serde's message gives the position, never the content.
        .map_err(|e| not_settings(format!("not JSON ({e})")))?;
    let serde_json::Value::Object(object) = value else {
        return Err(not_settings("not a JSON object".into()));
    };
    let mut settings = BTreeMap::new();
    for (key, value) in object {
        if !SECRET_SETTINGS.contains(&key.as_str()) {
            return Err(SecretsError::UnknownKey {
                arn: arn.to_string(),
                key,
            });
        }
        let serde_json::Value::String(value) = value else {
            return Err(not_settings(format!("{key} is not a string")));
        };
        settings.insert(key, value);
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cosell-AbCdEf";

    #[test]
    fn a_secret_of_settings_is_read() {
        let settings = parse(
            ARN,
            r#"{"COSELL_PC_CLIENT_SECRET": "s3cret", "COSELL_PC_REFRESH_TOKEN": "r-token"}"#,
        )
        .expect("settings");
        assert_eq!(settings["COSELL_PC_CLIENT_SECRET"], "s3cret");
        assert_eq!(settings.len(), 2);
    }

    #[test]
    fn a_bad_secret_is_refused_naming_the_setting_and_never_a_value() {
        for (text, expected) in [
            ("s3cret-plain-text", "not JSON"),
            (r#"["s3cret"]"#, "not a JSON object"),
            (r#"{"COSELL_PC_CLIENT_SECRET": 42}"#, "is not a string"),
            (r#"{"COSELL_MARKER": "s3cret"}"#, "COSELL_MARKER"),
        ] {
            let err = parse(ARN, text).expect_err(text).to_string();
            assert!(err.starts_with(SECRET_ARN_SETTING), "{err}");
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains("s3cret"), "no secret in the message: {err}");
        }
    }
}

//! Where the Referral admin's refresh token is kept between processes: the Secrets Manager secret
//! of a deployed stack (its `COSELL_PC_REFRESH_TOKEN` key), or a file in `cosell local`'s data
//! directory.
//!
//! Entra hands back a new refresh token each time one is redeemed, and a token lapses after 90
//! days unused, so every process that rotates one keeps the new one here for the next (a Lambda
//! cold start reads it). A process only replaces the token it started from: when the store holds
//! another, someone signed in anew (`cosell auth login`) or another process rotated first, and
//! that newer token must not be overwritten.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The secret's key that holds the refresh token.
pub const REFRESH_TOKEN_KEY: &str = "COSELL_PC_REFRESH_TOKEN";
/// The file in the data directory of `cosell local`.
pub const REFRESH_TOKEN_FILE: &str = "partner-center-token.json";

/// The refresh token as stored, with what the store knows of its history.
#[derive(Debug, Clone)]
pub struct StoredRefreshToken {
    pub token: Secret,
    /// When this token was stored: when it was issued, by a sign-in or a rotation (each
    /// redemption rotates, so this is also when the chain was last used by a process that could
    /// store its rotation).
    pub stored_at: Option<DateTime<Utc>>,
    /// When the Referral admin last signed in interactively, when the store records it.
    pub signed_in_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    #[error("cannot read the refresh token from {place}: {reason}")]
    Read { place: String, reason: String },
    #[error("cannot store the refresh token in {place}: {reason}")]
    Write { place: String, reason: String },
}

#[async_trait]
pub trait RefreshTokenStore: Send + Sync + fmt::Debug {
    /// Where the token is kept, for messages ("Secrets Manager secret arn:…", "file …").
    fn place(&self) -> String;
    async fn load(&self) -> Result<Option<StoredRefreshToken>, TokenStoreError>;
    /// Stores `next` only while the store still holds `expected`; `Ok(false)` when it holds
    /// another token, which is left alone.
    async fn replace(&self, expected: &Secret, next: &Secret) -> Result<bool, TokenStoreError>;
    /// Stores the token of a new interactive sign-in, whatever the store held.
    async fn sign_in(&self, token: &Secret) -> Result<(), TokenStoreError>;
}

/// The refresh token in a Secrets Manager secret that holds the connector's secret settings as
/// a JSON object: only its `COSELL_PC_REFRESH_TOKEN` key is written, every other key stays.
pub struct SecretsManagerTokenStore {
    client: aws_sdk_secretsmanager::Client,
    arn: String,
}

impl fmt::Debug for SecretsManagerTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretsManagerTokenStore({})", self.arn)
    }
}

impl SecretsManagerTokenStore {
    pub fn new(client: aws_sdk_secretsmanager::Client, arn: impl Into<String>) -> Self {
        SecretsManagerTokenStore {
            client,
            arn: arn.into(),
        }
    }

    /// The secret's settings object and when its current version was created.
    async fn current(
        &self,
    ) -> Result<
        (
            serde_json::Map<String, serde_json::Value>,
            Option<DateTime<Utc>>,
        ),
        TokenStoreError,
    > {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.arn)
            .send()
            .await
            .map_err(|e| {
                read_error(self, aws_sdk_secretsmanager::error::DisplayErrorContext(&e))
            })?;
        let text = out
            .secret_string()
            .ok_or_else(|| read_error(self, "the secret holds no SecretString"))?;
        let object = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(o)) => o,
            Ok(_) => return Err(read_error(self, "the secret is not a JSON object")),
            Err(e) => return Err(read_error(self, format!("the secret is not JSON: {e}"))),
        };
        let created = out
            .created_date()
            .and_then(|d| DateTime::<Utc>::from_timestamp(d.secs(), d.subsec_nanos()));
        Ok((object, created))
    }

    async fn put(
        &self,
        mut object: serde_json::Map<String, serde_json::Value>,
        token: &Secret,
    ) -> Result<(), TokenStoreError> {
        object.insert(
            REFRESH_TOKEN_KEY.to_string(),
            serde_json::Value::String(token.expose().to_string()),
        );
        let text = serde_json::Value::Object(object).to_string();
        self.client
            .put_secret_value()
            .secret_id(&self.arn)
            .secret_string(text)
            .send()
            .await
            .map_err(|e| {
                write_error(self, aws_sdk_secretsmanager::error::DisplayErrorContext(&e))
            })?;
        Ok(())
    }
}

fn read_error(store: &dyn RefreshTokenStore, reason: impl fmt::Display) -> TokenStoreError {
    TokenStoreError::Read {
        place: store.place(),
        reason: reason.to_string(),
    }
}

fn write_error(store: &dyn RefreshTokenStore, reason: impl fmt::Display) -> TokenStoreError {
    TokenStoreError::Write {
        place: store.place(),
        reason: reason.to_string(),
    }
}

fn held(object: &serde_json::Map<String, serde_json::Value>) -> Option<Secret> {
    object
        .get(REFRESH_TOKEN_KEY)
        .and_then(|v| v.as_str())
        .filter(|t| !t.trim().is_empty())
        .map(Secret::new)
}

#[async_trait]
impl RefreshTokenStore for SecretsManagerTokenStore {
    fn place(&self) -> String {
        format!("the Secrets Manager secret {}", self.arn)
    }

    async fn load(&self) -> Result<Option<StoredRefreshToken>, TokenStoreError> {
        let (object, created) = self.current().await?;
        Ok(held(&object).map(|token| StoredRefreshToken {
            token,
            stored_at: created,
            signed_in_at: None,
        }))
    }

    async fn replace(&self, expected: &Secret, next: &Secret) -> Result<bool, TokenStoreError> {
        // Secrets Manager has no conditional write; the read just before keeps the window in
        // which a new sign-in could be overwritten to one round trip.
        let (object, _) = self.current().await?;
        if held(&object).as_ref() != Some(expected) {
            return Ok(false);
        }
        self.put(object, next).await?;
        Ok(true)
    }

    async fn sign_in(&self, token: &Secret) -> Result<(), TokenStoreError> {
        let (object, _) = self.current().await?;
        self.put(object, token).await
    }
}

/// The refresh token in a file only its owner can read, written whole and renamed into place,
/// under a lock so `cosell local` and `cosell auth login` cannot interleave.
#[derive(Debug, Clone)]
pub struct FileTokenStore {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct TokenFile {
    refresh_token: String,
    stored_at: DateTime<Utc>,
    #[serde(default)]
    signed_in_at: Option<DateTime<Utc>>,
}

impl FileTokenStore {
    /// The token file of the data directory `dir`.
    pub fn in_dir(dir: &Path) -> FileTokenStore {
        FileTokenStore {
            path: dir.join(REFRESH_TOKEN_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` holding an exclusive lock on the file's lock file.
    fn locked<T>(
        &self,
        f: impl FnOnce() -> Result<T, TokenStoreError>,
    ) -> Result<T, TokenStoreError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| write_error(self, e))?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.with_extension("lock"))
            .map_err(|e| write_error(self, e))?;
        lock.lock().map_err(|e| write_error(self, e))?;
        let result = f();
        // Closing the file releases the lock too; unlocking first says so plainly.
        let _ = lock.unlock();
        result
    }

    fn read(&self) -> Result<Option<TokenFile>, TokenStoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| read_error(self, format!("not a token file: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(read_error(self, e)),
        }
    }

    fn write(&self, file: &TokenFile) -> Result<(), TokenStoreError> {
        let tmp = self.path.with_extension("tmp");
        let body = serde_json::to_vec_pretty(file).map_err(|e| write_error(self, e))?;
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut out = options.open(&tmp).map_err(|e| write_error(self, e))?;
        #[cfg(unix)]
        {
            // `mode` applies only to a file being created; one left by a crash keeps its own.
            use std::os::unix::fs::PermissionsExt;
            out.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| write_error(self, e))?;
        }
        out.write_all(&body)
            .and_then(|()| out.sync_all())
            .map_err(|e| write_error(self, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| write_error(self, e))
    }
}

#[async_trait]
impl RefreshTokenStore for FileTokenStore {
    fn place(&self) -> String {
        format!("the file {}", self.path.display())
    }

    async fn load(&self) -> Result<Option<StoredRefreshToken>, TokenStoreError> {
        Ok(self.read()?.map(|f| StoredRefreshToken {
            token: Secret::new(f.refresh_token),
            stored_at: Some(f.stored_at),
            signed_in_at: f.signed_in_at,
        }))
    }

    async fn replace(&self, expected: &Secret, next: &Secret) -> Result<bool, TokenStoreError> {
        self.locked(|| {
            let Some(current) = self.read()? else {
                return Ok(false);
            };
            if current.refresh_token != expected.expose() {
                return Ok(false);
            }
            self.write(&TokenFile {
                refresh_token: next.expose().to_string(),
                stored_at: Utc::now(),
                signed_in_at: current.signed_in_at,
            })?;
            Ok(true)
        })
    }

    async fn sign_in(&self, token: &Secret) -> Result<(), TokenStoreError> {
        self.locked(|| {
            let now = Utc::now();
            self.write(&TokenFile {
                refresh_token: token.expose().to_string(),
                stored_at: now,
                signed_in_at: Some(now),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_store_replaces_only_the_token_it_was_given() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = FileTokenStore::in_dir(dir.path());
        assert!(store.load().await.expect("readable").is_none());
        assert!(
            !store
                .replace(&Secret::new("a"), &Secret::new("b"))
                .await
                .expect("writable"),
            "nothing stored: nothing to replace"
        );
        store.sign_in(&Secret::new("a")).await.expect("stored");
        assert!(
            store
                .replace(&Secret::new("a"), &Secret::new("b"))
                .await
                .expect("ok")
        );
        assert!(
            !store
                .replace(&Secret::new("a"), &Secret::new("c"))
                .await
                .expect("ok"),
            "a process that started from a is behind b"
        );
        let held = store.load().await.expect("readable").expect("a token");
        assert_eq!(held.token.expose(), "b");
        assert!(held.signed_in_at.is_some() && held.stored_at >= held.signed_in_at);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn only_the_owner_can_read_the_token_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = FileTokenStore::in_dir(dir.path());
        store.sign_in(&Secret::new("a")).await.expect("stored");
        let mode = std::fs::metadata(store.path())
            .expect("the file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

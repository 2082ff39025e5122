//! Refresh tokens: every redemption hands out a new one; the redeemed one stays valid (Entra's
//! documented behaviour) or stops working (the `single-use` setting); each lapses 90 days after
//! it was issued; an admin's "revoke sessions" or a password change ends them.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::jwt::ClientProof;
use super::{AadError, SignIn, TokenRequest, aad_error, invalid_grant};
use crate::clock::{pc_timestamp, rfc3339};
use crate::config::RefreshRotation;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshState {
    Active,
    /// Redeemed while rotation was single-use.
    Superseded,
    Revoked,
}

/// What a refresh token carries on from the sign-in it came from.
#[derive(Debug, Clone)]
pub struct Session {
    pub client_id: String,
    pub username: String,
    pub amr: Vec<String>,
    /// Issued to a client that presented no credential (the device code flow of a public
    /// client): it must be redeemed without one, and a password change revokes it.
    pub public_client: bool,
    /// The OpenID scopes of the sign-in (`openid`, `offline_access`…), carried to each new token.
    pub scopes: Vec<String>,
    /// The resource last asked for, used when a redemption names none.
    pub resource: String,
}

#[derive(Debug, Clone)]
pub struct RefreshGrant {
    /// Issue order, for the inspection list.
    seq: u64,
    fingerprint: String,
    pub session: Session,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_redeemed_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub state: RefreshState,
}

#[derive(Debug, Default)]
pub struct RefreshTokens {
    by_token: HashMap<String, RefreshGrant>,
    next_seq: u64,
}

/// First 16 hex digits of the token's SHA-256: enough to tell tokens apart in a listing without
/// showing a usable token.
pub fn fingerprint(token: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Entra writes the inactivity period as .NET's `d.hh:mm:ss`.
fn dotnet_span(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    format!(
        "{}.{:02}:{:02}:{:02}",
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

impl RefreshTokens {
    pub fn clear(&mut self) {
        self.by_token.clear();
    }

    pub fn insert(
        &mut self,
        token: &str,
        session: Session,
        now: DateTime<Utc>,
        lifetime: chrono::Duration,
    ) {
        self.next_seq += 1;
        self.by_token.insert(
            token.to_string(),
            RefreshGrant {
                seq: self.next_seq,
                fingerprint: fingerprint(token),
                session,
                issued_at: now,
                expires_at: now + lifetime,
                last_redeemed_at: None,
                revoked_at: None,
                state: RefreshState::Active,
            },
        );
    }

    /// Revokes a user's refresh tokens (only public-client ones when `public_only`); returns
    /// how many were still usable.
    pub fn revoke_user(&mut self, username: &str, public_only: bool, now: DateTime<Utc>) -> usize {
        let mut revoked = 0;
        for g in self.by_token.values_mut() {
            if g.session.username.eq_ignore_ascii_case(username)
                && (g.session.public_client || !public_only)
                && g.state != RefreshState::Revoked
            {
                if g.state == RefreshState::Active && g.expires_at > now {
                    revoked += 1;
                }
                g.state = RefreshState::Revoked;
                g.revoked_at = Some(now);
            }
        }
        revoked
    }

    /// Every refresh token ever issued, oldest first, without the tokens themselves.
    pub fn list(&self, now: DateTime<Utc>) -> Vec<Value> {
        let mut all: Vec<&RefreshGrant> = self.by_token.values().collect();
        all.sort_by_key(|g| g.seq);
        all.into_iter()
            .map(|g| {
                let state = match g.state {
                    RefreshState::Revoked => "revoked",
                    RefreshState::Superseded => "superseded",
                    RefreshState::Active if g.expires_at <= now => "expired",
                    RefreshState::Active => "active",
                };
                json!({
                    "fingerprint": g.fingerprint,
                    "username": g.session.username,
                    "client_id": g.session.client_id,
                    "public_client": g.session.public_client,
                    "issued_at": rfc3339(g.issued_at),
                    "expires_at": rfc3339(g.expires_at),
                    "last_redeemed_at": g.last_redeemed_at.map(rfc3339),
                    "state": state,
                })
            })
            .collect()
    }
}

/// `grant_type=refresh_token`, on either endpoint.
pub fn redeem(req: &TokenRequest<'_>) -> Result<Response, AadError> {
    let app = req.app;
    let client = req.client()?;
    let presented = req.required("refresh_token")?;
    let now = app.clock.now();
    let rotation = app.entra_settings().refresh_rotation;
    let (session, role, audience) = {
        let mut tokens = app.tokens();
        let Some(grant) = tokens.refresh.by_token.get_mut(presented) else {
            return Err(invalid_grant(
                70000,
                "The provided grant is invalid or malformed: the refresh token is not one the directory issued.",
            ));
        };
        if grant.session.client_id != client.id {
            return Err(invalid_grant(
                70000,
                "The provided grant is invalid or malformed: the refresh token was issued to a different client.",
            ));
        }
        match (grant.session.public_client, client.proof) {
            (true, ClientProof::Secret | ClientProof::Certificate) => {
                return Err(aad_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    700025,
                    "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
                ));
            }
            (false, ClientProof::None) => {
                return Err(super::client_auth::missing_credential(
                    StatusCode::UNAUTHORIZED,
                ));
            }
            _ => {}
        }
        match grant.state {
            RefreshState::Revoked => {
                return Err(invalid_grant(
                    50173,
                    &format!(
                        "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '{}' and the TokensValidFrom date (before which tokens are not valid) for this user is '{}'.",
                        pc_timestamp(grant.issued_at),
                        pc_timestamp(grant.revoked_at.unwrap_or(now)),
                    ),
                ));
            }
            RefreshState::Superseded => {
                return Err(invalid_grant(
                    70000,
                    "The provided grant is invalid or malformed: the refresh token has already been redeemed, and each one may be redeemed once.",
                ));
            }
            RefreshState::Active if grant.expires_at <= now => {
                return Err(invalid_grant(
                    700082,
                    &format!(
                        "The refresh token has expired due to inactivity. The token was issued on {} and was inactive for {}.",
                        pc_timestamp(grant.issued_at),
                        dotnet_span(grant.expires_at - grant.issued_at),
                    ),
                ));
            }
            RefreshState::Active => {}
        }
        let role = app.user_role(&grant.session.username)?;
        // Refresh tokens are multi-resource: the redemption may name any resource of the
        // tenant. Checked before the token is marked redeemed, so a bad request spends nothing.
        let audience = req.audience(Some(&grant.session.resource))?;
        grant.last_redeemed_at = Some(now);
        if rotation == RefreshRotation::SingleUse {
            grant.state = RefreshState::Superseded;
        }
        (grant.session.clone(), role, audience)
    };
    Ok(req.user_tokens(
        &audience,
        SignIn {
            client: &client,
            username: &session.username,
            role,
            amr: session.amr,
            scopes: session.scopes,
            nonce: None,
            renewal: true,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inactivity_reads_as_days_and_time() {
        assert_eq!(dotnet_span(chrono::Duration::days(90)), "90.00:00:00");
        assert_eq!(
            dotnet_span(chrono::Duration::seconds(86_400 + 3661)),
            "1.01:01:01"
        );
    }

    #[test]
    fn fingerprints_are_sixteen_hex_digits() {
        let f = fingerprint("sandbox.abc");
        assert_eq!(f.len(), 16);
        assert!(f.chars().all(|c| c.is_ascii_hexdigit()));
    }
}

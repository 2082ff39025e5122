//! The authorize endpoint (`GET /{tenant}/oauth2/v2.0/authorize`, and v1's
//! `/{tenant}/oauth2/authorize`) and the authorization code it hands back. The sandbox has no
//! sign-in page: the user named by `login_hint` (the Referral Admin by default) signs in with
//! password and second factor at once, and the browser is sent straight back with a code.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use url::{Host, Url};

use super::{
    AadError, SignIn, TokenRequest, Version, invalid_grant, missing_parameter, random_token,
    refusal, split_scope,
};
use crate::app::App;
use crate::config::{ADMIN_USER, TENANT_ID};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChallengeMethod {
    Plain,
    S256,
}

#[derive(Debug, Clone)]
pub struct AuthCode {
    client_id: String,
    redirect_uri: String,
    challenge: Option<(String, ChallengeMethod)>,
    resource: Option<String>,
    scopes: Vec<String>,
    username: String,
    nonce: Option<String>,
    expires_at: DateTime<Utc>,
    redeemed: bool,
}

/// Entra accepts any port on a loopback redirect URI (RFC 8252 §7.3), so a desktop client may
/// listen wherever it can.
fn loopback(uri: &str) -> bool {
    let Ok(u) = Url::parse(uri) else {
        return false;
    };
    u.scheme() == "http"
        && u.fragment().is_none()
        && u.username().is_empty()
        && match u.host() {
            Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

fn redirect(to: &str, params: &[(&str, String)]) -> Response {
    let Ok(mut url) = Url::parse(to) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut resp = StatusCode::FOUND.into_response();
    resp.headers_mut().insert(header::LOCATION, location);
    resp
}

/// The authorize request's query parameters; an empty one counts as absent.
struct Query(HashMap<String, String>);

impl Query {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The authorize endpoint, v1 (`/{tenant}/oauth2/authorize`) and v2
/// (`/{tenant}/oauth2/v2.0/authorize`). Errors go back through the redirect URI once that is
/// known to be the client's, as the protocol says; before, they are answered to the browser.
pub async fn authorize(
    State(app): State<App>,
    Path(_tenant): Path<String>,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    let q = Query(
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
    );
    let client_id = q.get("client_id").unwrap_or("");
    if let Err(e) = app.registered_client(client_id) {
        return e.into_response();
    }
    let redirect_uri = q.get("redirect_uri").unwrap_or("");
    if !loopback(redirect_uri) {
        return refusal(
            "invalid_request",
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. The sandbox's app accepts loopback addresses only: http://localhost, http://127.0.0.1 or http://[::1], any port and path."
            ),
        )
        .into_response();
    }
    let mut params = match new_code(&app, Version::of(&uri), &q, client_id, redirect_uri) {
        Ok(code) => vec![("code", code)],
        Err(e) => vec![
            ("error", e.error.to_string()),
            ("error_description", e.full_description()),
            ("error_uri", e.error_uri()),
        ],
    };
    if let Some(s) = q.get("state") {
        params.push(("state", s.to_string()));
    }
    redirect(redirect_uri, &params)
}

/// Checks an authorize request from a known client and redirect URI, and stores the code it
/// is answered with.
fn new_code(
    app: &App,
    version: Version,
    q: &Query,
    client_id: &str,
    redirect_uri: &str,
) -> Result<String, AadError> {
    match q.get("response_type") {
        Some("code") => {}
        other => {
            return Err(refusal(
                "unsupported_response_type",
                700054,
                &format!(
                    "response_type '{}' is not supported by the sandbox; use 'code'.",
                    other.unwrap_or("")
                ),
            ));
        }
    }
    let (resource, scopes) = match version {
        Version::V1 => {
            let resource = q.get("resource");
            if let Some(r) = resource {
                app.check_resource(r)?;
            }
            (
                resource.map(str::to_string),
                split_scope(q.get("scope").unwrap_or("")).1,
            )
        }
        Version::V2 => {
            let scope = q.get("scope").ok_or_else(|| missing_parameter("scope"))?;
            let (resource, scopes) = app.scope_resource(scope)?;
            (Some(resource), scopes)
        }
    };
    let challenge = match (q.get("code_challenge"), q.get("code_challenge_method")) {
        (None, None) => None,
        (None, Some(_)) => return Err(missing_parameter("code_challenge")),
        (Some(c), method) => {
            let method = match method {
                None | Some("plain") => ChallengeMethod::Plain,
                Some("S256") => ChallengeMethod::S256,
                Some(other) => {
                    return Err(refusal(
                        "invalid_request",
                        90023,
                        &format!(
                            "The code_challenge_method '{other}' is not supported; use 'S256' or 'plain'."
                        ),
                    ));
                }
            };
            Some((c.to_string(), method))
        }
    };
    let login_hint = q.get("login_hint").unwrap_or(ADMIN_USER);
    let Some(user) = app.user(login_hint) else {
        return Err(refusal(
            "access_denied",
            50034,
            &format!("The user account {login_hint} does not exist in the {TENANT_ID} directory."),
        ));
    };
    let code = random_token();
    let lifetime = chrono::Duration::from_std(app.config.authorization_code_lifetime)
        .unwrap_or(chrono::Duration::minutes(10));
    app.tokens().codes.insert(
        code.clone(),
        AuthCode {
            client_id: client_id.to_string(),
            redirect_uri: redirect_uri.to_string(),
            challenge,
            resource,
            scopes,
            username: user.username.clone(),
            nonce: q.get("nonce").map(str::to_string),
            expires_at: app.clock.now() + lifetime,
            redeemed: false,
        },
    );
    Ok(code)
}

fn verifier_matches(challenge: &str, method: ChallengeMethod, verifier: &str) -> bool {
    match method {
        ChallengeMethod::Plain => verifier == challenge,
        ChallengeMethod::S256 => {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()) == challenge
        }
    }
}

/// `grant_type=authorization_code`: the client, its redirect URI and its PKCE verifier must be
/// the ones the code was issued for.
pub fn redeem(req: &TokenRequest<'_>) -> Result<Response, AadError> {
    let app = req.app;
    let client = req.client()?;
    client.require_credential()?;
    let presented = req.required("code")?;
    let now = app.clock.now();
    let (code, role, audience) = {
        let mut tokens = app.tokens();
        let code = tokens.codes.get_mut(presented);
        let code = match code {
            Some(c) if c.client_id == client.id => c,
            _ => {
                return Err(invalid_grant(
                    70000,
                    "The provided authorization code is invalid or malformed, or was issued to another client.",
                ));
            }
        };
        if code.redeemed {
            return Err(invalid_grant(
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
            ));
        }
        if code.expires_at <= now {
            return Err(invalid_grant(
                70008,
                "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
            ));
        }
        let redirect_uri = req.field("redirect_uri");
        if redirect_uri != code.redirect_uri {
            return Err(AadError {
                codes: vec![70002, 50011],
                ..invalid_grant(
                    70002,
                    &format!(
                        "Error validating credentials. AADSTS50011: The reply address '{redirect_uri}' does not match the reply address '{}' provided when requesting Authorization code.",
                        code.redirect_uri
                    ),
                )
            });
        }
        if let Some((challenge, method)) = &code.challenge
            && !verifier_matches(challenge, *method, req.field("code_verifier"))
        {
            return Err(invalid_grant(
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            ));
        }
        let role = app.user_role(&code.username)?;
        let audience = req.audience(code.resource.as_deref())?;
        code.redeemed = true;
        (code.clone(), role, audience)
    };
    Ok(req.user_tokens(
        &audience,
        SignIn {
            client: &client,
            username: &code.username,
            role,
            amr: vec!["pwd".into(), "mfa".into()],
            scopes: code.scopes.clone(),
            nonce: code.nonce.as_deref(),
            renewal: false,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_on_any_port_are_accepted() {
        for ok in [
            "http://localhost",
            "http://localhost:53117/callback",
            "http://127.0.0.1:8400/",
            "http://[::1]:9000/cb?x=1",
        ] {
            assert!(loopback(ok), "{ok}");
        }
        for refused in [
            "https://localhost/cb",
            "http://example.com/cb",
            "http://127.0.0.2/cb",
            "http://localhost.example.com/",
            "http://localhost/cb#frag",
            "not a url",
        ] {
            assert!(!loopback(refused), "{refused}");
        }
    }

    #[test]
    fn s256_compares_the_hash_of_the_verifier() {
        let verifier = "dBjftJeZ4CVP-mJ0kz2Vx0ceDj3q4VgHlv9PK0zjFl4";
        let challenge = "ELbIyO9fLsxiJRe9B4DljPL5O_Ou9oCXcIadJQHQOdI";
        assert!(verifier_matches(challenge, ChallengeMethod::S256, verifier));
        assert!(!verifier_matches(challenge, ChallengeMethod::S256, "other"));
        assert!(verifier_matches("abc", ChallengeMethod::Plain, "abc"));
    }
}

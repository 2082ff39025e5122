//! `cosell-sandbox`: one HTTP server on loopback that stands in for the services the co-sell
//! connector talks to — Entra ID's token endpoint, Partner Center's Referrals and Webhooks APIs
//! (with signed webhook delivery) — each under its real path, so a client only swaps the base URL.
//! A control API under `/_sandbox/` lets tests and demos play Microsoft, move the clock, inject
//! faults and read per-route request counts.
//!
//! In tests, start it in-process on a random port:
//! ```no_run
//! # async fn demo() -> Result<(), cosell_sandbox::SandboxError> {
//! let sandbox = cosell_sandbox::Sandbox::start(Default::default()).await?;
//! let referrals = sandbox.url("/v1.0/engagements/referrals");
//! # Ok(()) }
//! ```

mod app;
pub mod clock;
pub mod config;
mod control;
pub mod dataverse;
mod delivery;
mod entra;
mod faults;
mod partner_center;
pub mod salesforce;
mod server;
pub mod signing;

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::SandboxConfig;
pub use faults::{FaultRule, WebhookFault, WebhookFaultKind};
pub use signing::{Signer, SigningError};

/// File name of the signing certificate under `/cert/`.
pub const CERTIFICATE_NAME: &str = "pcnotifications-dispatch.cer";

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error("cannot build the webhook HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("--signing-key and --signing-cert must be given together")]
    HalfSigningPair,
}

/// A running sandbox. Dropping it stops the server and its webhook deliveries.
pub struct Sandbox {
    base_url: String,
    addr: SocketAddr,
    signer_cert_pem: String,
    signer_key_pem: String,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sandbox {
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let signer = match (&config.signing_key_file, &config.signing_cert_file) {
            (Some(k), Some(c)) => Signer::load(k, c)?,
            (None, None) => Signer::generate(&config.signing_cert_organization)?,
            _ => return Err(SandboxError::HalfSigningPair),
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port))
            .await
            .map_err(|source| SandboxError::Bind {
                port: config.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            port: config.port,
            source,
        })?;
        let base_url = format!("http://{addr}");
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (cert_pem, key_pem) = (signer.cert_pem().to_string(), signer.key_pem().to_string());
        let app = app::App::new(
            config,
            signer,
            base_url.clone(),
            events_tx,
            shutdown_rx.clone(),
        )?;
        let router = server::router(app.clone());
        let tasks = vec![
            tokio::spawn(delivery::dispatch(app, events_rx)),
            tokio::spawn(server::serve(listener, router, shutdown_rx)),
        ];
        Ok(Sandbox {
            base_url,
            addr,
            signer_cert_pem: cert_pem,
            signer_key_pem: key_pem,
            shutdown: shutdown_tx,
            tasks,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Where deliveries say their signing certificate is (`X-MS-Certificate-Url`).
    pub fn certificate_url(&self) -> String {
        self.url(&format!("/cert/{CERTIFICATE_NAME}"))
    }

    pub fn certificate_pem(&self) -> &str {
        &self.signer_cert_pem
    }

    pub fn signing_key_pem(&self) -> &str {
        &self.signer_key_pem
    }

    /// Stops serving and waits for the server task to end.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

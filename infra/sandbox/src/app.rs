//! The sandbox's shared state: one value behind an `Arc`, handed to every route.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::config::{PARTNER_CENTER_AUDIENCE, REFERRALS_AUDIENCE, SandboxConfig};
use crate::delivery::{Deliveries, Event};
use crate::entra::TokenStore;
use crate::faults::Faults;
use crate::partner_center::PartnerCenter;
use crate::signing::Signer;

#[derive(Clone)]
pub struct App(Arc<Inner>);

pub struct Inner {
    pub config: SandboxConfig,
    pub clock: Clock,
    pub signer: Signer,
    /// `http://127.0.0.1:PORT`, known once the listener is bound.
    pub base_url: String,
    pub http: reqwest::Client,
    pub events: mpsc::UnboundedSender<Event>,
    pub shutdown: watch::Receiver<bool>,
    tokens: Mutex<TokenStore>,
    partner_center: Mutex<PartnerCenter>,
    faults: Mutex<Faults>,
    stats: Mutex<BTreeMap<String, u64>>,
    deliveries: Mutex<Deliveries>,
    audiences: Mutex<Vec<String>>,
    dataverse: Mutex<crate::dataverse::State>,
    salesforce: Mutex<crate::salesforce::State>,
}

impl Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A poisoned lock only means another request panicked mid-update; the sandbox keeps serving
/// rather than failing every later request of a test.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl App {
    pub fn new(
        config: SandboxConfig,
        signer: Signer,
        base_url: String,
        events: mpsc::UnboundedSender<Event>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<App, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let dataverse = crate::dataverse::State::new(&config.dataverse);
        let salesforce = crate::salesforce::State::new(&config.salesforce);
        let tokens = TokenStore::new(&config);
        Ok(App(Arc::new(Inner {
            dataverse: Mutex::new(dataverse),
            salesforce: Mutex::new(salesforce),
            config,
            clock: Clock::default(),
            signer,
            base_url: base_url.clone(),
            http,
            events,
            shutdown,
            tokens: Mutex::new(tokens),
            partner_center: Mutex::default(),
            faults: Mutex::default(),
            stats: Mutex::default(),
            deliveries: Mutex::default(),
            // The sandbox is also the Dataverse organisation: tokens for `{base_url}/.default`.
            audiences: Mutex::new(vec![
                REFERRALS_AUDIENCE.to_string(),
                PARTNER_CENTER_AUDIENCE.to_string(),
                base_url.clone(),
            ]),
        })))
    }

    pub fn tokens(&self) -> MutexGuard<'_, TokenStore> {
        lock(&self.tokens)
    }

    pub fn partner_center(&self) -> MutexGuard<'_, PartnerCenter> {
        lock(&self.partner_center)
    }

    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    pub fn stats(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        lock(&self.stats)
    }

    pub fn deliveries(&self) -> MutexGuard<'_, Deliveries> {
        lock(&self.deliveries)
    }

    pub fn audiences(&self) -> MutexGuard<'_, Vec<String>> {
        lock(&self.audiences)
    }

    pub fn dataverse(&self) -> MutexGuard<'_, crate::dataverse::State> {
        lock(&self.dataverse)
    }

    pub fn salesforce(&self) -> MutexGuard<'_, crate::salesforce::State> {
        lock(&self.salesforce)
    }

    pub fn emit(&self, event: Event) {
        // The receiver lives as long as the server; after shutdown nobody is listening anyway.
        let _ = self.events.send(event);
    }

    /// Back to the state of a fresh start (keys and certificate stay, so receivers that cached
    /// the certificate keep verifying).
    pub fn reset(&self) {
        self.tokens().clear();
        *self.partner_center() = PartnerCenter::default();
        *self.faults() = Faults::default();
        self.stats().clear();
        *self.deliveries() = Deliveries::default();
        *self.dataverse() = crate::dataverse::State::new(&self.config.dataverse);
        *self.salesforce() = crate::salesforce::State::new(&self.config.salesforce);
        self.clock.reset();
    }
}

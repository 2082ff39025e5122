//! Builds the adapters a configuration names. The function binaries (and the local runner) call
//! this once at start; everything after works through the ports.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::HeaderMap;

use std::collections::BTreeMap;

use crate::config::{Config, ConfigError, CrmConfig, Env};
use crate::crm::Crm;
use crate::crm::dataverse::DataverseCrm;
use crate::crm::dataverse::DataverseSchema;
use crate::crm::salesforce::SalesforceCrm;
use crate::crm::salesforce::SalesforceSchema;
use crate::crm::schema::CrmSchema;
use crate::ingress::SignatureCheck;
use crate::partner_center::PartnerCenter;
use crate::partner_center::http::PartnerCenterClient;
use crate::partner_center::refresh_store::{
    FileTokenStore, RefreshTokenStore, SecretsManagerTokenStore,
};
use crate::partner_center::signature::{SignatureError, SignatureVerifier};
use crate::queue::sqs::SqsQueue;
use crate::queue::{Queue, QueueConsumer};
use crate::secrets::{self, SECRET_ARN_SETTING, SecretsError};
use crate::store::Store;
use crate::store::dynamodb::{DynamoStore, DynamoStoreConfig};

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("{setting}: {reason}")]
    Setting {
        setting: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

fn setting(setting: &'static str) -> impl FnOnce(String) -> WiringError {
    move |reason| WiringError::Setting { setting, reason }
}

#[async_trait]
impl SignatureCheck for SignatureVerifier {
    async fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        self.verify(headers, body).await
    }
}

/// The AWS SDK configuration: the Lambda's own credentials and region, or an emulator's
/// endpoint when `AWS_ENDPOINT_URL` is set.
pub async fn aws_sdk_config(config: &Config) -> aws_config::SdkConfig {
    sdk_config_for(&config.aws.region, config.aws.endpoint_url.as_deref()).await
}

async fn sdk_config_for(region: &str, endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()));
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// What a function does at start: its settings from the environment, the secret settings from
/// the Secrets Manager secret `COSELL_SECRET_ARN` names (read once, kept for the process), and
/// the AWS SDK configuration.
pub async fn load_from_process_env() -> Result<(Config, aws_config::SdkConfig), WiringError> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let sdk = sdk_config_from(&env).await;
    let config = load(env, &sdk).await?;
    Ok((config, sdk))
}

/// The AWS SDK configuration for settings not yet validated (`AWS_REGION`, default
/// `us-east-1`; `AWS_ENDPOINT_URL`), to read the secret before the rest.
pub async fn sdk_config_from(env: &BTreeMap<String, String>) -> aws_config::SdkConfig {
    let region = env
        .get("AWS_REGION")
        .map(String::as_str)
        .filter(|r| !r.trim().is_empty())
        .unwrap_or("us-east-1");
    sdk_config_for(region, env.get("AWS_ENDPOINT_URL").map(String::as_str)).await
}

/// The configuration from `env`, with the secret settings of `COSELL_SECRET_ARN` (when set)
/// read through `sdk`. A secret setting given both ways is taken from the secret.
pub async fn load(
    mut env: BTreeMap<String, String>,
    sdk: &aws_config::SdkConfig,
) -> Result<Config, WiringError> {
    if let Some(arn) = env
        .get(SECRET_ARN_SETTING)
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
    {
        let client = aws_sdk_secretsmanager::Client::new(sdk);
        env.extend(secrets::load(&client, &arn).await?);
    }
    Ok(Config::from_env(&Env(&|name| env.get(name).cloned()))?)
}

/// The Partner Center client, keeping rotated refresh tokens in `tokens` (see
/// [`token_store`]).
pub fn partner_center(
    config: &Config,
    tokens: Option<Arc<dyn RefreshTokenStore>>,
) -> Result<Arc<dyn PartnerCenter>, WiringError> {
    Ok(Arc::new(partner_center_client(config, tokens)?))
}

pub fn partner_center_client(
    config: &Config,
    tokens: Option<Arc<dyn RefreshTokenStore>>,
) -> Result<PartnerCenterClient, WiringError> {
    PartnerCenterClient::with_token_store(
        config.partner_center.clone(),
        config.partner_center_auth.clone(),
        tokens,
    )
    .map_err(|e| setting("COSELL_PC_*")(e.to_string()))
}

/// Where the Referral admin's refresh token is kept between processes: the secret
/// `COSELL_SECRET_ARN` names, else the data directory of `cosell local` when there is one.
pub fn token_store(
    secret_arn: Option<&str>,
    sdk: &aws_config::SdkConfig,
    data_dir: Option<&Path>,
) -> Option<Arc<dyn RefreshTokenStore>> {
    match (
        secret_arn.map(str::trim).filter(|a| !a.is_empty()),
        data_dir,
    ) {
        (Some(arn), _) => Some(Arc::new(SecretsManagerTokenStore::new(
            aws_sdk_secretsmanager::Client::new(sdk),
            arn,
        ))),
        (None, Some(dir)) => Some(Arc::new(FileTokenStore::in_dir(dir))),
        (None, None) => None,
    }
}

pub fn crm(config: &Config) -> Result<Arc<dyn Crm>, WiringError> {
    Ok(match &config.crm {
        CrmConfig::Dynamics(c) => Arc::new(
            DataverseCrm::new((**c).clone())
                .map_err(|e| setting("COSELL_DATAVERSE_*")(e.to_string()))?,
        ),
        CrmConfig::Salesforce(c) => Arc::new(
            SalesforceCrm::new((**c).clone())
                .map_err(|e| setting("COSELL_SALESFORCE_*")(e.to_string()))?,
        ),
    })
}

/// The metadata side of the configured CRM, for `cosell crm setup` and `cosell doctor`.
pub fn crm_schema(config: &Config) -> Result<Arc<dyn CrmSchema>, WiringError> {
    Ok(match &config.crm {
        CrmConfig::Dynamics(c) => Arc::new(
            DataverseSchema::new((**c).clone())
                .map_err(|e| setting("COSELL_DATAVERSE_*")(e.to_string()))?,
        ),
        CrmConfig::Salesforce(c) => Arc::new(
            SalesforceSchema::new((**c).clone())
                .map_err(|e| setting("COSELL_SALESFORCE_*")(e.to_string()))?,
        ),
    })
}

pub fn verifier(config: &Config) -> Result<Arc<SignatureVerifier>, WiringError> {
    SignatureVerifier::new(config.signature.clone())
        .map(Arc::new)
        .map_err(|e| setting("COSELL_WEBHOOK_CERT_PREFIXES")(e.to_string()))
}

pub fn store(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Arc<dyn Store>, WiringError> {
    let table_name = config.aws.table_name.clone().ok_or_else(|| {
        setting("COSELL_TABLE_NAME")("is required (the StateTableName output of the stack)".into())
    })?;
    Ok(Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        DynamoStoreConfig {
            table_name,
            retention: config.retention,
        },
    )))
}

pub fn queue(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Arc<dyn Queue>, WiringError> {
    Ok(Arc::new(sqs_queue(config, sdk)?))
}

/// The sync queue as the processor settles its messages (in AWS only to delay a failed one by
/// its `Retry-After`: the event source mapping receives and deletes).
pub fn queue_consumer(
    config: &Config,
    sdk: &aws_config::SdkConfig,
) -> Result<Arc<dyn QueueConsumer>, WiringError> {
    Ok(Arc::new(sqs_queue(config, sdk)?))
}

fn sqs_queue(config: &Config, sdk: &aws_config::SdkConfig) -> Result<SqsQueue, WiringError> {
    let url = config.aws.queue_url.clone().ok_or_else(|| {
        setting("COSELL_QUEUE_URL")("is required (the SyncQueueUrl output of the stack)".into())
    })?;
    Ok(SqsQueue::new(aws_sdk_sqs::Client::new(sdk), url))
}

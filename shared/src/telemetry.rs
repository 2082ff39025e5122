//! Logging set up once per process. In Lambda: JSON lines without a timestamp or target
//! (CloudWatch adds the time), filtered by `RUST_LOG` (default `info`).

pub fn init_for_lambda() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second initialisation (tests, a warm runtime) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .without_time()
        .with_target(false)
        .try_init();
}

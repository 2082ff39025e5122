//! The router and the accept loop. The loop is hand-rolled (rather than `axum::serve`) so a
//! fault can close a connection after the request committed but before any response is written.

use std::convert::Infallible;

use axum::Router;
use axum::extract::Request;
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::app::App;
use crate::faults::{self, ConnectionKill};
use crate::partner_center::{control as pc_control, referrals, webhooks};
use crate::{control, entra};

/// Every API answer carries the sandbox's own time as its `Date`, as a real service's `Date` is
/// the clock its records are stamped by (hyper would send the wall clock, which the control
/// API's clock advance leaves behind).
async fn server_date(
    axum::extract::State(app): axum::extract::State<App>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(req).await;
    let date = app
        .clock
        .now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    if let Ok(value) = axum::http::HeaderValue::from_str(&date) {
        response
            .headers_mut()
            .insert(axum::http::header::DATE, value);
    }
    response
}

pub fn router(app: App) -> Router {
    let api = Router::new()
        .route("/{tenant}/oauth2/token", post(entra::token))
        .route("/{tenant}/oauth2/v2.0/token", post(entra::token))
        .route("/{tenant}/oauth2/authorize", get(entra::authorize))
        .route("/{tenant}/oauth2/v2.0/authorize", get(entra::authorize))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(entra::devicecode))
        .route(
            "/v1.0/engagements/referrals",
            get(referrals::list).post(referrals::create),
        )
        .route(
            "/v1.0/engagements/referrals/{id}",
            get(referrals::get)
                .put(referrals::put)
                .patch(referrals::patch),
        )
        .route(
            "/webhooks/v1/registration",
            get(webhooks::get).post(webhooks::post).put(webhooks::put),
        )
        .route("/webhooks/v1/registration/events", get(webhooks::events))
        .route(
            "/webhooks/v1/registration/validationEvents",
            post(webhooks::validation_event),
        )
        .route(
            "/webhooks/v1/registration/validationEvents/{correlation_id}",
            get(webhooks::validation_status),
        )
        .merge(crate::dataverse::routes())
        .merge(crate::salesforce::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            faults::middleware,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            server_date,
        ));
    let control = Router::new()
        .route("/_sandbox/reset", post(control::reset))
        .route("/_sandbox/clock", get(control::clock))
        .route("/_sandbox/clock/advance", post(control::advance))
        .route(
            "/_sandbox/faults",
            get(control::faults)
                .post(control::add_faults)
                .delete(control::clear_faults),
        )
        .route(
            "/_sandbox/faults/webhooks",
            post(control::add_webhook_fault),
        )
        .route(
            "/_sandbox/stats",
            get(control::stats).delete(control::clear_stats),
        )
        .route("/_sandbox/webhooks/deliveries", get(control::deliveries))
        .route("/_sandbox/identities/password", post(control::set_password))
        .route(
            "/_sandbox/identities/expire-tokens",
            post(control::expire_tokens),
        )
        .route(
            "/_sandbox/identities/certificate",
            post(entra::control::add_certificate),
        )
        .route(
            "/_sandbox/entra/settings",
            get(entra::control::settings).post(entra::control::set_settings),
        )
        .route(
            "/_sandbox/entra/device/approve",
            post(entra::control::approve_device),
        )
        .route(
            "/_sandbox/entra/device/decline",
            post(entra::control::decline_device),
        )
        .route("/_sandbox/entra/revoke", post(entra::control::revoke))
        .route(
            "/_sandbox/entra/refresh-tokens",
            get(entra::control::refresh_tokens),
        )
        .route(
            "/_sandbox/partner-center/incoming",
            post(pc_control::incoming),
        )
        .route("/_sandbox/partner-center/referrals", get(pc_control::all))
        .route(
            "/_sandbox/partner-center/referrals/{id}",
            axum::routing::patch(pc_control::change),
        )
        .route(
            "/_sandbox/partner-center/referrals/{id}/related",
            post(pc_control::create_related).patch(pc_control::change_related),
        )
        .route(
            "/_sandbox/partner-center/referrals/{id}/related/accept",
            post(pc_control::accept_related),
        )
        .route(
            "/_sandbox/partner-center/referrals/{id}/related/decline",
            post(pc_control::decline_related),
        )
        .route(
            "/_sandbox/partner-center/settings",
            get(pc_control::settings).put(pc_control::set_settings),
        )
        .route("/cert/{name}", get(control::certificate))
        .merge(crate::dataverse::control_routes())
        .merge(crate::salesforce::control_routes());
    api.merge(control).with_state(app)
}

/// Serves until `shutdown` turns true.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // A failed accept (e.g. too many open files) affects one client, not the server.
                Err(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        let router = router.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let kill = ConnectionKill::default();
            let notified = kill.0.clone();
            let service =
                hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(kill.clone());
                    let router = router.clone();
                    async move {
                        Ok::<_, Infallible>(
                            router
                                .oneshot(req.map(axum::body::Body::new))
                                .await
                                .unwrap_or_else(|e| match e {}),
                        )
                    }
                });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = notified.notified() => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

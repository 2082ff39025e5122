//! Webhook signature verification against real signed deliveries: the sandbox POSTs events to a
//! small receiver in the test, which keeps the headers and the raw body for the verifier.
//! Certificates for the download rules are served by a counting test server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cosell_sandbox::{Sandbox, SandboxConfig};
use cosell_shared::partner_center::signature::{
    SignatureError, SignatureVerifier, SignatureVerifierConfig,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A webhook delivery as it reached the receiver.
#[derive(Debug, Clone)]
struct Delivery {
    headers: HeaderMap,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 request: the head up to the blank line, then `Content-Length` bytes.
async fn read_request(stream: &mut TcpStream) -> Option<Delivery> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut headers = HeaderMap::new();
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
            let value = HeaderValue::from_str(value.trim()).ok()?;
            headers.append(name, value);
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(Delivery { headers, body })
}

/// The partner's webhook endpoint: answers 200 to everything and hands each delivery over.
async fn start_receiver() -> (String, mpsc::UnboundedReceiver<Delivery>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/webhooks/partner-center",
        listener.local_addr().expect("addr")
    );
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(delivery) = read_request(&mut stream).await {
                    let _ = tx.send(delivery);
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, rx)
}

/// Serves one fixed response to every request and counts the requests.
struct CertServer {
    base: String,
    requests: Arc<AtomicUsize>,
}

impl CertServer {
    async fn start(status_line: &str, extra_headers: &str, body: Vec<u8>) -> CertServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(AtomicUsize::new(0));
        let mut response = format!(
            "HTTP/1.1 {status_line}\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(&body);
        let response = Arc::new(response);
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let response = response.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    if read_request(&mut stream).await.is_some() {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.write_all(&response).await;
                    }
                });
            }
        });
        CertServer { base, requests }
    }

    async fn serving(body: Vec<u8>) -> CertServer {
        CertServer::start("200 OK", "Content-Type: application/pkix-cert\r\n", body).await
    }

    fn prefix(&self) -> String {
        format!("{}/cert/", self.base)
    }

    fn url(&self) -> String {
        format!("{}/cert/pcnotifications-dispatch.cer", self.base)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default())
        .await
        .unwrap_or_else(|e| panic!("cannot start the sandbox: {e}"))
}

/// Points the sandbox's Partner Center registration at `url`.
async fn register(sandbox: &Sandbox, url: &str, signature_in_ms_header: bool) {
    let http = reqwest::Client::new();
    let token: Value = http
        .post(sandbox.url("/common/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sandbox-client"),
            ("client_secret", "sandbox-secret"),
            ("scope", "https://api.partnercenter.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token body");
    let token = token["access_token"].as_str().expect("access token");
    let response = http
        .put(sandbox.url("/webhooks/v1/registration"))
        .bearer_auth(token)
        .json(&json!({
            "WebhookUrl": url,
            "WebhookEvents": ["referral-created"],
            "SignatureTokenToMsSignatureHeader": signature_in_ms_header,
        }))
        .send()
        .await
        .expect("registration");
    assert!(response.status().is_success(), "{}", response.status());
}

/// Deliveries of `referral-created` events to a receiver registered with the sandbox.
struct Inbox {
    deliveries: mpsc::UnboundedReceiver<Delivery>,
}

impl Inbox {
    async fn open(sandbox: &Sandbox, signature_in_ms_header: bool) -> Inbox {
        let (url, deliveries) = start_receiver().await;
        register(sandbox, &url, signature_in_ms_header).await;
        Inbox { deliveries }
    }

    /// Microsoft shares a lead; its `referral-created` event is signed and delivered.
    async fn next(&mut self, sandbox: &Sandbox) -> Delivery {
        let response = reqwest::Client::new()
            .post(sandbox.url("/_sandbox/partner-center/incoming?kind=lead"))
            .json(&json!({"name": "Fabrikam lead"}))
            .send()
            .await
            .expect("incoming referral");
        assert!(response.status().is_success(), "{}", response.status());
        // A guard against a hang, not a timing assertion.
        tokio::time::timeout(Duration::from_secs(30), self.deliveries.recv())
            .await
            .expect("a delivery within 30 s")
            .expect("the receiver is running")
    }
}

fn verifier(prefixes: &[String], organization: &str) -> SignatureVerifier {
    SignatureVerifier::new(SignatureVerifierConfig {
        allowed_certificate_prefixes: prefixes.to_vec(),
        expected_organization: organization.to_string(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("verifier: {e}"))
}

/// Trusts the sandbox's certificate location, as a sandbox deployment is configured to.
fn sandbox_verifier(sandbox: &Sandbox) -> SignatureVerifier {
    verifier(&[sandbox.url("/cert/")], "Microsoft Corporation")
}

fn with_certificate_url(delivery: &Delivery, url: &str) -> HeaderMap {
    let mut headers = delivery.headers.clone();
    headers.insert(
        "x-ms-certificate-url",
        HeaderValue::from_str(url).expect("header value"),
    );
    headers
}

async fn certificate_der(sandbox: &Sandbox) -> Vec<u8> {
    reqwest::get(sandbox.certificate_url())
        .await
        .expect("certificate")
        .bytes()
        .await
        .expect("certificate body")
        .to_vec()
}

#[tokio::test]
async fn a_delivery_signed_in_the_authorization_header_verifies() {
    let sandbox = sandbox().await;
    let mut inbox = Inbox::open(&sandbox, false).await;
    let delivery = inbox.next(&sandbox).await;
    let authorization = delivery
        .headers
        .get("authorization")
        .expect("Authorization");
    assert!(
        authorization
            .to_str()
            .unwrap_or("")
            .starts_with("Signature ")
    );
    assert!(delivery.headers.get("x-ms-signature").is_none());

    let result = sandbox_verifier(&sandbox)
        .verify(&delivery.headers, &delivery.body)
        .await;
    assert_eq!(result, Ok(()));
}

#[tokio::test]
async fn a_delivery_signed_in_x_ms_signature_verifies() {
    let sandbox = sandbox().await;
    let mut inbox = Inbox::open(&sandbox, true).await;
    let delivery = inbox.next(&sandbox).await;
    assert!(delivery.headers.get("x-ms-signature").is_some());
    assert!(delivery.headers.get("authorization").is_none());

    let result = sandbox_verifier(&sandbox)
        .verify(&delivery.headers, &delivery.body)
        .await;
    assert_eq!(result, Ok(()));
}

#[tokio::test]
async fn one_changed_body_byte_is_a_bad_signature() {
    let sandbox = sandbox().await;
    let mut inbox = Inbox::open(&sandbox, false).await;
    let delivery = inbox.next(&sandbox).await;
    let verifier = sandbox_verifier(&sandbox);
    let mut body = delivery.body.clone();
    let at = body
        .iter()
        .position(|b| *b == b'r')
        .expect("a byte to change");
    body[at] = b'R';
    assert_eq!(
        verifier.verify(&delivery.headers, &body).await,
        Err(SignatureError::BadSignature)
    );
    // The genuine body still passes with the same verifier.
    assert_eq!(
        verifier.verify(&delivery.headers, &delivery.body).await,
        Ok(())
    );
}

#[tokio::test]
async fn a_certificate_url_outside_the_allowed_prefixes_is_never_downloaded() {
    let sandbox = sandbox().await;
    let mut inbox = Inbox::open(&sandbox, false).await;
    let delivery = inbox.next(&sandbox).await;
    let server = CertServer::serving(certificate_der(&sandbox).await).await;
    let verifier = verifier(
        &[sandbox.url("/cert/"), format!("{}/cert/", server.base)],
        "Microsoft Corporation",
    );
    let sandbox_port = sandbox.addr().port();
    let server_port = server
        .base
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    for url in [
        // Another name for the allowed host, another port, another scheme.
        format!("http://localhost:{server_port}/cert/pcnotifications-dispatch.cer"),
        "http://127.0.0.1:1/cert/pcnotifications-dispatch.cer".to_string(),
        format!("https://127.0.0.1:{server_port}/cert/pcnotifications-dispatch.cer"),
        format!("{}/certs/pcnotifications-dispatch.cer", server.base),
        format!("{}/cert/../evil.cer", server.base),
        format!("{}/cert/%2e%2e/evil.cer", server.base),
        format!("{}/cert/pcnotifications-dispatch.cer?x=1", server.base),
        format!("http://127.0.0.1:{sandbox_port}@127.0.0.1:{server_port}/cert/x.cer"),
        "https://evil.example/cert/pcnotifications-dispatch.cer".to_string(),
    ] {
        let result = verifier
            .verify(&with_certificate_url(&delivery, &url), &delivery.body)
            .await;
        assert!(
            matches!(result, Err(SignatureError::CertificateUrlNotAllowed { .. })),
            "{url}: {result:?}"
        );
    }
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn the_default_configuration_refuses_the_sandbox_certificate() {
    let sandbox = sandbox().await;
    let mut inbox = Inbox::open(&sandbox, false).await;
    let delivery = inbox.next(&sandbox).await;
    let verifier = SignatureVerifier::new(SignatureVerifierConfig::default()).expect("verifier");
    let result = verifier.verify(&delivery.headers, &delivery.body).await;
    assert!(
        matches!(result, Err(SignatureError::CertificateUrlNotAllowed { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_certificate_of_another_organisation_is_refused() {
    let sandbox = sandbox().await;
    let mut inbox = Inbox::open(&sandbox, false).await;
    let delivery = inbox.next(&sandbox).await;
    let verifier = verifier(&[sandbox.url("/cert/")], "Contoso Ltd");
    let result = verifier.verify(&delivery.headers, &delivery.body).await;
    let Err(SignatureError::WrongOrganization { expected, found }) = &result else {
        panic!("expected WrongOrganization, got {result:?}");
    };
    assert_eq!(expected, "Contoso Ltd");
    assert_eq!(found, "Microsoft Corporation");
    assert!(result.unwrap_err().to_string().contains("Contoso Ltd"));
}

#[tokio::test]
async fn the_certificate_is_downloaded_once_for_two_deliveries() {
    let sandbox = sandbox().await;
    let mut inbox = Inbox::open(&sandbox, false).await;
    let first = inbox.next(&sandbox).await;
    let second = inbox.next(&sandbox).await;
    assert_ne!(first.body, second.body);
    let server = CertServer::serving(certificate_der(&sandbox).await).await;
    let verifier = verifier(&[server.prefix()], "Microsoft Corporation");
    for delivery in [&first, &second] {
        let result = verifier
            .verify(
                &with_certificate_url(delivery, &server.url()),
                &delivery.body,
            )
            .await;
        assert_eq!(result, Ok(()));
    }
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn a_certificate_saved_as_pem_verifies_too() {
    let sandbox = sandbox().await;
    let mut inbox = Inbox::open(&sandbox, true).await;
    let delivery = inbox.next(&sandbox).await;
    let server = CertServer::serving(sandbox.certificate_pem().as_bytes().to_vec()).await;
    let verifier = verifier(&[server.prefix()], "Microsoft Corporation");
    let result = verifier
        .verify(
            &with_certificate_url(&delivery, &server.url()),
            &delivery.body,
        )
        .await;
    assert_eq!(result, Ok(()));
}

#[tokio::test]
async fn redirects_oversized_and_garbage_certificates_are_refused() {
    let sandbox = sandbox().await;
    let mut inbox = Inbox::open(&sandbox, false).await;
    let delivery = inbox.next(&sandbox).await;

    let redirect = CertServer::start(
        "302 Found",
        &format!("Location: {}\r\n", sandbox.certificate_url()),
        Vec::new(),
    )
    .await;
    let oversized = CertServer::serving(vec![0x30; 100 * 1024]).await;
    let garbage = CertServer::serving(b"this is not a certificate".to_vec()).await;
    let verifier = verifier(
        &[redirect.prefix(), oversized.prefix(), garbage.prefix()],
        "Microsoft Corporation",
    );
    let check = |server: &CertServer| {
        let headers = with_certificate_url(&delivery, &server.url());
        let verifier = &verifier;
        let body = delivery.body.clone();
        async move { verifier.verify(&headers, &body).await }
    };

    let result = check(&redirect).await;
    assert!(
        matches!(&result, Err(SignatureError::CertificateFetch { reason, .. }) if reason.contains("302")),
        "{result:?}"
    );
    let result = check(&oversized).await;
    assert!(
        matches!(&result, Err(SignatureError::CertificateFetch { reason, .. }) if reason.contains("larger")),
        "{result:?}"
    );
    let result = check(&garbage).await;
    assert!(
        matches!(result, Err(SignatureError::CertificateParse { .. })),
        "{result:?}"
    );
    // A failed download is not cached: the next delivery tries again.
    let result = check(&garbage).await;
    assert!(matches!(
        result,
        Err(SignatureError::CertificateParse { .. })
    ));
    assert_eq!(garbage.requests(), 2);
}

#[tokio::test]
async fn a_delivery_without_its_headers_is_refused_before_any_download() {
    let sandbox = sandbox().await;
    let mut inbox = Inbox::open(&sandbox, false).await;
    let delivery = inbox.next(&sandbox).await;
    let server = CertServer::serving(certificate_der(&sandbox).await).await;
    let verifier = verifier(&[server.prefix()], "Microsoft Corporation");
    let base = with_certificate_url(&delivery, &server.url());

    let mut no_url = base.clone();
    no_url.remove("x-ms-certificate-url");
    assert_eq!(
        verifier.verify(&no_url, &delivery.body).await,
        Err(SignatureError::MissingHeader {
            header: "X-MS-Certificate-Url"
        })
    );

    let mut no_signature = base.clone();
    no_signature.remove("authorization");
    assert!(matches!(
        verifier.verify(&no_signature, &delivery.body).await,
        Err(SignatureError::MissingHeader { .. })
    ));

    let mut bearer = base.clone();
    bearer.insert("authorization", HeaderValue::from_static("Bearer abc"));
    assert!(matches!(
        verifier.verify(&bearer, &delivery.body).await,
        Err(SignatureError::MissingHeader { .. })
    ));

    let mut other_algorithm = base.clone();
    other_algorithm.insert(
        "x-ms-signature-algorithm",
        HeaderValue::from_static("rsa-sha1"),
    );
    assert_eq!(
        verifier.verify(&other_algorithm, &delivery.body).await,
        Err(SignatureError::UnsupportedAlgorithm {
            algorithm: "rsa-sha1".into()
        })
    );
    assert_eq!(server.requests(), 0);

    assert_eq!(verifier.verify(&base, &delivery.body).await, Ok(()));
}

#[tokio::test]
async fn a_signature_from_another_key_does_not_verify() {
    let genuine = sandbox().await;
    let impostor = sandbox().await;
    let mut inbox = Inbox::open(&impostor, false).await;
    let forged = inbox.next(&impostor).await;
    // The impostor signs with its own key but names the trusted certificate.
    let headers = with_certificate_url(&forged, &genuine.certificate_url());
    let result = sandbox_verifier(&genuine)
        .verify(&headers, &forged.body)
        .await;
    assert_eq!(result, Err(SignatureError::BadSignature));
}

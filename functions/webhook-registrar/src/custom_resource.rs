//! The CloudFormation custom-resource protocol: the request CloudFormation sends, and the answer
//! PUT to its pre-signed `ResponseURL`. CloudFormation waits for that answer (up to the
//! resource's `ServiceTimeout`), so every request that carries a `ResponseURL` gets one, even
//! when the rest of the request cannot be read.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::cloudformation::{
    CloudFormationCustomResourceRequest, CloudFormationCustomResourceResponse,
    CloudFormationCustomResourceResponseStatus,
};
use cosell_shared::registrar::{Action, Report};
use serde_json::Value;

/// The physical id of the one registration a partner tenant has. Stable, so an update never
/// looks like a replacement (which would make CloudFormation delete the "old" one).
pub const PHYSICAL_RESOURCE_ID: &str = "partner-center-webhook-registration";
/// CloudFormation refuses an answer over 4096 bytes; the reason is cut well below that.
const MAX_REASON_CHARS: usize = 1500;
const SEND_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// A custom-resource request: what is needed to answer it, and its properties (or why they
/// cannot be used).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `None` when the request could not be read; it is then answered FAILED.
    pub request_type: Option<RequestType>,
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub physical_resource_id: Option<String>,
    pub properties: Result<Properties, String>,
}

/// `ResourceProperties`. CloudFormation passes every value as a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties {
    /// `WebhookUrl`; the function's `COSELL_WEBHOOK_URL` when absent.
    pub webhook_url: Option<String>,
    /// `Restore` (default true): take the registration over from wherever it points.
    pub restore: bool,
}

/// What invoked the function.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    CustomResource(Box<Request>),
    /// An EventBridge schedule.
    Scheduled,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error(
        "the event is neither a CloudFormation custom-resource request (no ResponseURL) nor a \
         scheduled event (detail-type \"Scheduled Event\")"
    )]
    Unrecognised,
}

/// Tells a custom-resource request from a scheduled event. A request whose fields are missing
/// or wrong is still a request, as long as it says where the answer goes.
pub fn parse(event: &Value) -> Result<Invocation, EventError> {
    let field = |name: &str| event.get(name).and_then(Value::as_str);
    if let Some(response_url) = field("ResponseURL").filter(|u| !u.is_empty()) {
        let unreadable = |why: String| Request {
            request_type: None,
            response_url: response_url.to_string(),
            stack_id: field("StackId").unwrap_or_default().to_string(),
            request_id: field("RequestId").unwrap_or_default().to_string(),
            logical_resource_id: field("LogicalResourceId").unwrap_or_default().to_string(),
            physical_resource_id: field("PhysicalResourceId").map(str::to_string),
            properties: Err(format!(
                "the custom-resource request could not be read: {why}"
            )),
        };
        let request =
            match serde_json::from_value::<CloudFormationCustomResourceRequest>(event.clone()) {
                Ok(typed) => from_typed(typed).unwrap_or_else(|| {
                    unreadable(format!(
                        "RequestType {} is not Create, Update or Delete",
                        event.get("RequestType").unwrap_or(&Value::Null)
                    ))
                }),
                Err(e) => unreadable(e.to_string()),
            };
        return Ok(Invocation::CustomResource(Box::new(request)));
    }
    if field("detail-type") == Some("Scheduled Event") {
        return Ok(Invocation::Scheduled);
    }
    Err(EventError::Unrecognised)
}

/// `None` for a request type this code does not know (the enum is open to new ones).
fn from_typed(typed: CloudFormationCustomResourceRequest) -> Option<Request> {
    let (request_type, url, stack, id, logical, physical, props) = match typed {
        CloudFormationCustomResourceRequest::Create(r) => (
            RequestType::Create,
            r.response_url,
            r.stack_id,
            r.request_id,
            r.logical_resource_id,
            None,
            r.resource_properties,
        ),
        CloudFormationCustomResourceRequest::Update(r) => (
            RequestType::Update,
            r.response_url,
            r.stack_id,
            r.request_id,
            r.logical_resource_id,
            Some(r.physical_resource_id),
            r.resource_properties,
        ),
        CloudFormationCustomResourceRequest::Delete(r) => (
            RequestType::Delete,
            r.response_url,
            r.stack_id,
            r.request_id,
            r.logical_resource_id,
            Some(r.physical_resource_id),
            r.resource_properties,
        ),
        _ => return None,
    };
    Some(Request {
        request_type: Some(request_type),
        response_url: url,
        stack_id: stack,
        request_id: id,
        logical_resource_id: logical,
        physical_resource_id: physical.filter(|p| !p.is_empty()),
        properties: properties(&props),
    })
}

fn properties(props: &Value) -> Result<Properties, String> {
    let get = |name: &str| props.get(name).filter(|v| !v.is_null());
    let webhook_url = match get("WebhookUrl") {
        None => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(other) => {
            return Err(format!(
                "ResourceProperties.WebhookUrl is not a string: {other}"
            ));
        }
    };
    let restore = match get("Restore") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(format!(
                    "ResourceProperties.Restore is '{other}'; it must be true or false"
                ));
            }
        },
        Some(other) => {
            return Err(format!(
                "ResourceProperties.Restore is {other}; it must be true or false"
            ));
        }
    };
    Ok(Properties {
        webhook_url,
        restore,
    })
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Registered(Report),
    /// Delete: the registration stays (the Webhooks API cannot remove one).
    LeftInPlace,
    Failed(String),
}

/// The reason CloudFormation shows for a Delete.
pub const LEFT_IN_PLACE: &str = "The Partner Center webhook registration was left in place: the \
    Webhooks API has no way to delete it. It keeps pointing at this stack's URL until another \
    registration replaces it.";

/// The answer to `request`.
pub fn response(request: &Request, outcome: &Outcome) -> CloudFormationCustomResourceResponse {
    let mut r = CloudFormationCustomResourceResponse::default();
    r.physical_resource_id = request
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| PHYSICAL_RESOURCE_ID.to_string());
    r.stack_id = request.stack_id.clone();
    r.request_id = request.request_id.clone();
    r.logical_resource_id = request.logical_resource_id.clone();
    r.no_echo = false;
    match outcome {
        Outcome::Registered(report) => {
            r.status = CloudFormationCustomResourceResponseStatus::Success;
            r.reason = Some(truncate(&report.summary()));
            r.data = data(report);
        }
        Outcome::LeftInPlace => {
            r.status = CloudFormationCustomResourceResponseStatus::Success;
            r.reason = Some(LEFT_IN_PLACE.to_string());
        }
        Outcome::Failed(reason) => {
            r.status = CloudFormationCustomResourceResponseStatus::Failed;
            r.reason = Some(truncate(reason));
        }
    }
    r
}

/// `Fn::GetAtt`-able values.
fn data(report: &Report) -> HashMap<String, String> {
    let mut data = HashMap::from([
        ("WebhookUrl".to_string(), report.webhook_url.clone()),
        ("Action".to_string(), report.action.to_string()),
        (
            "ValidationCorrelationId".to_string(),
            report.validation.correlation_id.clone(),
        ),
    ]);
    if let (Action::Restored, Some(found)) = (report.action, &report.found) {
        data.insert("PreviousWebhookUrl".to_string(), found.webhook_url.clone());
    }
    data
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_REASON_CHARS {
        s.to_string()
    } else {
        s.chars().take(MAX_REASON_CHARS).collect::<String>() + "…"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the answer to CloudFormation cannot be written as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("CloudFormation's response URL answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("CloudFormation's response URL cannot be reached: {0}")]
    Unreachable(#[source] reqwest::Error),
}

/// PUTs the answer to the pre-signed URL, a few times if S3 does not take it at once.
pub async fn send(
    http: &reqwest::Client,
    response_url: &str,
    answer: &CloudFormationCustomResourceResponse,
) -> Result<(), SendError> {
    let body = serde_json::to_vec(answer)?;
    let mut attempt = 1;
    loop {
        // No Content-Type: the URL was signed without one, and S3 would refuse the signature.
        let result = http.put(response_url).body(body.clone()).send().await;
        let error = match result {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                let error = SendError::Refused {
                    status,
                    body: truncate(&body),
                };
                // A 4xx (an expired or altered URL) will not change by sending again.
                if status < 500 {
                    return Err(error);
                }
                error
            }
            Err(e) => SendError::Unreachable(e),
        };
        if attempt >= SEND_ATTEMPTS {
            return Err(error);
        }
        tracing::warn!(attempt, error = %error, "the answer to CloudFormation was not taken; sending again");
        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use cosell_shared::registrar::{Found, Validation};
    use serde_json::json;

    use super::*;

    fn create(props: Value) -> Value {
        json!({
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:registrar",
            "RequestType": "Create",
            "RequestId": "req-1",
            "ResponseURL": "https://cfn-bucket.s3.amazonaws.com/answer?X-Amz-Signature=abc",
            "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/cosell/guid",
            "ResourceType": "Custom::WebhookRegistration",
            "LogicalResourceId": "WebhookRegistration",
            "ResourceProperties": props,
        })
    }

    fn request(event: &Value) -> Request {
        match parse(event).expect("a request") {
            Invocation::CustomResource(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    fn report(action: Action, found: Option<&str>) -> Report {
        Report {
            webhook_url: "https://abc.lambda-url.eu-west-1.on.aws/webhooks/partner-center".into(),
            found: found.map(|url| Found {
                webhook_url: url.into(),
                webhook_events: vec!["referral-created".into()],
            }),
            action,
            validation: Validation {
                correlation_id: "corr-9".into(),
                attempts: 1,
                response_code: "OK".into(),
            },
        }
    }

    #[test]
    fn create_update_and_delete_requests_are_read_with_string_properties() {
        let r = request(&create(json!({
            "ServiceToken": "arn",
            "WebhookUrl": "https://abc.example/webhooks/partner-center",
            "Restore": "false"
        })));
        assert_eq!(r.request_type, Some(RequestType::Create));
        assert_eq!(r.request_id, "req-1");
        assert_eq!(r.physical_resource_id, None);
        assert_eq!(
            r.properties,
            Ok(Properties {
                webhook_url: Some("https://abc.example/webhooks/partner-center".into()),
                restore: false,
            })
        );

        let mut update = create(json!({"WebhookUrl": "https://new.example/hook"}));
        update["RequestType"] = json!("Update");
        update["PhysicalResourceId"] = json!("partner-center-webhook-registration");
        update["OldResourceProperties"] = json!({"WebhookUrl": "https://old.example/hook"});
        let r = request(&update);
        assert_eq!(r.request_type, Some(RequestType::Update));
        assert_eq!(
            r.physical_resource_id.as_deref(),
            Some("partner-center-webhook-registration")
        );
        assert_eq!(
            r.properties.map(|p| p.restore),
            Ok(true),
            "Restore defaults to true"
        );

        let mut delete = create(json!({"Restore": true}));
        delete["RequestType"] = json!("Delete");
        delete["PhysicalResourceId"] = json!("some-id");
        assert_eq!(request(&delete).request_type, Some(RequestType::Delete));
    }

    #[test]
    fn a_request_that_cannot_be_read_is_still_answered() {
        let mut odd = create(json!({}));
        odd["RequestType"] = json!("Rollback");
        let r = request(&odd);
        assert_eq!(r.request_type, None);
        assert_eq!(
            r.response_url,
            "https://cfn-bucket.s3.amazonaws.com/answer?X-Amz-Signature=abc"
        );
        assert_eq!(r.logical_resource_id, "WebhookRegistration");
        assert!(r.properties.is_err());

        let bad_restore = request(&create(json!({"Restore": "sometimes"})));
        let err = bad_restore.properties.expect_err("not a boolean");
        assert!(err.contains("Restore"), "{err}");
    }

    #[test]
    fn scheduled_and_unknown_events_are_told_apart() {
        let scheduled = json!({
            "version": "0", "id": "e-1", "detail-type": "Scheduled Event",
            "source": "aws.events", "time": "2025-01-01T00:00:00Z",
            "resources": ["arn:aws:events:eu-west-1:123456789012:rule/daily"], "detail": {}
        });
        assert_eq!(parse(&scheduled), Ok(Invocation::Scheduled));
        assert_eq!(
            parse(&json!({"Records": []})),
            Err(EventError::Unrecognised)
        );
    }

    #[test]
    fn a_success_carries_the_registered_url_and_a_stable_physical_id() {
        let r = request(&create(json!({"WebhookUrl": "https://x.example/hook"})));
        let answer = response(
            &r,
            &Outcome::Registered(report(Action::Restored, Some("https://other.example/hook"))),
        );
        let body = serde_json::to_value(&answer).expect("JSON");
        assert_eq!(body["Status"], "SUCCESS");
        assert_eq!(body["PhysicalResourceId"], PHYSICAL_RESOURCE_ID);
        assert_eq!(body["RequestId"], "req-1");
        assert_eq!(body["LogicalResourceId"], "WebhookRegistration");
        assert_eq!(
            body["StackId"],
            "arn:aws:cloudformation:eu-west-1:123456789012:stack/cosell/guid"
        );
        assert_eq!(
            body["Data"]["WebhookUrl"],
            "https://abc.lambda-url.eu-west-1.on.aws/webhooks/partner-center"
        );
        assert_eq!(body["Data"]["Action"], "restored");
        assert_eq!(
            body["Data"]["PreviousWebhookUrl"],
            "https://other.example/hook"
        );
        assert!(
            body["Reason"]
                .as_str()
                .is_some_and(|r| r.contains("https://other.example/hook")),
            "{body}"
        );
    }

    #[test]
    fn an_update_keeps_its_physical_id_and_a_failure_says_why() {
        let mut update = create(json!({}));
        update["RequestType"] = json!("Update");
        update["PhysicalResourceId"] = json!("kept-id");
        let r = request(&update);
        let long = "x".repeat(5000);
        let answer = response(
            &r,
            &Outcome::Failed(format!("COSELL_CRM is required {long}")),
        );
        let body = serde_json::to_value(&answer).expect("JSON");
        assert_eq!(body["Status"], "FAILED");
        assert_eq!(body["PhysicalResourceId"], "kept-id");
        let reason = body["Reason"].as_str().expect("a reason");
        assert!(reason.starts_with("COSELL_CRM is required"), "{reason}");
        assert!(
            serde_json::to_vec(&answer).expect("JSON").len() < 4096,
            "CloudFormation's limit"
        );
    }

    #[test]
    fn a_delete_succeeds_and_says_the_registration_stays() {
        let mut delete = create(json!({}));
        delete["RequestType"] = json!("Delete");
        delete["PhysicalResourceId"] = json!(PHYSICAL_RESOURCE_ID);
        let answer = response(&request(&delete), &Outcome::LeftInPlace);
        let body = serde_json::to_value(&answer).expect("JSON");
        assert_eq!(body["Status"], "SUCCESS");
        assert!(
            body["Reason"]
                .as_str()
                .is_some_and(|r| r.contains("left in place")),
            "{body}"
        );
    }
}

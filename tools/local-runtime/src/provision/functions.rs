//! Serverless functions: their environment, timeout and event sources, which the local
//! runtime then plays (SQS pollers, schedules, routes). Nothing is created.

use super::names::LocalNames;
use super::{
    Active, DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT_SECONDS, FunctionSpec, ProvisionError, Route,
    Scalar, SqsSource, Stack, unsupported,
};
use crate::template::resolve;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Properties {
    #[serde(default)]
    environment: Environment,
    #[serde(default)]
    timeout: Option<Scalar>,
    #[serde(default)]
    events: BTreeMap<String, Event>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Environment {
    #[serde(default)]
    variables: BTreeMap<String, Scalar>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Event {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(default)]
    properties: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SqsEvent {
    queue: String,
    #[serde(default)]
    batch_size: Option<Scalar>,
    #[serde(default)]
    maximum_batching_window_in_seconds: Option<Scalar>,
    #[serde(default)]
    function_response_types: Vec<String>,
    #[serde(default)]
    scaling_config: Option<ScalingConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScalingConfig {
    maximum_concurrency: Scalar,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScheduleEvent {
    schedule: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HttpApiEvent {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Globals {
    #[serde(default)]
    environment: Environment,
    #[serde(default)]
    timeout: Option<Scalar>,
}

/// The period of an EventBridge `rate(N unit)` expression.
fn rate(expression: &str) -> Option<Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (count, unit) = inner.trim().split_once(' ')?;
    let count: u64 = count.parse().ok().filter(|c| *c > 0)?;
    let seconds = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(count * seconds))
}

/// An event's properties read into `T`, a bad field named by its path.
fn event<T: DeserializeOwned>(id: &str, event_id: &str, e: &Event) -> Result<T, ProvisionError> {
    let at = format!("Properties.Events.{event_id}.Properties");
    super::typed(id, &at, e.properties.clone())
}

pub(super) fn declare(
    active: &Active<'_>,
    names: &LocalNames<'_>,
    stack: &mut Stack,
) -> Result<(), ProvisionError> {
    // Only what a function's environment and deadline need from `Globals.Function`.
    let declared = &names.template.function_globals;
    let globals = json!({
        "Environment": declared.get("Environment").cloned().unwrap_or(json!({})),
        "Timeout": declared.get("Timeout").cloned().unwrap_or(Value::Null),
    });
    let globals =
        resolve(&globals, names, names.template).map_err(|e| unsupported("Globals", e))?;
    let globals: Globals = super::typed("Globals", "Function", globals)?;
    for (id, resource) in active.of_type("AWS::Serverless::Function") {
        let p: Properties = super::properties(id, resource, names)?;
        let mut env: BTreeMap<String, String> = globals
            .environment
            .variables
            .iter()
            .chain(&p.environment.variables)
            .map(|(k, v)| (k.clone(), v.text()))
            .collect();
        if env.contains_key(super::FUNCTION_NAME_VARIABLE) {
            return Err(unsupported(
                id,
                format!(
                    "{} is reserved: Lambda sets it and refuses a function that sets it",
                    super::FUNCTION_NAME_VARIABLE
                ),
            ));
        }
        env.insert(super::FUNCTION_NAME_VARIABLE.into(), names.physical(id));
        let mut sqs_sources = Vec::new();
        let mut schedules = Vec::new();
        for (event_id, e) in &p.events {
            match e.kind.as_str() {
                "SQS" => {
                    let source: SqsEvent = event(id, event_id, e)?;
                    let queue = stack.queue_by_arn(&source.queue).ok_or_else(|| {
                        unsupported(
                            id,
                            format!(
                                "event {event_id}: queue {} is not in the template",
                                source.queue
                            ),
                        )
                    })?;
                    sqs_sources.push(SqsSource {
                        queue: queue.to_owned(),
                        batch_size: source
                            .batch_size
                            .and_then(|b| b.parse::<i32>())
                            .unwrap_or(10)
                            .clamp(1, 10),
                        window_seconds: source
                            .maximum_batching_window_in_seconds
                            .and_then(|w| w.parse())
                            .unwrap_or(0),
                        report_failures: source
                            .function_response_types
                            .iter()
                            .any(|t| t == "ReportBatchItemFailures"),
                        max_concurrency: source
                            .scaling_config
                            .and_then(|s| s.maximum_concurrency.parse())
                            .unwrap_or(DEFAULT_CONCURRENCY),
                    });
                }
                "Schedule" => {
                    let schedule: ScheduleEvent = event(id, event_id, e)?;
                    schedules.push(rate(&schedule.schedule).ok_or_else(|| {
                        unsupported(
                            id,
                            format!(
                                "event {event_id}: schedule {:?} is not rate(N unit); cron expressions are not supported locally",
                                schedule.schedule
                            ),
                        )
                    })?);
                }
                "HttpApi" => {
                    let route: HttpApiEvent = event(id, event_id, e)?;
                    stack.routes.push(Route {
                        method: route.method.as_deref().unwrap_or("ANY").to_uppercase(),
                        path: route.path.unwrap_or_else(|| "/".into()),
                        function: id.to_owned(),
                        authorization: None,
                    });
                }
                other => {
                    return Err(unsupported(
                        id,
                        format!("event {event_id} of type {other:?} is not supported locally"),
                    ));
                }
            }
        }
        let timeout = p
            .timeout
            .as_ref()
            .or(globals.timeout.as_ref())
            .and_then(Scalar::parse)
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
        stack.functions.insert(
            id.to_owned(),
            FunctionSpec {
                logical_id: id.to_owned(),
                name: names.physical(id),
                binary: resource
                    .pointer("/Metadata/BuildProperties/Binary")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                env,
                sqs_sources,
                schedules,
                timeout: Duration::from_secs(timeout),
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rate_schedules_and_refuses_the_rest() {
        assert_eq!(rate("rate(5 minutes)"), Some(Duration::from_secs(300)));
        assert_eq!(rate("rate(1 hour)"), Some(Duration::from_secs(3600)));
        assert_eq!(rate("rate(2 days)"), Some(Duration::from_secs(172_800)));
        assert_eq!(rate("rate(0 minutes)"), None);
        assert_eq!(rate("rate(5 fortnights)"), None);
        assert_eq!(rate("cron(0 12 * * ? *)"), None);
    }
}

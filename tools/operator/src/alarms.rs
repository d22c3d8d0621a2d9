//! `shop alarms`: every alarm that pages through the stack's alarm topic, with its
//! state and what it watches, so an operator who was paged finds the alarm and its
//! runbook in one place, on AWS and on `shop local` alike.

use super::stack::Ops;
use super::{OpsError, aws};
use serde::Serialize;

/// One alarm as an operator reads it.
#[derive(Debug, Clone, Serialize)]
pub struct AlarmView {
    /// The alarm's name.
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// What it watches: `namespace metric {dimensions}`, or the metric-math expression.
    pub watches: String,
    /// Its description, which names the runbook.
    pub description: String,
}

fn watches(alarm: &aws_sdk_cloudwatch::types::MetricAlarm) -> String {
    let dimensions = |dims: &[aws_sdk_cloudwatch::types::Dimension]| {
        dims.iter()
            .map(|d| format!("{}={}", d.name().unwrap_or(""), d.value().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Some(metric) = alarm.metric_name() {
        return format!(
            "{} {metric} {{{}}}",
            alarm.namespace().unwrap_or(""),
            dimensions(alarm.dimensions())
        );
    }
    let queries = alarm.metrics();
    let expression = queries.iter().find_map(|q| q.expression()).unwrap_or("");
    let inputs: Vec<String> = queries
        .iter()
        .filter_map(|q| {
            let metric = q.metric_stat()?.metric()?;
            Some(format!(
                "{}={} {} {{{}}}",
                q.id().unwrap_or(""),
                metric.namespace().unwrap_or(""),
                metric.metric_name().unwrap_or(""),
                dimensions(metric.dimensions())
            ))
        })
        .collect();
    format!("{expression} where {}", inputs.join(", "))
}

/// The stack's alarms: those whose actions notify its `AlarmTopicArn`, by name.
pub async fn list(ops: &Ops) -> Result<Vec<AlarmView>, OpsError> {
    let topic = ops.outputs.get("AlarmTopicArn")?.to_owned();
    let mut pages = ops.cloudwatch.describe_alarms().into_paginator().send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("cloudwatch:DescribeAlarms"))?;
        for alarm in page.metric_alarms() {
            if !alarm.alarm_actions().iter().any(|a| a == &topic) {
                continue;
            }
            found.push(AlarmView {
                name: alarm.alarm_name().unwrap_or_default().to_owned(),
                state: alarm
                    .state_value()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                watches: watches(alarm),
                description: alarm.alarm_description().unwrap_or_default().to_owned(),
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

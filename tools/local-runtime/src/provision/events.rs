//! EventBridge buses and rules; rule targets are SQS queues (the emulator delivers to
//! nothing else).

use super::names::LocalNames;
use super::{Active, Clients, ProvisionError, emulator, unsupported};
use aws_sdk_eventbridge::types::{DeadLetterConfig, RuleState, Target};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BusProperties {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RuleProperties {
    #[serde(default)]
    event_bus_name: Option<String>,
    event_pattern: Value,
    #[serde(default)]
    targets: Vec<RuleTarget>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RuleTarget {
    id: String,
    arn: String,
    #[serde(default)]
    dead_letter_config: Option<TargetDeadLetter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TargetDeadLetter {
    arn: String,
}

/// Creates the buses; returns their names by logical id.
pub(super) async fn create_buses(
    active: &Active<'_>,
    names: &LocalNames<'_>,
    clients: &Clients,
) -> Result<BTreeMap<String, String>, ProvisionError> {
    let mut buses = BTreeMap::new();
    for (id, resource) in active.of_type("AWS::Events::EventBus") {
        let p: BusProperties = super::properties(id, resource, names)?;
        let name = p.name.unwrap_or_else(|| names.physical(id));
        clients
            .events
            .create_event_bus()
            .name(&name)
            .send()
            .await
            .map_err(emulator(id))?;
        buses.insert(id.to_owned(), name);
    }
    Ok(buses)
}

pub(super) async fn create_rules(
    active: &Active<'_>,
    names: &LocalNames<'_>,
    clients: &Clients,
) -> Result<(), ProvisionError> {
    for (id, resource) in active.of_type("AWS::Events::Rule") {
        let p: RuleProperties = super::properties(id, resource, names)?;
        let rule = names.physical(id);
        let bus = p.event_bus_name.as_deref().unwrap_or("default");
        clients
            .events
            .put_rule()
            .name(&rule)
            .event_bus_name(bus)
            .event_pattern(p.event_pattern.to_string())
            .state(RuleState::Enabled)
            .send()
            .await
            .map_err(emulator(id))?;
        for target in &p.targets {
            if !target.arn.starts_with("arn:aws:sqs:") {
                return Err(unsupported(
                    id,
                    "rule targets must be SQS queues locally (the emulator cannot deliver to others)",
                ));
            }
            let mut t = Target::builder().id(&target.id).arn(&target.arn);
            if let Some(dlq) = &target.dead_letter_config {
                t = t.dead_letter_config(DeadLetterConfig::builder().arn(&dlq.arn).build());
            }
            clients
                .events
                .put_targets()
                .rule(&rule)
                .event_bus_name(bus)
                .targets(t.build().map_err(emulator(id))?)
                .send()
                .await
                .map_err(emulator(id))?;
        }
    }
    Ok(())
}

/// Copies every event of the shop's own sources (`shop.*`) on `bus` to a new queue
/// named `name`, and returns the queue's URL: how the tests see everything the system
/// emits.
pub async fn tap_events(
    clients: &Clients,
    bus: &str,
    name: &str,
) -> Result<String, ProvisionError> {
    let url = clients
        .sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(emulator(name))?
        .queue_url
        .unwrap_or_default();
    clients
        .events
        .put_rule()
        .name(name)
        .event_bus_name(bus)
        .event_pattern(serde_json::json!({"source": [{"prefix": "shop."}]}).to_string())
        .send()
        .await
        .map_err(emulator(name))?;
    let arn = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(emulator(name))?
        .attributes
        .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .unwrap_or_default();
    let target = Target::builder()
        .id("tap")
        .arn(arn)
        .build()
        .map_err(emulator(name))?;
    clients
        .events
        .put_targets()
        .rule(name)
        .event_bus_name(bus)
        .targets(target)
        .send()
        .await
        .map_err(emulator(name))?;
    Ok(url)
}

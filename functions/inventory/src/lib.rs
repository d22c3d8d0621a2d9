//! Inventory commands from the saga (Reserve, Release) and from operators (Restock).
//! Each answers the saga's task token with a result or a named failure.
#![warn(missing_docs)]

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::json;
use shop_aws::{ConfigError, Settings};
use shop_domain::commands::{Envelope, InventoryCommand, answer_task};
use shop_domain::ports::{EventPublisher, PortError, StockStore, TaskCallbacks};
use shop_domain::stock::InventoryService;
use std::sync::Arc;
use tracing::Instrument;

/// Why a message was not processed (it is redelivered, then dead-lettered).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The body is not an inventory command.
    #[error("message is not an inventory command: {0}")]
    Malformed(#[from] shop_domain::commands::DecodeError),
    /// Answering the saga failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// What the function reads from its environment, parsed once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `INVENTORY_TABLE`: stock levels and reservations.
    pub inventory_table: String,
    /// `EVENT_BUS_NAME`: where stock events are published.
    pub event_bus_name: String,
}

impl Config {
    /// Reads every setting, naming the first that is missing.
    pub fn from_env(env: Settings<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            inventory_table: env.required("INVENTORY_TABLE")?,
            event_bus_name: env.required("EVENT_BUS_NAME")?,
        })
    }
}

/// The ports the function works through. A test replaces one to inject a fault.
#[derive(Clone)]
pub struct Ports {
    /// Stock and per-order reservations.
    pub stock: Arc<dyn StockStore>,
    /// Publishes stock events.
    pub events: Arc<dyn EventPublisher>,
    /// Answers and heartbeats to the saga's task tokens.
    pub callbacks: Arc<dyn TaskCallbacks>,
}

impl Ports {
    /// The AWS adapters, with clients built once.
    pub fn aws(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        let sdk = &shop_aws::for_function(sdk, "inventory");
        Self {
            stock: Arc::new(shop_aws::stock::DynamoStockStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                config.inventory_table.clone(),
            )),
            events: Arc::new(shop_aws::events::EventBridgePublisher::new(
                aws_sdk_eventbridge::Client::new(sdk),
                config.event_bus_name.clone(),
            )),
            callbacks: Arc::new(shop_aws::saga::SfnTaskCallbacks::new(
                aws_sdk_sfn::Client::new(sdk),
            )),
        }
    }
}

/// The inventory function with its ports.
pub struct Inventory {
    ports: Ports,
}

impl Inventory {
    /// Wires the function to its ports.
    pub fn new(ports: Ports) -> Self {
        Self { ports }
    }

    /// Processes a batch, reporting only the failed records.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        sqs_batch::process_batch(event, |message| self.execute(message)).await
    }

    async fn execute(&self, message: SqsMessage) -> Result<(), CommandError> {
        let envelope: Envelope<InventoryCommand> =
            Envelope::decode(message.body.as_deref().unwrap_or(""))?;
        let correlation_id = envelope.correlation_id.clone().unwrap_or_default();
        let service = InventoryService {
            stock: self.ports.stock.as_ref(),
            events: self.ports.events.as_ref(),
        };
        let span = tracing::info_span!("command", correlation_id = %correlation_id, order_id = tracing::field::Empty);
        async {
            let outcome = match &envelope.command {
                InventoryCommand::Reserve { order_id, lines } => {
                    tracing::Span::current().record("order_id", order_id.as_str());
                    service
                        .reserve(order_id, &correlation_id, lines)
                        .await
                        .map(|o| json!({ "outcome": format!("{o:?}") }))
                }
                InventoryCommand::Release {
                    order_id,
                    lines,
                    reason,
                } => {
                    tracing::Span::current().record("order_id", order_id.as_str());
                    tracing::info!(reason = reason.as_deref().unwrap_or(""), "releasing stock");
                    service
                        .release(order_id, &correlation_id, lines)
                        .await
                        .map(|o| json!({ "outcome": format!("{o:?}") }))
                }
                InventoryCommand::Restock { sku, quantity } => {
                    service.restock(sku, *quantity).await.map(
                        |l| json!({ "sku": sku, "available": l.available, "reserved": l.reserved }),
                    )
                }
            };
            if let Err(failure) = &outcome {
                tracing::info!(error = failure.error.name(), cause = %failure.cause, "command failed");
            }
            answer_task(
                self.ports.callbacks.as_ref(),
                envelope.task_token.as_deref(),
                outcome,
            )
            .await?;
            Ok(())
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_domain::fakes::{FakeCallbacks, FakeEvents, FakeStock};

    fn batch(bodies: &[&str]) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut m = SqsMessage::default();
                m.message_id = Some(format!("m{i}"));
                m.body = Some((*b).into());
                m
            })
            .collect();
        e
    }

    #[tokio::test]
    async fn answers_reserve_with_success_or_out_of_stock_by_name() {
        let callbacks = Arc::new(FakeCallbacks::default());
        let inventory = Inventory::new(Ports {
            stock: Arc::new(FakeStock::with(&[("MUG", 1)])),
            events: Arc::new(FakeEvents::default()),
            callbacks: callbacks.clone(),
        });
        let ok = r#"{"command":"Reserve","taskToken":"t1","orderId":"ord-1","lines":[{"sku":"MUG","quantity":1,"unitPrice":1}]}"#;
        let short = r#"{"command":"Reserve","taskToken":"t2","orderId":"ord-2","lines":[{"sku":"MUG","quantity":1,"unitPrice":1}]}"#;
        let response = inventory
            .handle(batch(&[ok, short, "{\"command\":\"Steal\"}"]))
            .await;
        assert_eq!(callbacks.succeeded.lock().unwrap()[0].0, "t1");
        assert_eq!(
            callbacks.failed.lock().unwrap().as_slice(),
            [("t2".to_string(), "OutOfStock".to_string())]
        );
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["m2"], "only the unknown command is redelivered");
    }
}

//! Inventory commands from the saga (Reserve, Release) and from operators (Restock).
//! Each answers the saga's task token with a result or a named failure.
#![warn(missing_docs)]

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::json;
use shop_aws::{ConfigError, Settings};
use shop_domain::commands::{Envelope, InventoryCommand};
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
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda): what its failures are counted
    /// under ([`observability::Metric::FunctionFailures`]).
    pub function_name: String,
    /// `INVENTORY_TABLE`: stock levels and reservations.
    pub inventory_table: String,
    /// `EVENT_BUS_NAME`: where stock events are published.
    pub event_bus_name: String,
}

impl Config {
    /// Reads every setting, naming the first that is missing.
    pub fn from_env(env: Settings<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            function_name: env.function_name()?,
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
    /// Lambda's name of the function, its failures are counted under.
    function_name: String,
    ports: Ports,
}

impl Inventory {
    /// Wires the function to its ports.
    pub fn new(config: &Config, ports: Ports) -> Self {
        Self {
            function_name: config.function_name.clone(),
            ports,
        }
    }

    /// Processes a batch, reporting only the failed records.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let response = sqs_batch::process_batch(event, |message| self.execute(message)).await;
        observability::count_failures(&self.function_name, response.batch_item_failures.len());
        response
    }

    async fn execute(&self, message: SqsMessage) -> Result<(), CommandError> {
        let envelope: Envelope<InventoryCommand> =
            Envelope::decode(message.body.as_deref().unwrap_or(""))?;
        let correlation_id = envelope.correlation_id.clone().unwrap_or_default();
        let service = InventoryService {
            stock: self.ports.stock.as_ref(),
            events: self.ports.events.as_ref(),
        };
        let span = tracing::info_span!("command", correlation_id = %correlation_id, order.id = tracing::field::Empty);
        if let InventoryCommand::Reserve { order_id, .. }
        | InventoryCommand::Release { order_id, .. } = &envelope.command
        {
            span.record("order.id", order_id.as_str());
        }
        let work = async {
            match &envelope.command {
                InventoryCommand::Reserve { order_id, lines } => service
                    .reserve(order_id, &correlation_id, lines)
                    .await
                    .map(|o| json!({ "outcome": format!("{o:?}") })),
                InventoryCommand::Release {
                    order_id,
                    lines,
                    reason,
                } => {
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
            }
        };
        shop_domain::commands::execute(self.ports.callbacks.as_ref(), envelope.timing(), work)
            .instrument(span)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_domain::fakes::{FakeCallbacks, FakeEvents, FakeStock};

    fn config() -> Config {
        Config {
            function_name: "shop-InventoryFunction".into(),
            inventory_table: "inventory".into(),
            event_bus_name: "bus".into(),
        }
    }

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
        let inventory = Inventory::new(
            &config(),
            Ports {
                stock: Arc::new(FakeStock::with(&[("MUG", 1)])),
                events: Arc::new(FakeEvents::default()),
                callbacks: callbacks.clone(),
            },
        );
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

    #[tokio::test]
    async fn a_reserve_its_saga_gave_up_on_or_past_its_deadline_holds_no_stock() {
        let callbacks = Arc::new(FakeCallbacks::default());
        callbacks.timed_out.lock().unwrap().push("gone".into());
        let stock = Arc::new(FakeStock::with(&[("MUG", 5)]));
        let inventory = Inventory::new(
            &config(),
            Ports {
                stock: stock.clone(),
                events: Arc::new(FakeEvents::default()),
                callbacks: callbacks.clone(),
            },
        );
        let reserve = |token: &str, order: &str, deadline: &str| {
            format!(
                r#"{{"command":"Reserve","taskToken":"{token}","orderId":"{order}","deadline":"{deadline}","lines":[{{"sku":"MUG","quantity":2,"unitPrice":1}}]}}"#
            )
        };
        let later =
            shop_domain::rfc3339(time::OffsetDateTime::now_utc() + time::Duration::hours(1));
        let response = inventory
            .handle(batch(&[
                &reserve("gone", "ord-1", &later),
                &reserve("late", "ord-2", "2026-01-01T00:00:00.000Z"),
            ]))
            .await;
        assert!(response.batch_item_failures.is_empty());
        let mug = stock
            .level(&shop_domain::Sku("MUG".into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((mug.available, mug.reserved), (5, 0), "nothing held");
        assert!(callbacks.succeeded.lock().unwrap().is_empty());
        assert_eq!(
            callbacks.failed.lock().unwrap().as_slice(),
            [("late".to_string(), "OrderExpired".to_string())],
            "the stale command is not answered; the late one is, by its own name"
        );
    }

    #[tokio::test]
    async fn a_commands_span_continues_the_sagas_trace_in_a_batch_of_one_or_several() {
        use observability::traces::testing::{
            assert_consumer_tree, assert_each_names_its_order, invoke, producer,
        };
        for size in [1u8, 3] {
            let producers: Vec<String> = (0..size).map(producer).collect();
            let bodies: Vec<String> = producers
                .iter()
                .enumerate()
                .map(|(i, traceparent)| {
                    format!(
                        r#"{{"command":"Reserve","taskToken":"t{i}","orderId":"ord-{i}","correlationId":"c{i}","traceparent":"{traceparent}","lines":[{{"sku":"MUG","quantity":1,"unitPrice":1}}]}}"#
                    )
                })
                .collect();
            let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
            let inventory = Inventory::new(
                &config(),
                Ports {
                    stock: Arc::new(FakeStock::with(&[("MUG", 10)])),
                    events: Arc::new(FakeEvents::default()),
                    callbacks: Arc::new(FakeCallbacks::default()),
                },
            );
            let (response, spans) = invoke("shop-InventoryFunction", batch(&bodies), |e| {
                inventory.handle(e)
            })
            .await;
            assert!(response.batch_item_failures.is_empty());
            let records = assert_consumer_tree(&spans, "shop-InventoryFunction", &producers);
            assert_each_names_its_order(&spans, &records, "command");
        }
    }

    #[tokio::test]
    async fn a_failed_record_is_marked_failed_with_its_cause() {
        use observability::traces::testing::{invoke, named};
        let inventory = Inventory::new(
            &config(),
            Ports {
                stock: Arc::new(FakeStock::with(&[])),
                events: Arc::new(FakeEvents::default()),
                callbacks: Arc::new(FakeCallbacks::default()),
            },
        );
        let (response, spans) = invoke(
            "shop-InventoryFunction",
            batch(&["{\"command\":\"Steal\"}"]),
            |e| inventory.handle(e),
        )
        .await;
        assert_eq!(response.batch_item_failures.len(), 1);
        let record = named(&spans, "record");
        match &record.status {
            opentelemetry::trace::Status::Error { description } => {
                assert!(description.contains("Steal"), "{description}")
            }
            other => panic!("the record's span is {other:?}"),
        }
    }
}

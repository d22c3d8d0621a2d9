//! Consumes order outcome events (EventBridge → SQS): creates one shipment per
//! confirmed order and counts outcomes as metrics. It shows the fan-out: the saga
//! publishes once, and any number of services subscribe by rule.
#![warn(missing_docs)]

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde::Deserialize;
use serde_json::Value;
use shop_aws::{ConfigError, Settings};
use shop_domain::ports::{PortError, ShipmentStore};
use shop_domain::{OrderId, OrderLine};
use std::sync::Arc;
use tracing::Instrument;

/// Why a message was not processed (it is redelivered, then dead-lettered).
#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    /// The body is not an order outcome event.
    #[error("message is not an order outcome event: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A detail type this consumer does not subscribe to.
    #[error("unexpected detail type {0}")]
    Unexpected(String),
    /// The shipments table failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Confirmed {
    order_id: OrderId,
    correlation_id: String,
    lines: Vec<OrderLine>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cancelled {
    order_id: OrderId,
    correlation_id: String,
    reason: String,
}

/// What the function reads from its environment, parsed once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda): what its failures are counted
    /// under ([`observability::Metric::FunctionFailures`]).
    pub function_name: String,
    /// `SHIPMENTS_TABLE`: one shipment per confirmed order.
    pub shipments_table: String,
}

impl Config {
    /// Reads every setting, naming the first that is missing.
    pub fn from_env(env: Settings<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            function_name: env.function_name()?,
            shipments_table: env.required("SHIPMENTS_TABLE")?,
        })
    }
}

/// The port the function works through. A test replaces it to inject a fault.
#[derive(Clone)]
pub struct Ports {
    /// Shipments created for confirmed orders.
    pub shipments: Arc<dyn ShipmentStore>,
}

impl Ports {
    /// The AWS adapter, with its client built once.
    pub fn aws(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        let sdk = &shop_aws::for_function(sdk, "fulfilment");
        Self {
            shipments: Arc::new(shop_aws::shipments::DynamoShipmentStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                config.shipments_table.clone(),
            )),
        }
    }
}

/// The fulfilment function with its port.
pub struct Fulfilment {
    /// Lambda's name of the function, its failures are counted under.
    function_name: String,
    shipments: Arc<dyn ShipmentStore>,
}

impl Fulfilment {
    /// Wires the function to its port.
    pub fn new(config: &Config, ports: Ports) -> Self {
        Self {
            function_name: config.function_name.clone(),
            shipments: ports.shipments,
        }
    }

    /// Processes a batch, reporting only the failed records.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let response = sqs_batch::process_batch(event, |message| self.consume(message)).await;
        observability::count_failures(&self.function_name, response.batch_item_failures.len());
        response
    }

    async fn consume(&self, message: SqsMessage) -> Result<(), OutcomeError> {
        let event: EventBridgeEvent<Value> =
            serde_json::from_str(message.body.as_deref().unwrap_or(""))?;
        match event.detail_type.as_str() {
            "OrderConfirmed" => {
                let detail: Confirmed = serde_json::from_value(event.detail)?;
                let span = tracing::info_span!("event", correlation_id = %detail.correlation_id, order.id = %detail.order_id);
                async {
                    if self
                        .shipments
                        .create(&detail.order_id, &detail.lines)
                        .await?
                    {
                        tracing::info!("shipment created");
                        observability::emit(observability::Metric::OrdersConfirmed, 1.0, &[]);
                    } else {
                        tracing::info!("shipment existed; duplicate event ignored");
                    }
                    Ok(())
                }
                .instrument(span)
                .await
            }
            "OrderCancelled" => {
                let detail: Cancelled = serde_json::from_value(event.detail)?;
                tracing::info!(correlation_id = %detail.correlation_id, order_id = %detail.order_id, reason = %detail.reason, "order cancelled");
                observability::emit(
                    observability::Metric::OrdersCancelled,
                    1.0,
                    &[&detail.reason],
                );
                Ok(())
            }
            other => Err(OutcomeError::Unexpected(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::collections::HashSet;
    use std::sync::Mutex;

    #[derive(Default)]
    struct FakeShipments(Mutex<HashSet<OrderId>>);

    #[async_trait]
    impl ShipmentStore for FakeShipments {
        async fn create(&self, order_id: &OrderId, _: &[OrderLine]) -> Result<bool, PortError> {
            Ok(self.0.lock().unwrap().insert(order_id.clone()))
        }
    }

    fn message(id: &str, detail_type: &str, detail: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(format!(
            r#"{{"version":"0","id":"e-{id}","detail-type":"{detail_type}","source":"shop.orders","account":"123456789012","time":"2026-11-22T10:00:00Z","region":"us-east-1","resources":[],"detail":{detail}}}"#
        ));
        m
    }

    #[tokio::test]
    async fn ships_each_confirmed_order_once_and_rejects_foreign_events() {
        let shipments = Arc::new(FakeShipments::default());
        let fulfilment = Fulfilment::new(
            &Config {
                function_name: "shop-FulfilmentFunction".into(),
                shipments_table: "shipments".into(),
            },
            Ports {
                shipments: shipments.clone(),
            },
        );
        let confirmed = r#"{"orderId":"ord-1","correlationId":"c","lines":[{"sku":"A","quantity":1,"unitPrice":5}]}"#;
        let mut event = SqsEvent::default();
        event.records = vec![
            message("1", "OrderConfirmed", confirmed),
            message("2", "OrderConfirmed", confirmed),
            message(
                "3",
                "OrderCancelled",
                r#"{"orderId":"ord-2","correlationId":"c","reason":"OutOfStock"}"#,
            ),
            message("4", "StockReserved", "{}"),
        ];
        let response = fulfilment.handle(event).await;
        assert_eq!(shipments.0.lock().unwrap().len(), 1);
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["4"]);
    }

    #[tokio::test]
    async fn an_events_span_continues_the_order_in_a_batch_of_one_or_several() {
        use observability::traces::testing::{
            assert_consumer_tree, assert_each_names_its_order, invoke, producer,
        };
        for size in [1u8, 3] {
            let producers: Vec<String> = (0..size).map(producer).collect();
            let mut event = SqsEvent::default();
            event.records = producers
                .iter()
                .enumerate()
                .map(|(i, traceparent)| {
                    let detail = format!(
                        r#"{{"orderId":"ord-{i}","correlationId":"c","traceparent":"{traceparent}","lines":[{{"sku":"A","quantity":1,"unitPrice":5}}]}}"#
                    );
                    message(&i.to_string(), "OrderConfirmed", &detail)
                })
                .collect();
            let fulfilment = Fulfilment::new(
                &Config {
                    function_name: "shop-FulfilmentFunction".into(),
                    shipments_table: "shipments".into(),
                },
                Ports {
                    shipments: Arc::new(FakeShipments::default()),
                },
            );
            let (response, spans) =
                invoke("shop-FulfilmentFunction", event, |e| fulfilment.handle(e)).await;
            assert!(response.batch_item_failures.is_empty());
            let records = assert_consumer_tree(&spans, "shop-FulfilmentFunction", &producers);
            assert_each_names_its_order(&spans, &records, "event");
        }
    }
}

//! Order intake: turns each accepted order on the intake queue into one saga
//! execution named after the order, so a redelivered message never starts a second.
#![warn(missing_docs)]

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use shop_aws::{ConfigError, Settings};
use shop_domain::Order;
use shop_domain::events::DomainEvent;
use shop_domain::ports::{EventPublisher, PortError, SagaStarter, StartOutcome};
use shop_domain::services::{WaitLimits, saga_input};
use std::sync::Arc;
use tracing::Instrument;

/// Why a message was not processed (it is redelivered, then dead-lettered).
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The body is not an order.
    #[error("message is not an order: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Step Functions or EventBridge failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// What the function reads from its environment, parsed once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda): what its failures are counted
    /// under ([`observability::Metric::FunctionFailures`]).
    pub function_name: String,
    /// `STATE_MACHINE_ARN`: the saga each order starts.
    pub state_machine_arn: String,
    /// `EVENT_BUS_NAME`: where `OrderPlaced` is published.
    pub event_bus_name: String,
    /// `MAX_ORDER_WAIT_SECONDS` (900), `COMMAND_WORK_SECONDS` (60),
    /// `COMPENSATION_RETRY_SECONDS` (60) and `COMPENSATION_PATIENCE_SECONDS` (86400):
    /// the order's deadline, its steps' timeouts and its compensation's patience,
    /// written into the saga's input.
    pub limits: WaitLimits,
}

impl Config {
    /// Reads every setting, naming the first that is missing.
    pub fn from_env(env: Settings<'_>) -> Result<Self, ConfigError> {
        let seconds = |name, default: fn(&WaitLimits) -> u64| {
            env.parsed(
                name,
                default(&WaitLimits::DEFAULT),
                "a number of seconds above 0",
                |n: &u64| *n > 0,
            )
        };
        Ok(Self {
            function_name: env.function_name()?,
            state_machine_arn: env.required("STATE_MACHINE_ARN")?,
            event_bus_name: env.required("EVENT_BUS_NAME")?,
            limits: WaitLimits {
                max_order_wait_seconds: seconds("MAX_ORDER_WAIT_SECONDS", |l| {
                    l.max_order_wait_seconds
                })?,
                command_work_seconds: seconds("COMMAND_WORK_SECONDS", |l| l.command_work_seconds)?,
                compensation_retry_seconds: seconds("COMPENSATION_RETRY_SECONDS", |l| {
                    l.compensation_retry_seconds
                })?,
                compensation_patience_seconds: seconds("COMPENSATION_PATIENCE_SECONDS", |l| {
                    l.compensation_patience_seconds
                })?,
                authentication_timeout_seconds: seconds(
                    "PAYMENT_AUTHENTICATION_TIMEOUT_SECONDS",
                    |l| l.authentication_timeout_seconds,
                )?,
            },
        })
    }
}

/// The ports the function works through. A test replaces one to inject a fault.
#[derive(Clone)]
pub struct Ports {
    /// Starts the saga execution named after the order.
    pub saga: Arc<dyn SagaStarter>,
    /// Publishes `OrderPlaced`.
    pub events: Arc<dyn EventPublisher>,
}

impl Ports {
    /// The AWS adapters, with clients built once.
    pub fn aws(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        let sdk = &shop_aws::for_function(sdk, "order-intake");
        Self {
            saga: Arc::new(shop_aws::saga::SfnSagaStarter::new(
                aws_sdk_sfn::Client::new(sdk),
                config.state_machine_arn.clone(),
            )),
            events: Arc::new(shop_aws::events::EventBridgePublisher::new(
                aws_sdk_eventbridge::Client::new(sdk),
                config.event_bus_name.clone(),
            )),
        }
    }
}

/// The intake function with its ports.
pub struct Intake {
    /// Lambda's name of the function, its failures are counted under.
    function_name: String,
    ports: Ports,
    limits: WaitLimits,
}

impl Intake {
    /// Wires the function to its ports, with the wait limits of `config`.
    pub fn new(config: &Config, ports: Ports) -> Self {
        Self {
            function_name: config.function_name.clone(),
            ports,
            limits: config.limits,
        }
    }

    /// Processes a batch, reporting only the failed records.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let response = sqs_batch::process_batch(event, |message| self.start_saga(message)).await;
        observability::count_failures(&self.function_name, response.batch_item_failures.len());
        response
    }

    async fn start_saga(&self, message: SqsMessage) -> Result<(), IntakeError> {
        let order: Order = serde_json::from_str(message.body.as_deref().unwrap_or(""))?;
        let span = tracing::info_span!("order", correlation_id = %order.correlation_id, order.id = %order.order_id);
        async {
            let outcome = self
                .ports
                .saga
                .start(&order.order_id, &saga_input(&order, self.limits))
                .await?;
            // Published on redelivery too: if an earlier attempt started the saga and
            // died before publishing, this is the only chance. Consumers dedupe by id.
            self.ports
                .events
                .publish(&[DomainEvent::order_placed(&order)])
                .await?;
            match outcome {
                StartOutcome::Started => tracing::info!("saga started"),
                StartOutcome::AlreadyExists => {
                    tracing::info!("saga already running; redelivery ignored")
                }
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use serde_json::Value;
    use shop_domain::OrderId;
    use shop_domain::fakes::FakeEvents;
    use std::collections::HashSet;
    use std::sync::Mutex;

    #[derive(Default)]
    struct FakeSaga(Mutex<HashSet<OrderId>>);

    #[async_trait]
    impl SagaStarter for FakeSaga {
        async fn start(&self, order_id: &OrderId, _: &Value) -> Result<StartOutcome, PortError> {
            Ok(if self.0.lock().unwrap().insert(order_id.clone()) {
                StartOutcome::Started
            } else {
                StartOutcome::AlreadyExists
            })
        }
    }

    fn config(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let env: Vec<(&str, &str)> = [
            ("AWS_LAMBDA_FUNCTION_NAME", "shop-OrderIntakeFunction"),
            ("STATE_MACHINE_ARN", "arn"),
            ("EVENT_BUS_NAME", "bus"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
        shop_aws::settings::with_pairs(&env, Config::from_env)
    }

    #[test]
    fn the_wait_limits_are_read_and_validated() {
        assert_eq!(config(&[]).unwrap().limits, WaitLimits::DEFAULT);
        let read = config(&[
            ("MAX_ORDER_WAIT_SECONDS", "30"),
            ("COMMAND_WORK_SECONDS", "5"),
            ("COMPENSATION_RETRY_SECONDS", "2"),
            ("COMPENSATION_PATIENCE_SECONDS", "120"),
            ("PAYMENT_AUTHENTICATION_TIMEOUT_SECONDS", "300"),
        ])
        .unwrap();
        assert_eq!(
            read.limits,
            WaitLimits {
                max_order_wait_seconds: 30,
                command_work_seconds: 5,
                compensation_retry_seconds: 2,
                compensation_patience_seconds: 120,
                authentication_timeout_seconds: 300,
            }
        );
        for (name, bad) in [
            ("MAX_ORDER_WAIT_SECONDS", "0"),
            ("COMMAND_WORK_SECONDS", "soon"),
            ("COMPENSATION_RETRY_SECONDS", "0"),
            ("COMPENSATION_PATIENCE_SECONDS", "-1"),
        ] {
            let refused = config(&[(name, bad)]).unwrap_err();
            assert!(refused.to_string().contains(name), "{refused}");
        }
    }

    fn message(id: &str, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m
    }

    #[tokio::test]
    async fn starts_one_saga_per_order_and_fails_only_malformed_records() {
        // GIVEN an order delivered twice and a foreign message in the same batch
        let order = serde_json::json!({
            "orderId": "ord-1", "customerId": "c", "currency": "EUR", "total": 100,
            "lines": [{"sku": "A", "quantity": 1, "unitPrice": 100}], "status": "PENDING",
            "history": [], "paymentToken": "tok", "correlationId": "corr", "createdAt": "2026-01-01T00:00:00Z"
        })
        .to_string();
        let mut event = SqsEvent::default();
        event.records = vec![
            message("m1", &order),
            message("m2", "not json"),
            message("m3", &order),
        ];
        let saga = Arc::new(FakeSaga::default());
        let intake = Intake::new(
            &config(&[]).unwrap(),
            Ports {
                saga: saga.clone(),
                events: Arc::new(FakeEvents::default()),
            },
        );
        // WHEN the batch is handled
        let response = intake.handle(event).await;
        // THEN one saga runs and only the foreign message comes back
        assert_eq!(saga.0.lock().unwrap().len(), 1);
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["m2"]);
    }

    #[tokio::test]
    async fn an_orders_span_continues_the_api_requests_trace_in_a_batch_of_one_or_several() {
        use observability::traces::testing::{
            assert_consumer_tree, assert_each_names_its_order, attribute, invoke, producer,
        };
        for size in [1u8, 3] {
            let producers: Vec<String> = (0..size).map(producer).collect();
            let mut event = SqsEvent::default();
            event.records = producers
                .iter()
                .enumerate()
                .map(|(i, traceparent)| {
                    let order = serde_json::json!({
                        "orderId": format!("ord-{i}"), "customerId": "c", "currency": "EUR",
                        "total": 100, "lines": [{"sku": "A", "quantity": 1, "unitPrice": 100}],
                        "status": "PENDING", "history": [], "correlationId": "corr",
                        "createdAt": "2026-01-01T00:00:00Z", "traceparent": traceparent
                    });
                    message(&format!("m{i}"), &order.to_string())
                })
                .collect();
            let intake = Intake::new(
                &config(&[]).unwrap(),
                Ports {
                    saga: Arc::new(FakeSaga::default()),
                    events: Arc::new(FakeEvents::default()),
                },
            );
            let (response, spans) =
                invoke("shop-OrderIntakeFunction", event, |e| intake.handle(e)).await;
            assert!(response.batch_item_failures.is_empty());
            let records = assert_consumer_tree(&spans, "shop-OrderIntakeFunction", &producers);
            assert_each_names_its_order(&spans, &records, "order");
            let orders: Vec<_> = spans.iter().filter(|s| s.name == "order").collect();
            assert_eq!(orders.len(), records.len());
            for order in orders {
                assert_eq!(attribute(order, "correlation_id").as_deref(), Some("corr"));
            }
        }
    }
}

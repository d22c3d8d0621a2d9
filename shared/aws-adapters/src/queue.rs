//! The order intake queue, and the payments queue as the Stripe webhook writes to it.

use crate::port_error;
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageAttributeValue;
use shop_domain::ports::{OrderQueue, PaymentSettlements, PortError};
use shop_domain::{Order, OrderId};

/// Message attribute carrying the correlation id, so consumers can log it before
/// parsing the body.
pub const CORRELATION_ATTRIBUTE: &str = "correlationId";

/// Sends accepted orders to an intake queue: express orders to the priority lane, whose
/// consumer has its own concurrency, so a backlog of standard orders never delays them.
#[derive(Clone)]
pub struct SqsOrderQueue {
    client: Client,
    queue_url: String,
    express_queue_url: String,
}

impl SqsOrderQueue {
    /// Sender for the standard and the express intake queue.
    pub fn new(
        client: Client,
        queue_url: impl Into<String>,
        express_queue_url: impl Into<String>,
    ) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            express_queue_url: express_queue_url.into(),
        }
    }
}

#[async_trait]
impl OrderQueue for SqsOrderQueue {
    async fn enqueue(&self, order: &Order) -> Result<(), PortError> {
        let body = serde_json::to_value(order.without_payment_method())
            .map(crate::with_traceparent)
            .map_err(|e| port_error("queue.enqueue", e))?
            .to_string();
        let correlation = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(&order.correlation_id)
            .build()
            .map_err(|e| port_error("queue.enqueue", e))?;
        self.client
            .send_message()
            .queue_url(if order.express {
                &self.express_queue_url
            } else {
                &self.queue_url
            })
            .message_body(body)
            .message_attributes(CORRELATION_ATTRIBUTE, correlation)
            .send()
            .await
            .map_err(|e| port_error("queue.enqueue", e))?;
        Ok(())
    }
}

/// Sends `SettleAuthentication` commands to the payments queue: the Stripe webhook's
/// one effect, so it answers Stripe quickly and holds no payment permission.
#[derive(Clone)]
pub struct SqsPaymentSettlements {
    client: Client,
    queue_url: String,
}

impl SqsPaymentSettlements {
    /// Sender to the payments queue.
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl PaymentSettlements for SqsPaymentSettlements {
    async fn settle(&self, order_id: &OrderId, event_id: &str) -> Result<(), PortError> {
        let command = shop_domain::commands::PaymentCommand::SettleAuthentication {
            order_id: order_id.clone(),
            event_id: event_id.to_owned(),
        };
        let body = serde_json::to_string(&command).map_err(|e| port_error("payments.settle", e))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| port_error("payments.settle", e))?;
        Ok(())
    }
}

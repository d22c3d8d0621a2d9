//! The order intake queue.

use crate::port_error;
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageAttributeValue;
use shop_domain::Order;
use shop_domain::ports::{OrderQueue, PortError};

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
        let body = serde_json::to_string(&order.without_payment_method())
            .map_err(|e| port_error("queue.enqueue", e))?;
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

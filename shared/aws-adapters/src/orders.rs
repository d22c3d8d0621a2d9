//! Orders in DynamoDB: one item per order, status transitions by condition.

use crate::port_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use shop_domain::ports::{CancelOutcome, OrderStore, PortError};
use shop_domain::{Order, OrderId, OrderStatus, StatusChange};

/// Order records keyed by `orderId`.
#[derive(Clone)]
pub struct DynamoOrderStore {
    client: Client,
    table: String,
}

impl DynamoOrderStore {
    /// Store over the given table.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn key(order_id: &OrderId) -> (String, AttributeValue) {
        ("orderId".into(), AttributeValue::S(order_id.to_string()))
    }
}

#[async_trait]
impl OrderStore for DynamoOrderStore {
    async fn insert(&self, order: &Order) -> Result<(), PortError> {
        let item = serde_dynamo::to_item(order).map_err(|e| port_error("orders.insert", e))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(orderId)")
            .send()
            .await
            .map_err(|e| port_error("orders.insert", e))?;
        Ok(())
    }

    async fn get(&self, order_id: &OrderId) -> Result<Option<Order>, PortError> {
        let (k, v) = Self::key(order_id);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(k, v)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("orders.get", e))?;
        out.item
            .map(serde_dynamo::from_item)
            .transpose()
            .map_err(|e| port_error("orders.get", e))
    }

    async fn cancel(
        &self,
        order_id: &OrderId,
        reason: &str,
        at: &str,
    ) -> Result<CancelOutcome, PortError> {
        let (k, v) = Self::key(order_id);
        let change = StatusChange {
            status: OrderStatus::Cancelled,
            at: at.to_owned(),
            reason: Some(reason.to_owned()),
        };
        let change = serde_dynamo::to_attribute_value(&change)
            .map_err(|e| port_error("orders.cancel", e))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(k, v)
            .update_expression("SET #s = :cancelled, history = list_append(history, :change)")
            .condition_expression("attribute_exists(orderId) AND (#s = :pending OR #s = :reserved)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(
                ":cancelled",
                AttributeValue::S(OrderStatus::Cancelled.as_str().into()),
            )
            .expression_attribute_values(
                ":pending",
                AttributeValue::S(OrderStatus::Pending.as_str().into()),
            )
            .expression_attribute_values(
                ":reserved",
                AttributeValue::S(OrderStatus::Reserved.as_str().into()),
            )
            .expression_attribute_values(":change", AttributeValue::L(vec![change]))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                let order: Order = serde_dynamo::from_item(out.attributes.unwrap_or_default())
                    .map_err(|e| port_error("orders.cancel", e))?;
                Ok(CancelOutcome::Cancelled(Box::new(order)))
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(match self.get(order_id).await? {
                    None => CancelOutcome::NotFound,
                    Some(order) => CancelOutcome::NotCancellable(order.status),
                })
            }
            Err(e) => Err(port_error("orders.cancel", e)),
        }
    }
}

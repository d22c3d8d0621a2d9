//! Shipments in DynamoDB, created once per confirmed order.

use crate::port_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use shop_domain::ports::{PortError, ShipmentStore};
use shop_domain::{OrderId, OrderLine};

/// Shipments table adapter, keyed by `orderId`.
#[derive(Clone)]
pub struct DynamoShipmentStore {
    client: Client,
    table: String,
}

impl DynamoShipmentStore {
    /// Adapter over the given table.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl ShipmentStore for DynamoShipmentStore {
    async fn create(&self, order_id: &OrderId, lines: &[OrderLine]) -> Result<bool, PortError> {
        let lines = serde_dynamo::to_attribute_value(lines)
            .map_err(|e| port_error("shipments.create", e))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("orderId", AttributeValue::S(order_id.to_string()))
            .item("status", AttributeValue::S("READY_TO_SHIP".into()))
            .item("lines", lines)
            .item("createdAt", AttributeValue::S(shop_domain::now_rfc3339()))
            .condition_expression("attribute_not_exists(orderId)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(port_error("shipments.create", e)),
        }
    }
}

//! The payments ledger in DynamoDB: one item per order, moved between statuses only
//! by conditional writes so a compensation and a late charge cannot both win.

use crate::port_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use shop_domain::OrderId;
use shop_domain::payment::{LedgerRecord, LedgerStatus};
use shop_domain::ports::{PaymentLedger, PortError};

/// Ledger table adapter, keyed by `orderId`.
#[derive(Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

impl DynamoLedger {
    /// Adapter over the given table.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl PaymentLedger for DynamoLedger {
    async fn get(&self, order_id: &OrderId) -> Result<Option<LedgerRecord>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("orderId", AttributeValue::S(order_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("ledger.get", e))?;
        out.item
            .map(serde_dynamo::from_item)
            .transpose()
            .map_err(|e| port_error("ledger.get", e))
    }

    async fn transition(
        &self,
        order_id: &OrderId,
        from: Option<LedgerStatus>,
        to: &LedgerRecord,
    ) -> Result<bool, PortError> {
        debug_assert_eq!(&to.order_id, order_id);
        let item = serde_dynamo::to_item(to).map_err(|e| port_error("ledger.transition", e))?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let put = match from {
            None => put.condition_expression("attribute_not_exists(orderId)"),
            Some(status) => put
                .condition_expression("#s = :from")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":from", AttributeValue::S(status.as_str().into())),
        };
        conditional(put, "ledger.transition").await
    }

    async fn amend(&self, current: &LedgerRecord, to: &LedgerRecord) -> Result<bool, PortError> {
        debug_assert_eq!(current.order_id, to.order_id);
        let item = serde_dynamo::to_item(to).map_err(|e| port_error("ledger.amend", e))?;
        // Part refunds are only ever added, so their count says whether any was
        // recorded since `current` was read.
        let refunds = match current.refunds.len() {
            0 => "attribute_not_exists(#r)",
            _ => "size(#r) = :n",
        };
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(format!("#s = :from AND {refunds}"))
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#r", "refunds")
            .expression_attribute_values(
                ":from",
                AttributeValue::S(current.status.as_str().into()),
            );
        let put = match current.refunds.len() {
            0 => put,
            n => put.expression_attribute_values(":n", AttributeValue::N(n.to_string())),
        };
        conditional(put, "ledger.amend").await
    }
}

/// Sends a conditional put: false when its condition did not hold.
async fn conditional(
    put: aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder,
    operation: &'static str,
) -> Result<bool, PortError> {
    match put.send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(port_error(operation, e)),
    }
}

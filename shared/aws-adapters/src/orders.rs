//! Orders in DynamoDB: one item per order, status transitions by condition.
//!
//! A new order also carries `pendingShard`, which puts it in the sparse index
//! [`PENDING_INDEX`] (`pendingShard` hash, `createdAt` range) until the saga marks it
//! reserved or cancelled (the state machine removes the attribute) or the orphan
//! sweep forgets it. The shard spreads the index's writes over [`PENDING_SHARDS`]
//! partition keys, so placing orders is not capped by one index partition.

use crate::port_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use shop_domain::listing::{ListCursor, OrderPage, PageRequest};
use shop_domain::ports::{CancelOutcome, OrderPayments, OrderStore, PendingOrders, PortError};
use shop_domain::{CustomerId, Order, OrderId, OrderStatus, StatusChange};
use std::collections::HashMap;

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

/// The index of every order by owner (`customerId` hash, `createdAt` range) that
/// `GET /v1/orders` reads newest first.
pub const CUSTOMER_INDEX: &str = "ByCustomer";

/// The sparse index of orders stored as pending.
pub const PENDING_INDEX: &str = "PendingByCreatedAt";
/// How many partition keys the pending index spreads its orders over.
pub const PENDING_SHARDS: u32 = 4;

/// The shard of an order in the pending index: a stable hash of its id.
fn pending_shard(order_id: &OrderId) -> String {
    let hash = order_id
        .as_str()
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    (hash % PENDING_SHARDS).to_string()
}

impl DynamoOrderStore {
    /// A GetItem of the order's item.
    fn get_item(
        &self,
        order_id: &OrderId,
    ) -> aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder {
        let (k, v) = Self::key(order_id);
        self.client.get_item().table_name(&self.table).key(k, v)
    }
}

/// The payments function reads only the order's payment method (GetItem projected to
/// it) and writes only the shopper's action (an UpdateItem conditional on the order
/// waiting for its payment), with the two permissions those need.
#[async_trait]
impl OrderPayments for DynamoOrderStore {
    async fn of_order(&self, order_id: &OrderId) -> Result<Option<String>, PortError> {
        let out = self
            .get_item(order_id)
            .projection_expression("paymentToken")
            .send()
            .await
            .map_err(|e| port_error("orders.payment_method", e))?;
        Ok(out.item.map(|item| match item.get("paymentToken") {
            Some(AttributeValue::S(method)) => method.clone(),
            _ => String::new(),
        }))
    }

    async fn require_action(
        &self,
        order_id: &OrderId,
        client_secret: &str,
        at: &str,
    ) -> Result<bool, PortError> {
        const OPERATION: &str = "orders.require_action";
        let action: AttributeValue = serde_dynamo::to_attribute_value(shop_domain::PaymentAction {
            client_secret: client_secret.to_owned(),
        })
        .map_err(|e| port_error(OPERATION, e))?;
        let change: AttributeValue = serde_dynamo::to_attribute_value(StatusChange {
            status: OrderStatus::PaymentActionRequired,
            at: at.to_owned(),
            reason: None,
        })
        .map_err(|e| port_error(OPERATION, e))?;
        let status = |s: OrderStatus| AttributeValue::S(s.as_str().into());
        // First ask: the status moves and the history says when. Asked again (a
        // redelivered Authorize), only the action is written.
        let attempts = [
            (
                "SET #s = :action, paymentAction = :pa, history = list_append(history, :change)",
                OrderStatus::PaymentPending,
            ),
            (
                "SET paymentAction = :pa",
                OrderStatus::PaymentActionRequired,
            ),
        ];
        for (update, expected) in attempts {
            let (k, v) = Self::key(order_id);
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(k, v)
                .update_expression(update)
                .condition_expression("#s = :expected")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":expected", status(expected))
                .expression_attribute_values(":pa", action.clone());
            if expected == OrderStatus::PaymentPending {
                request = request
                    .expression_attribute_values(
                        ":action",
                        status(OrderStatus::PaymentActionRequired),
                    )
                    .expression_attribute_values(
                        ":change",
                        AttributeValue::L(vec![change.clone()]),
                    );
            }
            match request.send().await {
                Ok(_) => return Ok(true),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(port_error(OPERATION, e)),
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl OrderStore for DynamoOrderStore {
    async fn insert(&self, order: &Order) -> Result<(), PortError> {
        let mut item: std::collections::HashMap<String, AttributeValue> =
            serde_dynamo::to_item(order).map_err(|e| port_error("orders.insert", e))?;
        item.insert(
            "pendingShard".into(),
            AttributeValue::S(pending_shard(&order.order_id)),
        );
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
        let out = self
            .get_item(order_id)
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
        owner: Option<&CustomerId>,
    ) -> Result<CancelOutcome, PortError> {
        let (k, v) = Self::key(order_id);
        let change = StatusChange {
            status: OrderStatus::Cancelled,
            at: at.to_owned(),
            reason: Some(reason.to_owned()),
        };
        let change = serde_dynamo::to_attribute_value(&change)
            .map_err(|e| port_error("orders.cancel", e))?;
        let mut condition =
            String::from("attribute_exists(orderId) AND (#s = :pending OR #s = :reserved)");
        let mut update = self.client.update_item().table_name(&self.table).key(k, v);
        if let Some(owner) = owner {
            condition.push_str(" AND customerId = :owner");
            update = update
                .expression_attribute_values(":owner", AttributeValue::S(owner.as_str().into()));
        }
        let result = update
            .update_expression("SET #s = :cancelled, history = list_append(history, :change)")
            .condition_expression(condition)
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
            // A refusal carries the order as it is: no second read to tell why.
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
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
                let existing = match e.into_service_error() {
                    UpdateItemError::ConditionalCheckFailedException(refusal) => refusal.item,
                    _ => None,
                };
                let order: Option<Order> = existing
                    .map(serde_dynamo::from_item)
                    .transpose()
                    .map_err(|e| port_error("orders.cancel", e))?;
                Ok(match order {
                    Some(order) if owner.is_none_or(|caller| order.is_owned_by(caller)) => {
                        CancelOutcome::NotCancellable(order.status)
                    }
                    _ => CancelOutcome::NotFound,
                })
            }
            Err(e) => Err(port_error("orders.cancel", e)),
        }
    }

    async fn list_by_customer(
        &self,
        customer: &CustomerId,
        page: &PageRequest,
    ) -> Result<OrderPage, PortError> {
        let owner = AttributeValue::S(customer.as_str().to_owned());
        // One more than the page, so the last page is known without an empty extra one.
        let wanted = page.limit + 1;
        let mut start: Option<HashMap<String, AttributeValue>> = page.after.as_ref().map(|c| {
            HashMap::from([
                ("customerId".to_owned(), owner.clone()),
                (
                    "createdAt".to_owned(),
                    AttributeValue::S(c.created_at.clone()),
                ),
                (
                    "orderId".to_owned(),
                    AttributeValue::S(c.order_id.to_string()),
                ),
            ])
        });
        let mut orders: Vec<Order> = Vec::with_capacity(wanted);
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(CUSTOMER_INDEX)
                .key_condition_expression("customerId = :owner")
                .expression_attribute_values(":owner", owner.clone())
                .scan_index_forward(false)
                .limit(i32::try_from(wanted - orders.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| port_error("orders.list", e))?;
            for item in out.items.unwrap_or_default() {
                orders
                    .push(serde_dynamo::from_item(item).map_err(|e| port_error("orders.list", e))?);
            }
            start = out.last_evaluated_key;
            if orders.len() >= wanted || start.is_none() {
                break;
            }
        }
        let more = orders.len() > page.limit;
        orders.truncate(page.limit);
        let next = if more {
            orders.last().map(ListCursor::after)
        } else {
            None
        };
        Ok(OrderPage { orders, next })
    }
}

#[async_trait]
impl PendingOrders for DynamoOrderStore {
    async fn created_before(&self, cutoff: &str, limit: usize) -> Result<Vec<OrderId>, PortError> {
        let mut found: Vec<(String, OrderId)> = Vec::new();
        for shard in 0..PENDING_SHARDS {
            let mut pages = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(PENDING_INDEX)
                .key_condition_expression("pendingShard = :shard AND createdAt < :cutoff")
                .expression_attribute_values(":shard", AttributeValue::S(shard.to_string()))
                .expression_attribute_values(":cutoff", AttributeValue::S(cutoff.to_owned()))
                .into_paginator()
                .items()
                .send();
            let mut taken = 0;
            while taken < limit {
                let Some(item) = pages.next().await else {
                    break;
                };
                let item = item.map_err(|e| port_error("orders.pending", e))?;
                let text = |name: &str| match item.get(name) {
                    Some(AttributeValue::S(v)) => Some(v.clone()),
                    _ => None,
                };
                let id = text("orderId").and_then(|id| OrderId::parse(&id));
                if let (Some(id), Some(at)) = (id, text("createdAt")) {
                    found.push((at, id));
                    taken += 1;
                }
            }
        }
        found.sort();
        Ok(found.into_iter().take(limit).map(|(_, id)| id).collect())
    }

    async fn forget(&self, order_id: &OrderId) -> Result<(), PortError> {
        let (k, v) = Self::key(order_id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(k, v)
            .update_expression("REMOVE pendingShard")
            .condition_expression("attribute_exists(orderId)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(port_error("orders.forget", e)),
        }
    }
}

//! `GET /v1/orders/{id}` and `GET /v1/orders`: one's own order whole, and one's own
//! orders newest first, a page at a time.

use crate::problem::{Problem, ProblemType};
use crate::{OrdersApi, Reply, not_found, timestamp, unavailable};
use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use serde_json::{Value, json};
use shop_domain::listing::{ListCursor, PageRequest, PageRequestError};
use shop_domain::request;
use shop_domain::{CustomerId, Order, OrderId};

impl OrdersApi {
    pub(crate) async fn get(&self, raw_id: &str, caller: &CustomerId) -> Reply {
        let Some(order_id) = OrderId::parse(raw_id) else {
            return not_found(raw_id);
        };
        match self.orders.get(&order_id).await {
            Ok(Some(order)) if order.is_owned_by(caller) => Reply::json(200, view(&order)),
            Ok(_) => not_found(raw_id),
            Err(e) => unavailable("reading order", &e),
        }
    }

    pub(crate) async fn list(
        &self,
        request: &ApiGatewayV2httpRequest,
        caller: &CustomerId,
        links: &str,
    ) -> Reply {
        let query = &request.query_string_parameters;
        let page = match PageRequest::parse(query.first("limit"), query.first("cursor")) {
            Ok(page) => page,
            Err(e) => {
                let (kind, field) = match e {
                    PageRequestError::Limit => (ProblemType::InvalidQuery, "limit"),
                    PageRequestError::Cursor => (ProblemType::InvalidCursor, "cursor"),
                };
                return Problem::new(kind, e.to_string())
                    .with_errors(vec![request::FieldError {
                        field: field.into(),
                        detail: e.to_string(),
                    }])
                    .into();
            }
        };
        match self.orders.list_by_customer(caller, &page).await {
            Ok(found) => {
                let link = |cursor: Option<&ListCursor>| {
                    let mut link = format!("{links}/v1/orders?limit={}", page.limit);
                    if let Some(c) = cursor {
                        link.push_str("&cursor=");
                        link.push_str(&c.encode());
                    }
                    link
                };
                let orders: Vec<Value> = found
                    .orders
                    .iter()
                    .map(|o| summary(o, &format!("{links}/v1/orders/{}", o.order_id)))
                    .collect();
                let mut page_links = json!({ "self": link(page.after.as_ref()) });
                if let Some(next) = &found.next {
                    page_links["next"] = json!(link(Some(next)));
                }
                Reply::json(200, json!({ "orders": orders, "links": page_links }))
            }
            Err(e) => unavailable("listing orders", &e),
        }
    }
}

/// An order in a listing: enough to show it in a list, with the link to the whole.
fn summary(order: &Order, link: &str) -> Value {
    let mut summary = shared_fields(order);
    summary["links"] = json!({ "self": link });
    summary
}

/// The order as its owner sees it: everything but the payment token, with the
/// payment's client secret while the shopper must authenticate it.
pub fn view(order: &Order) -> Value {
    let mut view = shared_fields(order);
    view["customerId"] = json!(order.customer_id);
    let history: Vec<_> = order
        .history
        .iter()
        .map(|change| {
            let mut change = change.clone();
            change.at = timestamp(&change.at);
            change
        })
        .collect();
    view["history"] = json!(history);
    if let Some(action) = &order.payment_action {
        view["paymentAction"] = json!(action);
    }
    view
}

/// What a listing and a whole order both show.
fn shared_fields(order: &Order) -> Value {
    json!({
        "orderId": order.order_id,
        "status": order.status,
        "lines": order.lines,
        "total": order.total,
        "currency": order.currency,
        "createdAt": timestamp(&order.created_at),
        "express": order.express,
        "cancelReason": order.cancel_reason(),
    })
}

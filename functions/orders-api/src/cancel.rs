//! `POST /v1/orders/{id}/cancel`: one's own order cancelled while nothing is held for it
//! yet.

use crate::problem::{Problem, ProblemType};
use crate::{OrdersApi, Reply, not_found, unavailable, view};
use shop_domain::ports::CancelOutcome;
use shop_domain::{CustomerId, OrderId};

impl OrdersApi {
    pub(crate) async fn cancel(&self, raw_id: &str, caller: &CustomerId) -> Reply {
        let Some(order_id) = OrderId::parse(raw_id) else {
            return not_found(raw_id);
        };
        match self.service().cancel(&order_id, caller).await {
            Ok(CancelOutcome::Cancelled(order)) => Reply::json(200, view(&order)),
            Ok(CancelOutcome::NotFound) => not_found(raw_id),
            Ok(CancelOutcome::NotCancellable(status)) => Problem::new(
                ProblemType::OrderNotCancellable,
                format!(
                    "order is {}; it can be cancelled only before payment starts",
                    status.as_str()
                ),
            )
            .into(),
            Err(e) => unavailable("cancelling order", &e),
        }
    }
}

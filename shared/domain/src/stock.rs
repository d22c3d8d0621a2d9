//! Reserving and releasing stock for a whole order at once.

use crate::commands::{TaskError, TaskFailure};
use crate::events::DomainEvent;
use crate::order::{OrderId, OrderLine, Sku};
use crate::ports::{
    EventPublisher, PortError, ReleaseOutcome, ReserveOutcome, StockLevel, StockStore,
};

fn unavailable(e: PortError) -> TaskFailure {
    TaskFailure::unavailable(TaskError::InventoryUnavailable, &e)
}

/// The ports the inventory service works with.
pub struct InventoryService<'a> {
    /// Stock and reservations.
    pub stock: &'a dyn StockStore,
    /// Event bus.
    pub events: &'a dyn EventPublisher,
}

impl InventoryService<'_> {
    /// Holds stock for every line, or for none. Refuses orders already compensated.
    /// The lines were checked when the command was decoded ([`crate::commands::Command`]).
    pub async fn reserve(
        &self,
        order_id: &OrderId,
        correlation_id: &str,
        lines: &[OrderLine],
    ) -> Result<ReserveOutcome, TaskFailure> {
        let outcome = self
            .stock
            .reserve(order_id, lines)
            .await
            .map_err(unavailable)?;
        match &outcome {
            ReserveOutcome::Reserved => {
                self.events
                    .publish(&[DomainEvent::stock_reserved(order_id, correlation_id, lines)])
                    .await
                    .map_err(unavailable)?;
                Ok(outcome)
            }
            ReserveOutcome::AlreadyReserved => Ok(outcome),
            ReserveOutcome::OutOfStock(skus) => Err(TaskFailure::new(
                TaskError::OutOfStock,
                format!(
                    "not enough stock for {}",
                    skus.iter()
                        .map(Sku::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            ReserveOutcome::Tombstoned => Err(TaskFailure::new(
                TaskError::OrderCancelled,
                format!("order {order_id} was compensated; late reserve refused"),
            )),
        }
    }

    /// Compensation: gives held stock back; with nothing held, leaves a tombstone.
    pub async fn release(
        &self,
        order_id: &OrderId,
        correlation_id: &str,
        lines: &[OrderLine],
    ) -> Result<ReleaseOutcome, TaskFailure> {
        let outcome = self
            .stock
            .release(order_id, lines)
            .await
            .map_err(unavailable)?;
        if outcome == ReleaseOutcome::Released {
            self.events
                .publish(&[DomainEvent::stock_released(order_id, correlation_id, lines)])
                .await
                .map_err(unavailable)?;
        }
        Ok(outcome)
    }

    /// Operator path: adds units of a SKU (the decoder has checked the quantity).
    pub async fn restock(&self, sku: &Sku, quantity: u32) -> Result<StockLevel, TaskFailure> {
        self.stock.restock(sku, quantity).await.map_err(unavailable)
    }
}

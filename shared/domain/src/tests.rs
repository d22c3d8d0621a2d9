//! Behaviour of the domain services over in-memory ports.

use crate::commands::TaskError;
use crate::fakes::*;
use crate::listing::PageRequest;
use crate::order::*;
use crate::ports::{CancelOutcome, OrderStore, ReleaseOutcome, ReserveOutcome, StockStore};
use crate::request::parse_place_order;
use crate::services::{OrderService, PlaceOrderError};
use crate::stock::InventoryService;
use std::collections::HashMap;

fn catalog() -> FakeCatalog {
    FakeCatalog(HashMap::from([
        (Sku("MUG".into()), HashMap::from([(Currency::EUR, 1250)])),
        (
            Sku("TEE".into()),
            HashMap::from([(Currency::EUR, 1999), (Currency::USD, 2199)]),
        ),
    ]))
}

fn request(lines: &str) -> crate::request::PlaceOrderRequest {
    parse_place_order(
        format!(
            r#"{{"customerId":"c-1","currency":"EUR","paymentToken":"tok_ok","lines":{lines}}}"#
        )
        .as_bytes(),
        &CustomerId("c-1".into()),
    )
    .unwrap()
}

/// The orders API's service over these fakes.
fn service<'a>(
    catalog: &'a FakeCatalog,
    orders: &'a FakeOrders,
    queue: &'a FakeQueue,
) -> OrderService<'a> {
    OrderService {
        catalog,
        orders,
        queue,
    }
}

/// A pending order of one mug, placed through the service.
async fn one_mug(service: &OrderService<'_>) -> Order {
    service
        .place(request(r#"[{"sku":"MUG","quantity":1}]"#), "c")
        .await
        .unwrap()
}

fn line(sku: &str, quantity: u32) -> OrderLine {
    OrderLine {
        sku: Sku(sku.into()),
        quantity,
        unit_price: 100,
    }
}

#[tokio::test]
async fn placing_prices_from_the_catalog_and_enqueues() {
    // GIVEN a catalog and a working queue
    let (catalog, orders, queue) = (catalog(), FakeOrders::default(), FakeQueue::default());
    let service = service(&catalog, &orders, &queue);
    // WHEN an order for two mugs and one tee is placed
    let order = service
        .place(
            request(r#"[{"sku":"MUG","quantity":2},{"sku":"TEE","quantity":1}]"#),
            "corr-1",
        )
        .await
        .unwrap();
    // THEN the total comes from catalog prices and the order is pending and queued
    assert_eq!(order.total, 2 * 1250 + 1999);
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(*queue.sent.lock().unwrap(), vec![order.order_id.clone()]);
}

#[tokio::test]
async fn unknown_skus_are_named_and_nothing_is_stored() {
    let (catalog, orders, queue) = (catalog(), FakeOrders::default(), FakeQueue::default());
    let service = service(&catalog, &orders, &queue);
    let err = service
        .place(
            request(r#"[{"sku":"MUG","quantity":1},{"sku":"NOPE","quantity":1}]"#),
            "c",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, PlaceOrderError::UnknownSkus(ref e) if e[0].field == "lines[1].sku"));
    assert!(orders.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_intake_outage_cancels_the_stored_order_and_fails_the_call() {
    let (catalog, orders) = (catalog(), FakeOrders::default());
    let queue = FakeQueue {
        down: true,
        ..FakeQueue::default()
    };
    let service = service(&catalog, &orders, &queue);
    let err = service
        .place(request(r#"[{"sku":"MUG","quantity":1}]"#), "c")
        .await
        .unwrap_err();
    assert!(matches!(err, PlaceOrderError::Unavailable(_)));
    let stored: Vec<_> = orders
        .0
        .lock()
        .unwrap()
        .values()
        .map(|o| o.status)
        .collect();
    assert_eq!(stored, [OrderStatus::Cancelled]);
}

#[tokio::test]
async fn cancellation_is_refused_once_payment_started() {
    let (catalog, orders, queue) = (catalog(), FakeOrders::default(), FakeQueue::default());
    let service = service(&catalog, &orders, &queue);
    let order = one_mug(&service).await;
    orders
        .0
        .lock()
        .unwrap()
        .get_mut(&order.order_id)
        .unwrap()
        .status = OrderStatus::PaymentPending;
    assert_eq!(
        service
            .cancel(&order.order_id, &order.customer_id)
            .await
            .unwrap(),
        CancelOutcome::NotCancellable(OrderStatus::PaymentPending)
    );
}

#[tokio::test]
async fn another_customer_cannot_cancel_an_order_and_is_told_it_does_not_exist() {
    // GIVEN c-1's pending order
    let (catalog, orders, queue) = (catalog(), FakeOrders::default(), FakeQueue::default());
    let service = service(&catalog, &orders, &queue);
    let order = one_mug(&service).await;
    // WHEN c-2 cancels it
    let outcome = service
        .cancel(&order.order_id, &CustomerId("c-2".into()))
        .await
        .unwrap();
    // THEN c-2 hears "no such order" and the order is untouched
    assert_eq!(outcome, CancelOutcome::NotFound);
    let stored = orders.get(&order.order_id).await.unwrap().unwrap();
    assert_eq!(stored.status, OrderStatus::Pending);
    assert!(stored.is_owned_by(&CustomerId("c-1".into())));
    assert!(!stored.is_owned_by(&CustomerId("c-2".into())));
}

#[tokio::test]
async fn a_customer_pages_through_their_own_orders_newest_first() {
    // GIVEN five orders of c-1 created in the same instant and two of c-2
    let orders = FakeOrders::default();
    let mut mine = Vec::new();
    for (i, customer) in ["c-1", "c-2", "c-1", "c-1", "c-2", "c-1", "c-1"]
        .iter()
        .enumerate()
    {
        let mut order = crate::fakes::pending_order("MUG", 1, 100);
        order.customer_id = CustomerId((*customer).into());
        order.created_at = format!("2026-11-29T10:00:0{}Z", i / 3);
        orders.insert(&order).await.unwrap();
        if *customer == "c-1" {
            mine.push(order);
        }
    }
    mine.sort_by_key(|o| std::cmp::Reverse((o.created_at.clone(), o.order_id.clone())));
    // WHEN c-1 reads pages of two
    let caller = CustomerId("c-1".into());
    let mut seen = Vec::new();
    let mut page = PageRequest::parse(Some("2"), None).unwrap();
    loop {
        let got = orders.list_by_customer(&caller, &page).await.unwrap();
        assert!(got.orders.len() <= 2);
        seen.extend(got.orders.iter().map(|o| o.order_id.clone()));
        match got.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    // THEN every one of c-1's orders comes once, newest first, and none of c-2's
    let expected: Vec<_> = mine.iter().map(|o| o.order_id.clone()).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn reserve_is_all_or_nothing_and_idempotent() {
    // GIVEN one mug and five tees
    let (stock, events) = (
        FakeStock::with(&[("MUG", 1), ("TEE", 5)]),
        FakeEvents::default(),
    );
    let inventory = InventoryService {
        stock: &stock,
        events: &events,
    };
    let order = OrderId::generate();
    // WHEN an order wants two mugs and one tee
    let err = inventory
        .reserve(&order, "c", &[line("MUG", 2), line("TEE", 1)])
        .await
        .unwrap_err();
    // THEN nothing is held and the failure is named OutOfStock
    assert_eq!(err.error, TaskError::OutOfStock);
    assert_eq!(
        stock
            .level(&Sku("TEE".into()))
            .await
            .unwrap()
            .unwrap()
            .available,
        5
    );

    let ok = OrderId::generate();
    let lines = [line("MUG", 1), line("TEE", 2)];
    assert_eq!(
        inventory.reserve(&ok, "c", &lines).await.unwrap(),
        ReserveOutcome::Reserved
    );
    assert_eq!(
        inventory.reserve(&ok, "c", &lines).await.unwrap(),
        ReserveOutcome::AlreadyReserved
    );
    let tee = stock.level(&Sku("TEE".into())).await.unwrap().unwrap();
    assert_eq!((tee.available, tee.reserved), (3, 2));
    assert_eq!(events.detail_types(), ["StockReserved"]);
}

#[tokio::test]
async fn release_leaves_a_tombstone_that_refuses_a_late_reserve() {
    let (stock, events) = (FakeStock::with(&[("MUG", 3)]), FakeEvents::default());
    let inventory = InventoryService {
        stock: &stock,
        events: &events,
    };
    let order = OrderId::generate();
    assert_eq!(
        inventory
            .release(&order, "c", &[line("MUG", 1)])
            .await
            .unwrap(),
        ReleaseOutcome::NothingHeld
    );
    let late = inventory
        .reserve(&order, "c", &[line("MUG", 1)])
        .await
        .unwrap_err();
    assert_eq!(late.error, TaskError::OrderCancelled);
    assert_eq!(
        stock
            .level(&Sku("MUG".into()))
            .await
            .unwrap()
            .unwrap()
            .available,
        3
    );
}

#[tokio::test]
async fn a_release_announces_only_units_it_gave_back_and_a_restock_answers_the_level() {
    let (stock, events) = (FakeStock::with(&[("MUG", 3)]), FakeEvents::default());
    let inventory = InventoryService {
        stock: &stock,
        events: &events,
    };
    let order = OrderId::generate();
    inventory
        .reserve(&order, "c", &[line("MUG", 2)])
        .await
        .unwrap();
    for expected in [ReleaseOutcome::Released, ReleaseOutcome::AlreadyReleased] {
        assert_eq!(
            inventory
                .release(&order, "c", &[line("MUG", 2)])
                .await
                .unwrap(),
            expected
        );
        assert_eq!(
            events.detail_types(),
            ["StockReserved", "StockReleased"],
            "after {expected:?}"
        );
    }
    let level = inventory.restock(&Sku("MUG".into()), 4).await.unwrap();
    assert_eq!((level.available, level.reserved), (7, 0));
}

#[tokio::test]
async fn the_saga_starts_with_everything_it_needs_about_the_order() {
    let (catalog, orders, queue) = (catalog(), FakeOrders::default(), FakeQueue::default());
    let order = one_mug(&service(&catalog, &orders, &queue)).await;
    let limits = crate::services::WaitLimits {
        max_order_wait_seconds: 600,
        command_work_seconds: 45,
        compensation_retry_seconds: 30,
        compensation_patience_seconds: 3_600,
        authentication_timeout_seconds: 300,
    };
    let input = crate::services::saga_input(&order, limits);
    assert_eq!(
        input,
        crate::services::saga_input(&order, limits),
        "the same every time"
    );
    let placed = crate::parse_rfc3339(&order.created_at).unwrap();
    let deadline = crate::parse_rfc3339(input["deadline"].as_str().unwrap()).unwrap();
    assert_eq!(deadline - placed, time::Duration::seconds(600));
    assert_eq!(input["stepTimeoutSeconds"], 645);
    assert_eq!(input["compensationRetrySeconds"], 30);
    assert_eq!(input["authenticationTimeoutSeconds"], 300);
    let until = crate::parse_rfc3339(input["compensateUntil"].as_str().unwrap()).unwrap();
    assert_eq!(until - placed, time::Duration::seconds(645 + 30 + 3_600));
    assert_eq!(input["orderId"], order.order_id.as_str());
    assert_eq!(input["customerId"], "c-1");
    assert_eq!(input["total"], 1250);
    assert_eq!(input["currency"], "EUR");
    assert_eq!(input["lines"][0]["sku"], "MUG");
    assert!(
        input.get("paymentToken").is_none(),
        "no payment method in the saga: {input}"
    );
    assert_eq!(input["correlationId"], "c");
}

//! Adapter contract tests against moto server over HTTP (started by
//! `scripts/with-moto.sh`). Tables and queues come from `template.yaml`, so the
//! adapters are checked against the key schemas they will meet on AWS.

use aws_sdk_dynamodb::types::AttributeValue;
use idempotency::{Begin, IdempotencyStore, Record, RecordStatus};
use local_runtime::Template;
use local_runtime::provision::{Clients, Stack, provision};
use serde_json::json;
use shop_aws::catalog::{CatalogItem, DynamoCatalog};
use shop_aws::events::EventBridgePublisher;
use shop_aws::idempotency_store::DynamoIdempotencyStore;
use shop_aws::ledger::DynamoLedger;
use shop_aws::orders::DynamoOrderStore;
use shop_aws::queue::SqsOrderQueue;
use shop_aws::saga::{SfnSagaStarter, SfnTaskCallbacks};
use shop_aws::shipments::DynamoShipmentStore;
use shop_aws::stock::DynamoStockStore;
use shop_domain::events::DomainEvent;
use shop_domain::listing::PageRequest;
use shop_domain::payment::{LedgerRecord, LedgerStatus};
use shop_domain::ports::*;
use shop_domain::{Currency, CustomerId, Order, OrderId, OrderLine, OrderStatus, Sku};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

async fn stack() -> (aws_config::SdkConfig, Stack) {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: run through scripts/with-moto.sh or scripts/test.sh");
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    let template = Template::load(&root).unwrap();
    let prefix = format!("ad{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let stack = provision(
        &template,
        &prefix,
        &BTreeMap::new(),
        &Clients::new(&sdk),
        "us-east-1",
    )
    .await
    .unwrap();
    (sdk, stack)
}

fn line(sku: &str, quantity: u32) -> OrderLine {
    OrderLine {
        sku: Sku(sku.into()),
        quantity,
        unit_price: 100,
    }
}

#[tokio::test]
async fn stock_reservations_are_all_or_nothing_idempotent_and_tombstoned() {
    let (sdk, stack) = stack().await;
    let stock = DynamoStockStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &stack.tables["InventoryTable"],
    );
    stock.restock(&Sku("A".into()), 5).await.unwrap();
    stock.restock(&Sku("B".into()), 1).await.unwrap();

    let short = OrderId::generate();
    assert_eq!(
        stock
            .reserve(&short, &[line("A", 2), line("B", 2)])
            .await
            .unwrap(),
        ReserveOutcome::OutOfStock(vec![Sku("B".into())])
    );
    assert_eq!(
        stock
            .level(&Sku("A".into()))
            .await
            .unwrap()
            .unwrap()
            .available,
        5
    );

    let order = OrderId::generate();
    let lines = [line("A", 2), line("B", 1)];
    assert_eq!(
        stock.reserve(&order, &lines).await.unwrap(),
        ReserveOutcome::Reserved
    );
    assert_eq!(
        stock.reserve(&order, &lines).await.unwrap(),
        ReserveOutcome::AlreadyReserved
    );
    let a = stock.level(&Sku("A".into())).await.unwrap().unwrap();
    assert_eq!((a.available, a.reserved), (3, 2));
    assert_eq!(
        stock.release(&order, &lines).await.unwrap(),
        ReleaseOutcome::Released
    );
    assert_eq!(
        stock.release(&order, &lines).await.unwrap(),
        ReleaseOutcome::AlreadyReleased
    );
    assert_eq!(
        stock.reserve(&order, &lines).await.unwrap(),
        ReserveOutcome::Tombstoned
    );
    let a = stock.level(&Sku("A".into())).await.unwrap().unwrap();
    assert_eq!((a.available, a.reserved), (5, 0));

    let never = OrderId::generate();
    assert_eq!(
        stock.release(&never, &lines).await.unwrap(),
        ReleaseOutcome::NothingHeld
    );
    assert_eq!(
        stock.reserve(&never, &lines).await.unwrap(),
        ReserveOutcome::Tombstoned
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_sku_sells_out_exactly_under_concurrent_reservations() {
    let (sdk, stack) = stack().await;
    let table = &stack.tables["InventoryTable"];
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let stock = DynamoStockStore::new(dynamodb.clone(), table);
    stock.restock(&Sku("HOT".into()), 7).await.unwrap();
    // The emulator cancels overlapping transactions on one item, as DynamoDB does:
    // sent raw, concurrent updates of the SKU conflict.
    let raw = (0..12).map(|_| {
        let update = aws_sdk_dynamodb::types::Update::builder()
            .table_name(table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S("SKU#HOT".into()),
            )
            .update_expression("SET touched = :t")
            .expression_attribute_values(":t", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
            .build()
            .unwrap();
        dynamodb
            .transact_write_items()
            .transact_items(
                aws_sdk_dynamodb::types::TransactWriteItem::builder()
                    .update(update)
                    .build(),
            )
            .send()
    });
    let conflicts = futures::future::join_all(raw)
        .await
        .iter()
        .filter(|r| format!("{r:?}").contains("TransactionConflict"))
        .count();
    assert!(
        conflicts > 0,
        "no conflict among 12 concurrent transactions"
    );
    // Through the adapter, which sends a conflicted transaction again, every unit
    // sells and nothing more.
    let attempts = (0..20).map(|_| {
        let stock = stock.clone();
        async move { stock.reserve(&OrderId::generate(), &[line("HOT", 1)]).await }
    });
    let outcomes = futures::future::join_all(attempts).await;
    let count = |want: fn(&ReserveOutcome) -> bool| {
        outcomes
            .iter()
            .filter(|o| o.as_ref().is_ok_and(want))
            .count()
    };
    assert_eq!(
        count(|o| matches!(o, ReserveOutcome::Reserved)),
        7,
        "{outcomes:?}"
    );
    assert_eq!(
        count(|o| matches!(o, ReserveOutcome::OutOfStock(_))),
        13,
        "{outcomes:?}"
    );
    let hot = stock.level(&Sku("HOT".into())).await.unwrap().unwrap();
    assert_eq!((hot.available, hot.reserved), (0, 7));
}

#[tokio::test]
async fn ledger_transitions_are_conditional() {
    let (sdk, stack) = stack().await;
    let ledger = DynamoLedger::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &stack.tables["PaymentsTable"],
    );
    let order = OrderId::generate();
    let record = |status| LedgerRecord {
        order_id: order.clone(),
        status,
        amount: 100,
        currency: Some(Currency::EUR),
        charge_id: None,
        payment_method: Some("pm_card_visa".into()),
        decline_code: None,
        authentication_token: None,
        refunds: Default::default(),
        updated_at: "2026-01-01T00:00:00Z".into(),
    };
    assert!(
        ledger
            .transition(&order, None, &record(LedgerStatus::Charging))
            .await
            .unwrap()
    );
    assert!(
        !ledger
            .transition(&order, None, &record(LedgerStatus::Voided))
            .await
            .unwrap()
    );
    assert!(
        !ledger
            .transition(
                &order,
                Some(LedgerStatus::Captured),
                &record(LedgerStatus::Refunded)
            )
            .await
            .unwrap()
    );
    assert!(
        ledger
            .transition(
                &order,
                Some(LedgerStatus::Charging),
                &record(LedgerStatus::Captured)
            )
            .await
            .unwrap()
    );
    assert_eq!(
        ledger.get(&order).await.unwrap().unwrap(),
        record(LedgerStatus::Captured),
        "the record reads back whole, its payment method included"
    );

    // Part refunds: an amendment holds only against the record as it was read.
    let captured = record(LedgerStatus::Captured);
    let with = |base: &LedgerRecord, reference: &str, amount: u64| {
        let mut next = base.clone();
        next.refunds.insert(reference.into(), amount);
        next
    };
    let first = with(&captured, "RMA-1", 30);
    assert!(ledger.amend(&captured, &first).await.unwrap());
    assert!(
        !ledger
            .amend(&captured, &with(&captured, "RMA-2", 80))
            .await
            .unwrap(),
        "a part refund computed from before RMA-1 counts against a stale remainder"
    );
    let second = with(&first, "RMA-2", 70);
    assert!(ledger.amend(&first, &second).await.unwrap());
    assert!(
        !ledger
            .amend(
                &first,
                &LedgerRecord {
                    status: LedgerStatus::Refunded,
                    ..first.clone()
                }
            )
            .await
            .unwrap(),
        "a compensation that read one part fewer reads again"
    );
    let refunded = LedgerRecord {
        status: LedgerStatus::Refunded,
        ..second.clone()
    };
    assert!(ledger.amend(&second, &refunded).await.unwrap());
    assert!(
        !ledger.amend(&second, &second).await.unwrap(),
        "the status is part of the condition"
    );
    let stored = ledger.get(&order).await.unwrap().unwrap();
    assert_eq!(stored, refunded);
    assert_eq!(stored.refunded(), 100);
}

#[tokio::test]
async fn idempotency_records_lock_complete_and_release() {
    let (sdk, stack) = stack().await;
    let store = DynamoIdempotencyStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &stack.tables["IdempotencyTable"],
    );
    let record = Record {
        key: "POST /v1/orders#k".into(),
        payload_hash: "abc".into(),
        status: RecordStatus::InProgress,
        expires_at: 2_000_000_000,
        lock_expires_at: 2_000_000_000,
        response: None,
        lock_token: Record::lock_token_new(),
    };
    assert_eq!(store.begin(&record, 1_000).await.unwrap(), Begin::Acquired);
    assert!(
        matches!(store.begin(&record, 1_000).await.unwrap(), Begin::Existing(r) if r.status == RecordStatus::InProgress)
    );
    // A lock whose time has passed can be taken over.
    assert_eq!(
        store.begin(&record, 2_000_000_001).await.unwrap(),
        Begin::Acquired
    );
    // The lock lapsed and another call took the key over: the first call can neither
    // complete nor release it.
    let taker = Record {
        lock_token: Record::lock_token_new(),
        ..record.clone()
    };
    assert_eq!(
        store.begin(&taker, 2_000_000_001).await.unwrap(),
        Begin::Acquired
    );
    assert!(
        !store
            .complete(&record, &json!({"status": 500}))
            .await
            .unwrap()
    );
    assert!(!store.release(&record).await.unwrap());
    assert!(
        store
            .complete(&taker, &json!({"status": 202}))
            .await
            .unwrap()
    );
    match store.begin(&record, 1_000).await.unwrap() {
        Begin::Existing(r) => {
            assert_eq!(r.status, RecordStatus::Completed);
            assert_eq!(r.response, Some(json!({"status": 202})));
            assert_eq!(r.payload_hash, "abc");
        }
        other => panic!("expected the completed record, got {other:?}"),
    }
    assert!(
        !store.release(&taker).await.unwrap(),
        "a completed record is an answer, not a lock to release"
    );
    // A failed call releases its own lock.
    let failed = Record {
        key: "POST /v1/orders#failed".into(),
        ..record.clone()
    };
    assert_eq!(store.begin(&failed, 1_000).await.unwrap(), Begin::Acquired);
    assert!(store.release(&failed).await.unwrap());
    assert_eq!(store.begin(&failed, 1_000).await.unwrap(), Begin::Acquired);
    // A damaged record is refused, not read as defaults.
    aws_sdk_dynamodb::Client::new(&sdk)
        .put_item()
        .table_name(&stack.tables["IdempotencyTable"])
        .item(
            "key",
            aws_sdk_dynamodb::types::AttributeValue::S("damaged".into()),
        )
        .item(
            "status",
            aws_sdk_dynamodb::types::AttributeValue::S("COMPLETED".into()),
        )
        .item(
            "expiresAt",
            aws_sdk_dynamodb::types::AttributeValue::N("2000000000".into()),
        )
        .send()
        .await
        .unwrap();
    let damaged = Record {
        key: "damaged".into(),
        ..record.clone()
    };
    let refused = store.begin(&damaged, 1_000).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("\"damaged\": response is missing or malformed"),
        "{refused}"
    );
    // A store that cannot be reached is an error, never a key "in progress".
    let missing = DynamoIdempotencyStore::new(aws_sdk_dynamodb::Client::new(&sdk), "no-such-table");
    assert!(missing.begin(&record, 1_000).await.is_err());
}

fn order() -> Order {
    shop_domain::fakes::pending_order("A", 1, 100)
}

#[tokio::test]
async fn the_payments_function_reads_an_orders_payment_method_and_nothing_else() {
    let (sdk, stack) = stack().await;
    let store = DynamoOrderStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &stack.tables["OrdersTable"],
    );
    let o = order();
    store.insert(&o).await.unwrap();
    assert_eq!(
        OrderPayments::of_order(&store, &o.order_id).await.unwrap(),
        Some("tok_visa".to_owned())
    );
    assert_eq!(
        OrderPayments::of_order(&store, &OrderId::generate())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_payment_action_is_written_only_on_an_order_waiting_for_its_payment() {
    let (sdk, stack) = stack().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = &stack.tables["OrdersTable"];
    let store = DynamoOrderStore::new(client.clone(), table);
    let o = order();
    store.insert(&o).await.unwrap();
    let set_status = |status: OrderStatus| {
        client
            .update_item()
            .table_name(table)
            .key("orderId", AttributeValue::S(o.order_id.to_string()))
            .update_expression("SET #s = :s")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":s", AttributeValue::S(status.as_str().into()))
            .send()
    };
    let ask =
        |secret: &'static str| store.require_action(&o.order_id, secret, "2026-12-03T00:00:00Z");
    // A pending order is not asked: its stock is not even held.
    assert!(!ask("pi_1_secret_a").await.unwrap());
    set_status(OrderStatus::PaymentPending).await.unwrap();
    assert!(ask("pi_1_secret_a").await.unwrap());
    // Asked again (a redelivered Authorize): the action is written, the history is not.
    assert!(ask("pi_1_secret_b").await.unwrap());
    let stored = store.get(&o.order_id).await.unwrap().unwrap();
    assert_eq!(stored.status, OrderStatus::PaymentActionRequired);
    assert_eq!(
        stored.payment_action.unwrap().client_secret,
        "pi_1_secret_b"
    );
    let asked: Vec<_> = stored
        .history
        .iter()
        .filter(|c| c.status == OrderStatus::PaymentActionRequired)
        .collect();
    assert_eq!(asked.len(), 1);
    set_status(OrderStatus::Cancelled).await.unwrap();
    assert!(!ask("pi_1_secret_c").await.unwrap());
    assert!(
        store
            .require_action(&OrderId::generate(), "s", "2026-12-03T00:00:00Z")
            .await
            .is_ok_and(|asked| !asked),
        "no such order"
    );
}

#[tokio::test]
async fn orders_round_trip_and_cancel_only_while_cancellable() {
    let (sdk, stack) = stack().await;
    let orders = DynamoOrderStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &stack.tables["OrdersTable"],
    );
    let o = order();
    orders.insert(&o).await.unwrap();
    assert!(
        orders.insert(&o).await.is_err(),
        "ids are never overwritten"
    );
    assert_eq!(orders.get(&o.order_id).await.unwrap().unwrap(), o);
    let stranger = CustomerId("someone-else".into());
    assert_eq!(
        orders
            .cancel(&o.order_id, "cancelled-by-customer", "t", Some(&stranger))
            .await
            .unwrap(),
        CancelOutcome::NotFound,
        "another customer's cancel is told the order does not exist"
    );
    assert_eq!(
        orders.get(&o.order_id).await.unwrap().unwrap().status,
        OrderStatus::Pending
    );
    match orders
        .cancel(
            &o.order_id,
            "cancelled-by-customer",
            "2026-01-01T00:00:01Z",
            Some(&o.customer_id),
        )
        .await
        .unwrap()
    {
        CancelOutcome::Cancelled(c) => {
            assert_eq!(c.status, OrderStatus::Cancelled);
            assert_eq!(c.cancel_reason(), Some("cancelled-by-customer"));
            assert_eq!(c.history.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        orders
            .cancel(&o.order_id, "again", "t", Some(&o.customer_id))
            .await
            .unwrap(),
        CancelOutcome::NotCancellable(OrderStatus::Cancelled)
    );
    assert_eq!(
        orders
            .cancel(&o.order_id, "again", "t", Some(&stranger))
            .await
            .unwrap(),
        CancelOutcome::NotFound
    );
    assert_eq!(
        orders
            .cancel(&OrderId::generate(), "x", "t", None)
            .await
            .unwrap(),
        CancelOutcome::NotFound
    );
}

#[tokio::test]
async fn a_customer_lists_their_orders_newest_first_through_the_owner_index() {
    // GIVEN 7 orders of one customer (three created in the same second) and 3 of another
    let (sdk, stack) = stack().await;
    let orders = DynamoOrderStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &stack.tables["OrdersTable"],
    );
    let (me, other) = (CustomerId("me".into()), CustomerId("other".into()));
    let mut mine = Vec::new();
    for i in 0..10 {
        let mut o = order();
        o.customer_id = if i % 3 == 2 {
            other.clone()
        } else {
            me.clone()
        };
        o.created_at = format!("2026-11-29T10:00:{:02}Z", i / 3);
        orders.insert(&o).await.unwrap();
        if o.customer_id == me {
            mine.push(o);
        }
    }
    mine.sort_by_key(|o| std::cmp::Reverse((o.created_at.clone(), o.order_id.clone())));
    // WHEN it pages through them three at a time
    let mut page = PageRequest::parse(Some("3"), None).unwrap();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let got = orders.list_by_customer(&me, &page).await.unwrap();
        pages += 1;
        seen.extend(got.orders.into_iter().map(|o| o.order_id));
        match got.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    // THEN each of its orders comes exactly once, newest first, in three pages
    assert_eq!(
        seen,
        mine.iter().map(|o| o.order_id.clone()).collect::<Vec<_>>()
    );
    assert_eq!(pages, 3);
    // AND a page that holds them all has no next link
    let all = PageRequest::parse(Some("7"), None).unwrap();
    let got = orders.list_by_customer(&me, &all).await.unwrap();
    assert_eq!((got.orders.len(), got.next), (7, None));
}

#[tokio::test]
async fn the_pending_index_lists_the_oldest_pending_orders_across_its_shards() {
    // GIVEN twelve pending orders, a minute apart, spread over the index's shards
    let (sdk, stack) = stack().await;
    let orders = DynamoOrderStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &stack.tables["OrdersTable"],
    );
    let mut placed = Vec::new();
    for minute in 0..12 {
        let mut o = order();
        o.created_at = format!("2026-11-29T10:{minute:02}:00.000Z");
        orders.insert(&o).await.unwrap();
        placed.push(o.order_id);
    }
    // WHEN the sweep asks for those created before 10:08, five at a time
    let cutoff = "2026-11-29T10:08:00.000Z";
    // THEN it gets the five oldest, oldest first, and the order at the cutoff never
    assert_eq!(orders.created_before(cutoff, 5).await.unwrap(), placed[..5]);
    assert_eq!(
        orders.created_before(cutoff, 100).await.unwrap(),
        placed[..8]
    );
    // AND an order forgotten (no longer pending) leaves the index
    orders.forget(&placed[0]).await.unwrap();
    orders.forget(&OrderId::generate()).await.unwrap();
    assert_eq!(
        orders.created_before(cutoff, 100).await.unwrap(),
        placed[1..8]
    );
}

#[tokio::test]
async fn an_unreachable_table_is_an_error_never_a_refused_condition() {
    let (sdk, _) = stack().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let order = OrderId::generate();
    let ledger = DynamoLedger::new(client.clone(), "no-such-table");
    let record = LedgerRecord {
        order_id: order.clone(),
        status: LedgerStatus::Charging,
        amount: 100,
        currency: Some(Currency::EUR),
        charge_id: None,
        payment_method: None,
        decline_code: None,
        authentication_token: None,
        refunds: Default::default(),
        updated_at: "2026-01-01T00:00:00Z".into(),
    };
    assert!(ledger.transition(&order, None, &record).await.is_err());
    let orders = DynamoOrderStore::new(client, "no-such-table");
    assert!(
        orders
            .cancel(
                &order,
                "cancelled-by-customer",
                "2026-01-01T00:00:00Z",
                None
            )
            .await
            .is_err()
    );
    assert!(orders.forget(&order).await.is_err());
    // A state machine that cannot be named is an error too, never a run that exists
    // or never started.
    let nowhere = SfnSagaStarter::new(aws_sdk_sfn::Client::new(&sdk), "not-an-arn");
    assert!(nowhere.start(&order, &json!({})).await.is_err());
    assert!(nowhere.run_state(&order).await.is_err());
}

#[tokio::test]
async fn a_secret_field_is_read_and_a_missing_one_named() {
    let (sdk, _) = stack().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("ad{}-key", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    client
        .create_secret()
        .name(&name)
        .secret_string(r#"{"apiKey":"sk_test_0123456789abcdef"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        shop_aws::secrets::read_json_field(&client, &name, "apiKey")
            .await
            .unwrap(),
        "sk_test_0123456789abcdef"
    );
    let missing = shop_aws::secrets::read_json_field(&client, &name, "other")
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("other"), "{missing}");
    assert!(
        shop_aws::secrets::read_json_field(&client, "no-such-secret", "apiKey")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn catalog_prices_known_skus_only() {
    let (sdk, stack) = stack().await;
    let catalog = DynamoCatalog::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &stack.tables["CatalogTable"],
    );
    for (sku, price) in [("A", 100), ("B", 250)] {
        catalog
            .put(&CatalogItem {
                sku: Sku(sku.into()),
                name: sku.into(),
                prices: HashMap::from([(Currency::EUR, price)]),
            })
            .await
            .unwrap();
    }
    let prices = catalog
        .prices(&[Sku("A".into()), Sku("B".into()), Sku("NOPE".into())])
        .await
        .unwrap();
    assert_eq!(prices.len(), 2);
    assert_eq!(prices[&Sku("B".into())][&Currency::EUR], 250);
}

#[tokio::test]
async fn publishing_checks_every_entry_and_chunks_large_batches() {
    // GIVEN the stack's bus with a rule that copies every shop event to a queue
    let (sdk, stack) = stack().await;
    let bus = stack.buses.values().next().unwrap().clone();
    let (sqs, bridge) = (
        aws_sdk_sqs::Client::new(&sdk),
        aws_sdk_eventbridge::Client::new(&sdk),
    );
    let tap_url = local_runtime::provision::tap_events(
        &Clients::new(&sdk),
        &bus,
        &format!("{}-tap", stack.prefix),
    )
    .await
    .unwrap();
    // WHEN 23 events are published: more than two PutEvents calls' worth
    let publisher = EventBridgePublisher::new(bridge.clone(), bus);
    let events: Vec<_> = (0..23)
        .map(|i| DomainEvent::payment_declined(&OrderId::generate(), "c", &format!("r{i}")))
        .collect();
    publisher.publish(&events).await.unwrap();
    // THEN every one of them reached the bus, each once
    let mut reasons = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&tap_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let Some(messages) = received.messages.filter(|m| !m.is_empty()) else {
            break;
        };
        for m in messages {
            let envelope: serde_json::Value =
                serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
            reasons.push(envelope["detail"]["reason"].as_str().unwrap().to_owned());
            sqs.delete_message()
                .queue_url(&tap_url)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    reasons.sort_by_key(|r| r[1..].parse::<u32>().unwrap());
    let wanted: Vec<String> = (0..23).map(|i| format!("r{i}")).collect();
    assert_eq!(reasons, wanted);

    let missing = EventBridgePublisher::new(bridge, "no-such-bus");
    assert!(
        missing.publish(&events[..1]).await.is_err(),
        "a rejected entry is an error, not silence"
    );
}

#[tokio::test]
async fn a_shipment_is_created_once_per_order() {
    let (sdk, stack) = stack().await;
    let shipments = DynamoShipmentStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &stack.tables["ShipmentsTable"],
    );
    let order = OrderId::generate();
    assert!(shipments.create(&order, &[line("A", 1)]).await.unwrap());
    assert!(
        !shipments.create(&order, &[line("A", 2)]).await.unwrap(),
        "a duplicate OrderConfirmed finds the shipment there"
    );
    let stored = aws_sdk_dynamodb::Client::new(&sdk)
        .get_item()
        .table_name(&stack.tables["ShipmentsTable"])
        .key(
            "orderId",
            aws_sdk_dynamodb::types::AttributeValue::S(order.to_string()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let lines: Vec<OrderLine> =
        serde_dynamo::from_attribute_value(stored["lines"].clone()).unwrap();
    assert_eq!(
        lines,
        [line("A", 1)],
        "the first shipment is kept as it was"
    );
    assert!(shipments.create(&OrderId::generate(), &[]).await.unwrap());
    let missing = DynamoShipmentStore::new(aws_sdk_dynamodb::Client::new(&sdk), "no-such-table");
    assert!(
        missing.create(&order, &[]).await.is_err(),
        "an unreachable table is an error, never a shipment that existed"
    );
}

async fn receive_one(sqs: &aws_sdk_sqs::Client, url: &str) -> Option<Order> {
    let received = sqs
        .receive_message()
        .queue_url(url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let message = received.messages?.into_iter().next()?;
    Some(serde_json::from_str(message.body.as_deref().unwrap()).unwrap())
}

#[tokio::test]
async fn express_orders_take_the_priority_lane() {
    let (sdk, stack) = stack().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let standard = stack.queues["OrdersQueue"].url.clone();
    let express = stack.queues["ExpressOrdersQueue"].url.clone();
    let queue = SqsOrderQueue::new(sqs.clone(), &standard, &express);
    let fast = Order {
        express: true,
        ..order()
    };
    queue.enqueue(&fast).await.unwrap();
    assert_eq!(
        receive_one(&sqs, &express).await,
        Some(fast.without_payment_method())
    );
    assert_eq!(receive_one(&sqs, &standard).await, None);
    let slow = order();
    queue.enqueue(&slow).await.unwrap();
    assert_eq!(
        receive_one(&sqs, &standard).await,
        Some(slow.without_payment_method())
    );
    assert_eq!(receive_one(&sqs, &express).await, None);
}

#[tokio::test]
async fn queue_carries_the_order_and_its_correlation_id_and_never_its_payment_method() {
    let (sdk, stack) = stack().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = stack.queues["OrdersQueue"].url.clone();
    let o = order();
    SqsOrderQueue::new(sqs.clone(), &url, &stack.queues["ExpressOrdersQueue"].url)
        .enqueue(&o)
        .await
        .unwrap();
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("All")
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let message = &received.messages.unwrap()[0];
    let text = message.body.as_deref().unwrap();
    assert!(!text.contains(&o.payment_token), "{text}");
    let body: Order = serde_json::from_str(text).unwrap();
    assert_eq!(body, o.without_payment_method());
    let attributes = message.message_attributes.as_ref().unwrap();
    assert_eq!(
        attributes["correlationId"].string_value.as_deref(),
        Some("corr")
    );
}

#[tokio::test]
async fn saga_starts_once_per_order_and_dead_tokens_are_not_errors() {
    let (sdk, stack) = stack().await;
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let starter = SfnSagaStarter::new(sfn.clone(), &stack.state_machines["OrderSaga"]);
    let o = order();
    let input = shop_domain::services::saga_input(&o, shop_domain::services::WaitLimits::DEFAULT);
    assert_eq!(
        starter.start(&o.order_id, &input).await.unwrap(),
        StartOutcome::Started
    );
    // Same name and input while running is idempotent on AWS (and moto): no error,
    // no second execution. A different input under the same name is refused.
    starter.start(&o.order_id, &input).await.unwrap();
    let other_input = json!({ "orderId": o.order_id, "different": true });
    assert_eq!(
        starter.start(&o.order_id, &other_input).await.unwrap(),
        StartOutcome::AlreadyExists
    );
    let executions = sfn
        .list_executions()
        .state_machine_arn(&stack.state_machines["OrderSaga"])
        .send()
        .await
        .unwrap()
        .executions;
    assert_eq!(executions.len(), 1);
    // The sweep's view of an order's run: running, never started, or ended.
    assert_eq!(
        starter.run_state(&o.order_id).await.unwrap(),
        RunState::Running
    );
    assert_eq!(
        starter.run_state(&OrderId::generate()).await.unwrap(),
        RunState::NeverStarted
    );
    // A run that ended: under a one-state machine, so it ends at once.
    let quick = sfn
        .create_state_machine()
        .name(format!("{}-quick", stack.prefix))
        .definition(r#"{"StartAt":"Done","States":{"Done":{"Type":"Pass","End":true}}}"#)
        .role_arn(format!(
            "arn:aws:iam::{}:role/quick",
            local_runtime::ACCOUNT_ID
        ))
        .send()
        .await
        .unwrap()
        .state_machine_arn;
    let quick = SfnSagaStarter::new(sfn.clone(), &quick);
    let done = OrderId::generate();
    quick.start(&done, &json!({})).await.unwrap();
    let mut state = RunState::Running;
    for _ in 0..50 {
        state = quick.run_state(&done).await.unwrap();
        if state != RunState::Running {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(state, RunState::Ended);
    let callbacks = SfnTaskCallbacks::new(sfn);
    assert!(
        !callbacks
            .succeed("not-a-live-token", &json!({}))
            .await
            .unwrap()
    );
    assert!(
        !callbacks
            .fail("not-a-live-token", "OutOfStock", "late")
            .await
            .unwrap()
    );
}

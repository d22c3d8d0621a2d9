//! Contracts that need no emulator: the sample events in `events/` are what each
//! function accepts, and everything the code and the saga emit has a schema.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::event::sqs::SqsEvent;
use e2e::{command_violations, repo_root, schema_violations};
use serde_json::{Value, json};
use shop_domain::commands::{Envelope, InventoryCommand, PaymentCommand};
use shop_domain::events::DomainEvent;
use shop_domain::{Currency, CustomerId, Order, OrderId, OrderLine, OrderStatus, Sku};

fn sample(path: &str) -> String {
    std::fs::read_to_string(repo_root().join("events").join(path)).unwrap()
}

fn bodies(path: &str) -> Vec<String> {
    let event: SqsEvent = serde_json::from_str(&sample(path)).unwrap();
    event.records.into_iter().map(|r| r.body.unwrap()).collect()
}

#[test]
fn every_sample_event_is_an_event_its_function_accepts() {
    let dirs = std::fs::read_dir(repo_root().join("events")).unwrap();
    let mut checked = 0;
    for dir in dirs {
        let dir = dir.unwrap().path();
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let text = std::fs::read_to_string(&file).unwrap();
            if dir.ends_with("orders-api") {
                let request = serde_json::from_str::<ApiGatewayV2httpRequest>(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                // As API Gateway passes it after the JWT authorizer: a subject, and the
                // `$default` stage the template deploys.
                let subject = request
                    .request_context
                    .authorizer
                    .and_then(|a| a.jwt)
                    .and_then(|jwt| jwt.claims.get("sub").cloned());
                assert!(subject.is_some(), "{}: no verified subject", file.display());
                assert_eq!(
                    request.request_context.stage.as_deref(),
                    Some("$default"),
                    "{}",
                    file.display()
                );
            } else if dir.ends_with("orphan-sweeper") {
                let event: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                assert_eq!(
                    event["detail-type"],
                    "Scheduled Event",
                    "{}",
                    file.display()
                );
            } else {
                let event: SqsEvent = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                assert!(!event.records.is_empty(), "{}", file.display());
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "samples for every entry point, found {checked}"
    );
}

#[test]
fn sample_commands_match_their_schemas_and_decode() {
    let inventory = bodies("inventory/commands-batch.json");
    assert_eq!(
        command_violations("InventoryCommand", &inventory),
        Vec::<String>::new()
    );
    for b in &inventory {
        serde_json::from_str::<Envelope<InventoryCommand>>(b).unwrap();
    }
    let payments = bodies("payments/commands-batch.json");
    assert_eq!(
        command_violations("PaymentCommand", &payments),
        Vec::<String>::new()
    );
    for b in &payments {
        serde_json::from_str::<Envelope<PaymentCommand>>(b).unwrap();
    }
    assert!(
        !command_violations(
            "PaymentCommand",
            &[r#"{"command":"Charge","orderId":"ord-1"}"#.into()]
        )
        .is_empty()
    );
}

#[test]
fn sample_outcome_events_match_their_schemas() {
    let events: Vec<Value> = bodies("fulfilment/order-outcomes.json")
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(schema_violations(&events), Vec::<String>::new());
}

fn envelope(e: &DomainEvent) -> Value {
    json!({ "detail-type": e.detail_type, "source": e.source, "detail": e.detail })
}

#[test]
fn every_event_the_code_emits_matches_its_schema() {
    let id = OrderId::generate();
    let lines = vec![OrderLine {
        sku: Sku("MUG".into()),
        quantity: 2,
        unit_price: 1250,
    }];
    let order = Order {
        order_id: id.clone(),
        customer_id: CustomerId("c".into()),
        lines: lines.clone(),
        currency: Currency::EUR,
        total: 2500,
        status: OrderStatus::Pending,
        history: vec![],
        payment_token: "tok".into(),
        correlation_id: "corr".into(),
        created_at: "2026-11-22T10:00:00Z".into(),
        express: false,
    };
    let events: Vec<Value> = [
        DomainEvent::order_placed(&order),
        DomainEvent::stock_reserved(&id, "corr", &lines),
        DomainEvent::stock_released(&id, "corr", &lines),
        DomainEvent::payment_captured(&id, "corr", "ch_1", 2500, Currency::EUR),
        DomainEvent::payment_declined(&id, "corr", "insufficient_funds"),
        DomainEvent::payment_refunded(&id, "corr", "ch_1", 2500, Currency::EUR),
    ]
    .iter()
    .map(envelope)
    .collect();
    assert_eq!(schema_violations(&events), Vec::<String>::new());
    let mut broken = events[0].clone();
    broken["detail"]["total"] = json!("lots");
    assert_eq!(
        schema_violations(&[broken]).len(),
        1,
        "the schemas do reject bad events"
    );
}

#[test]
fn every_detail_type_the_saga_and_the_rules_use_has_a_schema() {
    let asl =
        std::fs::read_to_string(repo_root().join("statemachine/order-saga.asl.json")).unwrap();
    let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    for detail_type in ["OrderConfirmed", "OrderCancelled"] {
        assert!(asl.contains(&format!("\"DetailType\": \"{detail_type}\"")));
        assert!(template.contains(detail_type));
        assert!(
            repo_root()
                .join(format!("schemas/events/{detail_type}.v1.json"))
                .exists()
        );
    }
}

/// Safe deployments are wired, not just declared: every function publishes `live` and
/// shifts traffic with alarms that watch that function's alias and the DLQs of the
/// queues it consumes; the API reaches the alias, not `$LATEST`.
#[test]
fn every_function_deploys_through_its_alias_with_alarms_that_roll_it_back() {
    let template = local_runtime::Template::load(&repo_root().join("template.yaml")).unwrap();
    let globals = &template.function_globals;
    assert_eq!(globals["AutoPublishAlias"], "live");
    assert_eq!(
        globals["DeploymentPreference"]["Type"],
        json!({"Ref": "DeploymentStrategy"})
    );
    let resource = |id: &str| {
        template
            .resources
            .get(id)
            .unwrap_or_else(|| panic!("no {id}"))
    };
    let dead_letter_of = |queue_arn: &Value| -> String {
        let queue = queue_arn["Fn::GetAtt"][0].as_str().unwrap();
        let dlq = &resource(queue)["Properties"]["RedrivePolicy"]["deadLetterTargetArn"];
        dlq["Fn::GetAtt"][0].as_str().unwrap().to_owned()
    };
    let functions = template.of_type("AWS::Serverless::Function");
    assert_eq!(functions.len(), 6);
    for (id, function) in functions {
        let alarms: Vec<&str> = function["Properties"]["DeploymentPreference"]["Alarms"]
            .as_array()
            .unwrap_or_else(|| panic!("{id} has no rollback alarms"))
            .iter()
            .map(|a| a["Ref"].as_str().unwrap())
            .collect();
        let watches = |alarm: &str| -> Vec<String> {
            let p = &resource(alarm)["Properties"];
            assert_eq!(resource(alarm)["Type"], "AWS::CloudWatch::Alarm");
            p["Dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["Value"].to_string())
                .collect()
        };
        let live = json!({"Fn::Sub": format!("${{{id}}}:live")}).to_string();
        assert!(
            alarms.iter().any(|a| watches(a).contains(&live)),
            "{id}: an alarm on its live alias's errors"
        );
        for event in function["Properties"]["Events"]
            .as_object()
            .map(|e| e.values().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["Type"] == "SQS")
        {
            let dlq = dead_letter_of(&event["Properties"]["Queue"]);
            let by_name = json!({"Fn::GetAtt": [dlq, "QueueName"]}).to_string();
            assert!(
                alarms.iter().any(|a| watches(a).contains(&by_name)),
                "{id}: an alarm on {dlq}, the DLQ of a queue it consumes"
            );
        }
    }
    let alias = json!({"Ref": "OrdersApiFunction.Alias"});
    assert_eq!(
        resource("OrdersApiIntegration")["Properties"]["IntegrationUri"],
        alias
    );
    assert_eq!(
        resource("OrdersApiInvokePermission")["Properties"]["FunctionName"],
        alias
    );
    assert_eq!(
        resource("OrdersApiFunction")["Properties"]["ProvisionedConcurrencyConfig"]["Fn::If"][0],
        "WarmOrdersApi",
        "provisioned concurrency only when the parameter asks for it"
    );
}

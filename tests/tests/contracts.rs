//! Contracts that need no emulator: the sample events in `events/` are what each
//! function accepts, and everything the code and the saga emit has a schema.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::event::sqs::SqsEvent;
use e2e::{command_violations, repo_root, schema_violations};
use serde_json::{Value, json};
use shop_domain::commands::{Envelope, InventoryCommand, PaymentCommand};
use shop_domain::events::DomainEvent;
use shop_domain::{Currency, CustomerId, Order, OrderId, OrderLine, OrderStatus, Sku};
use std::collections::BTreeMap;

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
            } else if dir.ends_with("stripe-webhook") {
                // Signed as Stripe signs, with the secret `shop local` registers; its
                // time is fixed, so a live function refuses it as a replay.
                let request = serde_json::from_str::<ApiGatewayV2httpRequest>(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                let header = request.headers["stripe-signature"].to_str().unwrap();
                let signed_at: i64 = header[2..header.find(',').unwrap()].parse().unwrap();
                assert_eq!(
                    stripe_webhook::signature::verify(
                        Some(header),
                        request.body.as_deref().unwrap().as_bytes(),
                        &[stripe_webhook::signature::SigningSecret::new(
                            local_app::LOCAL_STRIPE_WEBHOOK_SECRET
                        )],
                        signed_at,
                        std::time::Duration::from_secs(300),
                    ),
                    Ok(()),
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
            &[r#"{"command":"Authorize","orderId":"ord-1"}"#.into()]
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
        payment_action: None,
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
/// shifts traffic with exactly one rollback alarm, which watches what a bad version of
/// that function causes: its alias's `Errors` and the `FunctionFailures` it emits under
/// its own name (the work it answered but could not do), never a DLQ's depth, which
/// stays up until an operator acts and would stop the deploy that fixes its cause. The
/// API reaches the alias, not `$LATEST`.
#[test]
fn every_function_deploys_through_its_alias_with_alarms_that_roll_it_back() {
    let template = template();
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
    let failures = observability::Metric::FunctionFailures;
    let functions = template.of_type("AWS::Serverless::Function");
    assert_eq!(functions.len(), 7);
    for (id, function) in functions {
        let alarms: Vec<&str> = function["Properties"]["DeploymentPreference"]["Alarms"]
            .as_array()
            .unwrap_or_else(|| panic!("{id} has no rollback alarms"))
            .iter()
            .map(|a| a["Ref"].as_str().unwrap())
            .collect();
        assert_eq!(alarms.len(), 1, "{id}: one rollback alarm: {alarms:?}");
        let alarm = resource(alarms[0]);
        assert_eq!(alarm["Type"], "AWS::CloudWatch::Alarm");
        let metrics = alarm["Properties"]["Metrics"]
            .as_array()
            .unwrap_or_else(|| panic!("{id}: its rollback alarm adds metrics"));
        let watched = |namespace: &str, name: &str| -> Vec<Value> {
            metrics
                .iter()
                .map(|m| &m["MetricStat"]["Metric"])
                .filter(|m| m["Namespace"] == namespace && m["MetricName"] == name)
                .map(|m| m["Dimensions"].clone())
                .collect()
        };
        assert_eq!(
            watched("AWS/Lambda", "Errors"),
            [json!([
                {"Name": "FunctionName", "Value": {"Ref": id}},
                {"Name": "Resource", "Value": {"Fn::Sub": format!("${{{id}}}:live")}}
            ])],
            "{id}: its live alias's errors"
        );
        assert_eq!(
            watched(observability::NAMESPACE, failures.name()),
            [json!([
                {"Name": "Service", "Value": failures.service()},
                {"Name": "FunctionName", "Value": {"Ref": id}}
            ])],
            "{id}: the failures it emits under its own name (AWS_LAMBDA_FUNCTION_NAME, which is what Ref gives)"
        );
        assert_eq!(
            failures.dimensions(),
            ["Service", "FunctionName"],
            "the alarm names every dimension the code emits"
        );
        let sum = metrics
            .iter()
            .find(|m| m["ReturnData"] == true)
            .unwrap_or_else(|| panic!("{id}: an expression the alarm compares"));
        assert_eq!(sum["Expression"], "FILL(errors, 0) + FILL(failures, 0)");
        assert_eq!(alarm["Properties"]["Threshold"], 0);
        assert_eq!(
            alarm["Properties"]["ComparisonOperator"],
            "GreaterThanThreshold"
        );
    }
    for (id, alarm) in template.of_type("AWS::CloudWatch::Alarm") {
        if alarm["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible" {
            assert!(
                !template
                    .of_type("AWS::Serverless::Function")
                    .iter()
                    .any(|(_, f)| f["Properties"]["DeploymentPreference"]["Alarms"]
                        .as_array()
                        .is_some_and(|a| a.contains(&json!({"Ref": id})))),
                "{id}: a queue's depth pages but rolls nothing back"
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

/// A custom metric as CloudWatch knows it: its name and its dimensions, each with the
/// value it is watched or emitted with. `None` is any value: a dimension whose value
/// varies (a cancel reason), or one a dashboard SEARCH matches whatever its value.
type MetricKey = (String, BTreeMap<String, Option<String>>);

fn catalogue() -> Vec<MetricKey> {
    observability::Metric::ALL
        .iter()
        .map(|m| {
            let dims = m
                .dimensions()
                .iter()
                .map(|d| {
                    let fixed = (*d == "Service").then(|| m.service().to_owned());
                    ((*d).to_owned(), fixed)
                })
                .collect();
            (m.name().to_owned(), dims)
        })
        .collect()
}

/// Whether what the template watches is something the code emits: the same name and
/// dimension names, and every value the code fixes watched with exactly that value.
fn emitted(catalogue: &[MetricKey], (name, dims): &MetricKey) -> bool {
    catalogue.iter().any(|(n, emitted_dims)| {
        n == name
            && emitted_dims.keys().eq(dims.keys())
            && emitted_dims
                .iter()
                .all(|(d, fixed)| match (fixed, &dims[d]) {
                    (Some(code), Some(watched)) => code == watched,
                    _ => true,
                })
    })
}

/// The saga's definition as it is deployed (before substitutions).
fn definition() -> Value {
    let path = repo_root().join("statemachine/order-saga.asl.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn template() -> local_runtime::Template {
    local_runtime::Template::load(&repo_root().join("template.yaml")).unwrap()
}

/// The custom metrics (namespace `OrderSaga`) an alarm watches, directly or in its
/// metric math.
fn alarmed_metrics(alarm: &Value) -> Vec<MetricKey> {
    let props = &alarm["Properties"];
    let key = |m: &Value| -> Option<MetricKey> {
        (m["Namespace"] == observability::NAMESPACE).then(|| {
            // A value that is not a literal (a Ref, a Sub) can never equal one the code
            // fixes: it is kept as its JSON text.
            let dims = m["Dimensions"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(|d| {
                            let value = d["Value"]
                                .as_str()
                                .map_or_else(|| d["Value"].to_string(), str::to_owned);
                            Some((d["Name"].as_str()?.to_owned(), Some(value)))
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                m["MetricName"].as_str().unwrap_or_default().to_owned(),
                dims,
            )
        })
    };
    let mut found: Vec<MetricKey> = key(props).into_iter().collect();
    for query in props["Metrics"].as_array().into_iter().flatten() {
        found.extend(key(&query["MetricStat"]["Metric"]));
    }
    found
}

/// The custom metrics the dashboard shows: metric rows (`["OrderSaga", name, dim,
/// value, ...]`) and SEARCH expressions (`{OrderSaga,Dim,...} MetricName="name"`).
fn dashboard_metrics(body: &str) -> Vec<MetricKey> {
    // Placeholders of Fn::Sub become a plain value; the JSON around them stays.
    let mut text = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        text.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        text.push('X');
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    let doc: Value = serde_json::from_str(&text).expect("DashboardBody is JSON");
    let mut found = Vec::new();
    for widget in doc["widgets"].as_array().unwrap() {
        for row in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let row = row.as_array().unwrap();
            if row.first() == Some(&json!(observability::NAMESPACE)) {
                let strings: Vec<&str> = row.iter().filter_map(Value::as_str).collect();
                let dims = strings[2..]
                    .chunks(2)
                    .map(|c| (c[0].to_owned(), c.get(1).map(|v| (*v).to_owned())))
                    .collect();
                found.push((strings[1].to_owned(), dims));
            }
            for entry in row.iter().filter_map(|e| e["expression"].as_str()) {
                let Some(schema) = entry
                    .split_once(&format!("{{{},", observability::NAMESPACE))
                    .and_then(|(_, s)| s.split_once('}'))
                else {
                    continue;
                };
                let name = schema.1.split('"').nth(1).unwrap_or_default().to_owned();
                let dims = schema
                    .0
                    .split(',')
                    .map(|d| (d.trim().to_owned(), None))
                    .collect();
                found.push((name, dims));
            }
        }
    }
    found
}

#[test]
fn alarms_and_the_dashboard_watch_only_metrics_the_code_emits_and_show_them_all() {
    let template = template();
    let code = catalogue();
    let mut problems = Vec::new();
    let mut alarmed = 0;
    for (id, alarm) in template.of_type("AWS::CloudWatch::Alarm") {
        for metric in alarmed_metrics(alarm) {
            alarmed += 1;
            if !emitted(&code, &metric) {
                problems.push(format!(
                    "alarm {id} watches {metric:?}, which no code emits"
                ));
            }
        }
    }
    let dashboards = template.of_type("AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "one dashboard");
    let body = dashboards[0].1["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_str()
        .expect("DashboardBody is a !Sub string");
    let shown = dashboard_metrics(body);
    for metric in &shown {
        if !emitted(&code, metric) {
            problems.push(format!(
                "the dashboard shows {metric:?}, which no code emits"
            ));
        }
    }
    for metric in &code {
        if !shown.iter().any(|m| m.0 == metric.0 && emitted(&code, m)) {
            problems.push(format!("{metric:?} is emitted but not on the dashboard"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(alarmed >= 1, "the breaker alarm watches a custom metric");
    // The check itself notices a metric nobody emits, a wrong dimension set, and a
    // dimension value the code never emits (an alarm that could never fire).
    let mut watched = json!({"Properties": {"Namespace": "OrderSaga", "MetricName": "OrdersPlaced",
        "Dimensions": [{"Name": "Service", "Value": "orders"}]}});
    assert!(emitted(&code, &alarmed_metrics(&watched)[0]));
    watched["Properties"]["MetricName"] = json!("OrdersShipped");
    assert!(!emitted(&code, &alarmed_metrics(&watched)[0]));
    watched["Properties"]["MetricName"] = json!("OrdersPlaced");
    watched["Properties"]["Dimensions"] = json!([{"Name": "Region", "Value": "x"}]);
    assert!(
        !emitted(&code, &alarmed_metrics(&watched)[0]),
        "a wrong dimension set"
    );
    watched["Properties"]["Dimensions"] = json!([{"Name": "Service", "Value": "payments"}]);
    assert!(
        !emitted(&code, &alarmed_metrics(&watched)[0]),
        "a dimension value the code never emits"
    );
    watched["Properties"]["Dimensions"] = json!([{"Name": "Service", "Value": {"Ref": "X"}}]);
    assert!(
        !emitted(&code, &alarmed_metrics(&watched)[0]),
        "a value that is not a literal"
    );
}

#[test]
fn every_alarm_notifies_and_names_its_runbook() {
    let template = template();
    let alarms = template.of_type("AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 20, "{} alarms", alarms.len());
    for (id, alarm) in alarms {
        let props = &alarm["Properties"];
        for actions in ["AlarmActions", "OKActions"] {
            assert_eq!(
                props[actions],
                json!([{"Ref": "AlarmTopic"}]),
                "{id}: {actions} notify the alarm topic"
            );
        }
        let description = props["AlarmDescription"].to_string();
        assert!(
            description.contains("Runbook:") && description.contains("shop "),
            "{id}: the description names the runbook command: {description}"
        );
    }
}

#[test]
fn queue_visibility_never_goes_below_what_lambda_accepts_for_its_consumer() {
    // Lambda refuses an SQS event source whose queue's visibility timeout is below the
    // function's timeout; the parameters' MinValue must keep a deploy from it.
    let template = template();
    let default_timeout = template.function_globals["Timeout"].as_u64().unwrap();
    for (id, function) in template.of_type("AWS::Serverless::Function") {
        let timeout = function["Properties"]["Timeout"]
            .as_u64()
            .unwrap_or(default_timeout);
        for event in function["Properties"]["Events"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, e)| e)
        {
            if event["Type"] != "SQS" {
                continue;
            }
            let queue = event["Properties"]["Queue"]["Fn::GetAtt"][0]
                .as_str()
                .unwrap();
            let visibility = &template.resources[queue]["Properties"]["VisibilityTimeout"];
            let minimum = match visibility.get("Ref").and_then(Value::as_str) {
                Some(parameter) => template.parameter_declarations[parameter]["MinValue"].as_u64(),
                None => visibility.as_u64(),
            };
            assert!(
                minimum.is_some_and(|m| m >= timeout),
                "{id} (timeout {timeout} s) reads {queue}, whose visibility timeout may be {minimum:?}"
            );
        }
    }
}

#[test]
fn a_crashed_command_comes_back_while_its_step_still_waits() {
    // A worker that dies mid-command leaves the message invisible for the queue's
    // visibility timeout; the redelivery must find its step still waiting (a step's
    // timeout is MaxOrderWaitSeconds + CommandWorkSeconds), or every crash ends the
    // order with States.Timeout.
    let template = template();
    let default = |name: &str| {
        template
            .default_number(name)
            .unwrap_or_else(|| panic!("{name} has a numeric default"))
    };
    let step_timeout = default("MaxOrderWaitSeconds") + default("CommandWorkSeconds");
    let definition = definition();
    let substitutions = &template.resources["OrderSaga"]["Properties"]["DefinitionSubstitutions"];
    let mut checked = 0;
    for (name, state) in definition["States"].as_object().unwrap() {
        if state["Resource"] != "arn:aws:states:::sqs:sendMessage.waitForTaskToken" {
            continue;
        }
        // Waiting for the shopper's 3-D Secure is bounded by its own deadline, in the
        // saga's input; every other step by the order's wait.
        let step_timeout = if name == "AwaitAuthentication" {
            assert_eq!(
                state["TimeoutSecondsPath"],
                "$.authenticationTimeoutSeconds"
            );
            default("PaymentAuthenticationTimeoutSeconds")
        } else {
            assert_eq!(
                state["TimeoutSecondsPath"], "$.stepTimeoutSeconds",
                "{name}"
            );
            step_timeout
        };
        let placeholder = state["Parameters"]["QueueUrl"].as_str().unwrap();
        let key = placeholder.trim_start_matches("${").trim_end_matches('}');
        let queue = substitutions[key]["Ref"].as_str().unwrap();
        let visibility = &template.resources[queue]["Properties"]["VisibilityTimeout"];
        let seconds = match visibility.get("Ref").and_then(Value::as_str) {
            Some(parameter) => default(parameter),
            None => visibility.as_u64().unwrap(),
        };
        assert!(
            seconds < step_timeout,
            "{name}: {queue} redelivers after {seconds} s, its step times out after {step_timeout} s"
        );
        checked += 1;
    }
    assert_eq!(
        checked, 6,
        "Reserve, Authorize, AwaitAuthentication, Capture, Refund, Release"
    );
}

#[test]
fn the_saga_times_out_only_past_every_bound_its_parameters_allow() {
    // The run's own timeout is the last resort (ExecutionsTimedOut pages): a
    // compensation that never finds a worker. Every other path ends earlier, at the
    // largest values the parameters accept: the order's wait, a step's work, a forward
    // retry's delay, the compensation's patience, then one more compensation attempt
    // (its retry wait, its step, its quick retries) and the cancel.
    let template = template();
    let max = |name: &str| {
        template.parameter_declarations[name]["MaxValue"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} has a MaxValue"))
    };
    let step = max("MaxOrderWaitSeconds") + max("CommandWorkSeconds");
    let last_compensation = max("CompensationRetrySeconds") + step + 3 * 4;
    let latest_end = step
        + shop_domain::services::FORWARD_RETRY_MAX_DELAY_SECONDS
        + max("CompensationPatienceSeconds")
        + last_compensation;
    let timeout = definition()["TimeoutSeconds"]
        .as_u64()
        .expect("a run timeout");
    assert!(
        timeout > latest_end,
        "the run times out after {timeout} s, a run may end as late as {latest_end} s"
    );
    // Step Functions' Standard executions run at most a year.
    assert!(timeout < 365 * 86_400);
}

/// The most concurrent executions all queue consumers may take at their defaults, so
/// a backlog anywhere leaves the orders API the rest (docs/design.md: "Admission
/// and isolation"): the budget `docs/capacity.md` states ("Their budget is N of the
/// account's …"), which `shop capacity` writes.
fn consumer_concurrency_budget() -> u64 {
    let doc = std::fs::read_to_string(repo_root().join("docs/capacity.md")).unwrap();
    let (_, after) = doc
        .split_once("Their budget is ")
        .expect("the budget sentence");
    after.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn every_queue_consumer_is_capped_and_together_they_leave_the_api_its_headroom() {
    let template = template();
    let mut total = 0;
    for (id, function) in template.of_type("AWS::Serverless::Function") {
        for (name, event) in function["Properties"]["Events"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if event["Type"] != "SQS" {
                continue;
            }
            let cap = &event["Properties"]["ScalingConfig"]["MaximumConcurrency"];
            let parameter = cap["Ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{id}.{name}: MaximumConcurrency from a parameter"));
            let declared = &template.parameter_declarations[parameter];
            // Lambda accepts 2 to 1,000 for an SQS event source's MaximumConcurrency.
            let (min, max) = (declared["MinValue"].as_u64(), declared["MaxValue"].as_u64());
            assert!(
                min.is_some_and(|m| m >= 2) && max.is_none_or(|m| m <= 1000),
                "{parameter}: MinValue {min:?}, MaxValue {max:?}"
            );
            total += declared["Default"].as_u64().unwrap();
        }
    }
    assert!(
        total <= consumer_concurrency_budget(),
        "queue consumers may take {total} executions at their defaults"
    );
}

#[test]
fn the_functions_timeouts_are_the_templates() {
    // The deadline a function falls back to when its runtime gives none it can use
    // (`shop_aws::invocation_deadline`) is its template timeout.
    let template = template();
    let timeout = |id: &str| {
        template.resources[id]["Properties"]["Timeout"]
            .as_u64()
            .or_else(|| template.function_globals["Timeout"].as_u64())
            .unwrap_or_else(|| panic!("{id} has a timeout"))
    };
    assert_eq!(timeout("PaymentsFunction"), payments::TIMEOUT.as_secs());
    assert_eq!(timeout("OrdersApiFunction"), orders_api::TIMEOUT.as_secs());
    assert_eq!(
        timeout("StripeWebhookFunction"),
        stripe_webhook::TIMEOUT.as_secs()
    );
}

/// Access tokens, not ID tokens: every shopper route requires one of the API's scopes
/// (reads `orders/read`, placing and cancelling `orders/write`), the stack's user pool
/// declares them on its resource server and lets its clients ask for them, and the
/// tokens `shop local`, `shop smoke` and the tests mint carry exactly them.
#[test]
fn every_shopper_route_requires_the_scope_its_tokens_carry() {
    let template = template();
    let shopper_scopes: Vec<String> = local_runtime::oidc_issuer::SHOPPER_SCOPES
        .map(str::to_owned)
        .to_vec();
    let mut required = Vec::new();
    for (id, route) in template.of_type("AWS::ApiGatewayV2::Route") {
        let p = &route["Properties"];
        if p["AuthorizationType"] != "JWT" {
            continue;
        }
        let key = p["RouteKey"].as_str().unwrap();
        let expected = if key.starts_with("GET ") {
            "orders/read"
        } else {
            "orders/write"
        };
        assert_eq!(
            p["AuthorizationScopes"],
            json!([expected]),
            "{id} ({key}) requires {expected}"
        );
        required.push(expected.to_owned());
    }
    required.sort();
    required.dedup();
    assert_eq!(required, shopper_scopes);
    let server = &template.resources["ShopperApiResourceServer"]["Properties"];
    let declared: Vec<String> = server["Scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                server["Identifier"].as_str().unwrap(),
                s["ScopeName"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(declared, shopper_scopes);
    for client in ["ShopperUserPoolClient", "ShopSmokeClient"] {
        let allowed = &template.resources[client]["Properties"]["AllowedOAuthScopes"];
        for scope in &shopper_scopes {
            assert!(
                allowed.as_array().unwrap().contains(&json!(scope)),
                "{client} may ask for {scope}"
            );
        }
        assert_eq!(
            template.resources[client]["DependsOn"], "ShopperApiResourceServer",
            "{client}: its scopes exist before it"
        );
    }
    let audience = &template.resources["ShopperJwtAuthorizer"]["Properties"]["JwtConfiguration"]["Audience"]
        ["Fn::If"][1];
    assert_eq!(
        audience,
        &json!([{"Ref": "ShopperUserPoolClient"}, {"Ref": "ShopSmokeClient"}])
    );
}

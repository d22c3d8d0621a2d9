//! `shop capacity`: what one order costs in each AWS quota and what the stack sustains
//! with its defaults, computed from `template.yaml` and the state machine definition,
//! so a change to either changes `docs/capacity.md` (a test holds the two equal).
//!
//! What the files cannot say is declared here, each with its reason: the calls the
//! functions make per order, how long a batch of each consumer takes, and AWS's
//! default quotas with the page that states them.

use local_runtime::Template;
use serde_json::Value;
use std::fmt::Write;
use std::path::Path;

/// Why the capacity could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// The template could not be read.
    #[error(transparent)]
    Template(#[from] local_runtime::TemplateError),
    /// The definition could not be read or is not JSON.
    #[error("{path}: {why}")]
    Definition {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// The files do not hold what the computation needs.
    #[error("{0}")]
    Shape(String),
}

/// The states a confirmed order enters, in order: each entry is a billed transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HappyPath {
    /// State names from `StartAt` to the end.
    pub states: Vec<String>,
    /// Of them, `.waitForTaskToken` commands (a worker's receipt and answer each).
    pub callbacks: u32,
    /// The commands sent per queue, by the `QueueUrl` placeholder of the definition
    /// (`PaymentsQueueUrl`): the records each consumer handles per order.
    pub commands: std::collections::BTreeMap<String, u32>,
    /// Of them, `events:putEvents` tasks.
    pub put_events: u32,
}

/// Follows the definition from `StartAt` the way a confirmed order goes: a Choice's
/// `Default`, a task's `Next`, until a state ends the run.
pub fn happy_path(definition: &Value) -> Result<HappyPath, CapacityError> {
    let states = &definition["States"];
    let mut name = definition["StartAt"]
        .as_str()
        .ok_or_else(|| CapacityError::Shape("the definition has no StartAt".into()))?;
    let mut path = HappyPath {
        states: Vec::new(),
        callbacks: 0,
        commands: Default::default(),
        put_events: 0,
    };
    loop {
        let state = &states[name];
        if state.is_null() || path.states.len() > 100 {
            return Err(CapacityError::Shape(format!(
                "the happy path reaches {name:?}, which is missing or loops"
            )));
        }
        path.states.push(name.to_owned());
        let resource = state["Resource"].as_str().unwrap_or_default();
        if resource.ends_with(".waitForTaskToken") {
            path.callbacks += 1;
            if let Some(url) = state["Parameters"]["QueueUrl"].as_str() {
                let key = url.trim_start_matches("${").trim_end_matches('}');
                *path.commands.entry(key.to_owned()).or_default() += 1;
            }
        }
        path.put_events += u32::from(resource == "arn:aws:states:::events:putEvents");
        let next = match state["Type"].as_str() {
            Some("Choice") => state["Default"].as_str(),
            Some("Succeed" | "Fail") => None,
            _ if state["End"] == true => None,
            _ => state["Next"].as_str(),
        };
        match next {
            Some(next) => name = next,
            None => return Ok(path),
        }
    }
}

/// One SQS consumer as the template configures it.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumer {
    /// The function's logical id.
    pub function: String,
    /// The event source's name in the function's `Events`.
    pub event: String,
    /// Records per batch.
    pub batch_size: u64,
    /// The event source's `MaximumConcurrency` (its parameter's default).
    pub max_concurrency: u64,
    /// The parameter that sets it.
    pub parameter: String,
    /// The queue's logical id.
    pub queue: String,
}

/// Every SQS event source of the template, with its parameter defaults resolved.
pub fn consumers(template: &Template) -> Result<Vec<Consumer>, CapacityError> {
    let mut found = Vec::new();
    for (id, function) in template.of_type("AWS::Serverless::Function") {
        for (name, event) in function["Properties"]["Events"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, e)| e["Type"] == "SQS")
        {
            let props = &event["Properties"];
            let parameter = props["ScalingConfig"]["MaximumConcurrency"]["Ref"]
                .as_str()
                .ok_or_else(|| {
                    CapacityError::Shape(format!("{id}: MaximumConcurrency is not a parameter"))
                })?;
            let max_concurrency = template.default_number(parameter).ok_or_else(|| {
                CapacityError::Shape(format!("{parameter} has no numeric default"))
            })?;
            let queue = match &props["Queue"]["Fn::GetAtt"] {
                Value::Array(parts) => parts.first().and_then(Value::as_str),
                Value::String(dotted) => dotted.split('.').next(),
                _ => None,
            }
            .ok_or_else(|| CapacityError::Shape(format!("{id}.{name}: Queue is not a GetAtt")))?;
            found.push(Consumer {
                function: id.clone(),
                event: name.clone(),
                batch_size: props["BatchSize"].as_u64().unwrap_or(10),
                max_concurrency,
                parameter: parameter.to_owned(),
                queue: queue.to_owned(),
            });
        }
    }
    // The template's order is not kept by every build of serde_json (`preserve_order`
    // depends on which crates are built together): sort, so the report is stable.
    found.sort_by(|a, b| (&a.function, &a.event).cmp(&(&b.function, &b.event)));
    Ok(found)
}

/// How long one batch of a consumer takes: not in the template, so declared here.
/// Records of a batch run concurrently (`sqs_batch::process_batch`), so a batch takes
/// about its slowest record. `None` for a lane that is not on every order's path (the
/// express lane).
fn batch_seconds(consumer: &Consumer) -> Option<(f64, &'static str)> {
    Some(
        match (consumer.function.as_str(), consumer.event.as_str()) {
            ("OrderIntakeFunction", "Orders") => (0.1, "StartExecution and PutEvents"),
            ("InventoryFunction", "Commands") => (0.1, "a receipt, a transaction, an answer"),
            ("PaymentsFunction", "Commands") => (
                1.0,
                "a card provider answering in 0.3 to 2 s; the batch waits for its slowest call",
            ),
            ("FulfilmentFunction", "OrderOutcomes") => (0.1, "one conditional put"),
            _ => return None,
        },
    )
}

/// One AWS quota, per account and Region, as AWS documents its default.
struct Quota {
    name: &'static str,
    /// In us-east-1 (with us-west-2 and eu-west-1, the largest Regions).
    largest: f64,
    /// In us-east-2, a Region outside them.
    other: f64,
    page: &'static str,
}

const SFN_QUOTAS: &str = "https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html";
const EVENTBRIDGE_QUOTAS: &str =
    "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-quota.html";
const LAMBDA_QUOTAS: &str =
    "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html";
const APIGW_QUOTAS: &str =
    "https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html";
const DYNAMODB_QUOTAS: &str =
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html";

/// The functions' own calls per confirmed order, outside the saga's definition:
/// intake starts the execution and publishes OrderPlaced, inventory publishes
/// StockReserved, payments PaymentCaptured.
const FUNCTION_PUT_EVENTS: u32 = 3;
/// Write units a reservation takes on the SKU's stock item: a transactional write of
/// an item up to 1 KB costs 2.
const HOT_ITEM_WCU_PER_ORDER: f64 = 2.0;
/// Lambda's default concurrent executions per account and Region.
const ACCOUNT_CONCURRENCY: u64 = 1_000;
/// What the queue consumers may hold together at their defaults, so a backlog never
/// takes the concurrency the orders API needs (a contract test reads it from
/// `docs/capacity.md` and holds the template's sum within it).
const CONSUMER_CONCURRENCY_BUDGET: u64 = 100;

/// A whole number with thousands separators.
fn grouped(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The whole report, as Markdown.
pub fn report(template: &Template, definition: &Value) -> Result<String, CapacityError> {
    let path = happy_path(definition)?;
    let consumers = consumers(template)?;
    let substitutions = template
        .resources
        .values()
        .find(|r| r["Type"] == "AWS::Serverless::StateMachine")
        .map(|r| r["Properties"]["DefinitionSubstitutions"].clone())
        .ok_or_else(|| CapacityError::Shape("the template has no state machine".into()))?;
    let transitions = path.states.len() as f64;
    let api_rate = template
        .default_number("ApiThrottlingRateLimit")
        .ok_or_else(|| CapacityError::Shape("ApiThrottlingRateLimit has no default".into()))?;
    let rows = [
        (
            Quota {
                name: "Step Functions state transitions (Standard), per second",
                largest: 5_000.0,
                other: 800.0,
                page: SFN_QUOTAS,
            },
            transitions,
            "the happy path's states",
        ),
        (
            Quota {
                name: "Step Functions StartExecution, per second (refill)",
                largest: 300.0,
                other: 150.0,
                page: SFN_QUOTAS,
            },
            1.0,
            "the intake starts one execution",
        ),
        (
            Quota {
                name: "EventBridge PutEvents, per second",
                largest: 10_000.0,
                other: 2_400.0,
                page: EVENTBRIDGE_QUOTAS,
            },
            f64::from(path.put_events + FUNCTION_PUT_EVENTS),
            "the saga's publications and the functions' events",
        ),
        (
            Quota {
                name: "DynamoDB write units on one item (a partition's 1,000 WCU/s)",
                largest: 1_000.0,
                other: 1_000.0,
                page: DYNAMODB_QUOTAS,
            },
            HOT_ITEM_WCU_PER_ORDER,
            "one transactional reservation on the hot SKU",
        ),
        (
            Quota {
                name: "HTTP API requests, per second (account, Region)",
                largest: 10_000.0,
                other: 10_000.0,
                page: APIGW_QUOTAS,
            },
            1.0,
            "POST /v1/orders; polls and reads come on top",
        ),
    ];
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "# Capacity: what one order costs and what the stack sustains\n\n\
         Generated by `shop capacity --write` from `template.yaml` and \
         `statemachine/order-saga.asl.json` (a test fails when this file differs from \
         what they give). AWS's defaults are per account and Region; new accounts start \
         lower for some (Step Functions says so on its quotas page), so read yours in the \
         Service Quotas console before a sale.\n"
    );
    let _ = writeln!(
        w,
        "## The happy path\n\n{} state transitions: {}. At $0.025 per 1,000 \
         transitions, ${:.0} per million orders. The saga also makes {} \
         SendTaskHeartbeat and {} SendTaskSuccess calls (a worker's receipt and answer \
         per command) and {} PutEvents.\n",
        path.states.len(),
        path.states.join(" → "),
        transitions * 25.0,
        path.callbacks,
        path.callbacks,
        path.put_events,
    );
    let _ = writeln!(
        w,
        "## Quotas\n\n\
         | Quota | Per order | us-east-1 default | orders/s | us-east-2 default | orders/s | Source |\n\
         |---|---|---|---|---|---|---|"
    );
    let mut ceilings: Vec<(f64, f64, String)> = Vec::new();
    for (quota, cost, why) in &rows {
        let (largest, other) = (quota.largest / cost, quota.other / cost);
        let _ = writeln!(
            w,
            "| {} | {cost}: {why} | {} | {} | {} | {} | [AWS]({}) |",
            quota.name,
            grouped(quota.largest),
            grouped(largest),
            grouped(quota.other),
            grouped(other),
            quota.page
        );
        ceilings.push((largest, other, quota.name.to_owned()));
    }
    let _ = writeln!(
        w,
        "\nSendTaskHeartbeat and SendTaskSuccess are throttled per account too (the same \
         page, API action throttling): check your account's rates against {} calls of each \
         per order.\n",
        path.callbacks
    );
    let _ = writeln!(
        w,
        "## Consumers (from each SQS event source's parameters)\n\n\
         | Function.event | Batch | MaximumConcurrency (parameter) | Batch time (declared) | records/s | records per order | orders/s |\n\
         |---|---|---|---|---|---|---|"
    );
    let mut reserved = 0;
    for c in &consumers {
        reserved += c.max_concurrency;
        let Some((seconds, why)) = batch_seconds(c) else {
            let _ = writeln!(
                w,
                "| {}.{} | {} | {} ({}) | — | — | — | not on every order's path |",
                c.function, c.event, c.batch_size, c.max_concurrency, c.parameter
            );
            continue;
        };
        let rate = (c.max_concurrency * c.batch_size) as f64 / seconds;
        // A queue the saga sends commands to carries as many records per order as the
        // happy path sends it; the others (the intake's, fulfilment's) one.
        let per_order = substitutions
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v["Ref"] == c.queue.as_str())
            .filter_map(|(key, _)| path.commands.get(key))
            .sum::<u32>()
            .max(1);
        let orders = rate / f64::from(per_order);
        let _ = writeln!(
            w,
            "| {}.{} | {} | {} ({}) | {seconds} s: {why} | {} | {per_order} | {} |",
            c.function,
            c.event,
            c.batch_size,
            c.max_concurrency,
            c.parameter,
            grouped(rate),
            grouped(orders)
        );
        ceilings.push((
            orders,
            orders,
            format!("{}.{} ({})", c.function, c.event, c.parameter),
        ));
    }
    let _ = writeln!(
        w,
        "\nTogether the consumers may hold {reserved} concurrent executions at their \
         defaults. Their budget is {CONSUMER_CONCURRENCY_BUDGET} of the account's \
         {} ([AWS]({LAMBDA_QUOTAS})), leaving {} to the orders API; a contract test holds \
         the template within it. The stage admits {api_rate} requests a second per route \
         (`ApiThrottlingRateLimit`).\n",
        grouped(ACCOUNT_CONCURRENCY as f64),
        grouped((ACCOUNT_CONCURRENCY - CONSUMER_CONCURRENCY_BUDGET) as f64),
    );
    let bounds = |pick: fn(&(f64, f64, String)) -> f64| {
        let mut sorted: Vec<(f64, &str)> =
            ceilings.iter().map(|c| (pick(c), c.2.as_str())).collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        match sorted.as_slice() {
            [(rate, by), (next, next_by), ..] => format!(
                "**{} orders/s** ({} a day), first bound by {by}; raised past it, next by \
                 {next_by} at {} orders/s",
                grouped(*rate),
                grouped(rate * 86_400.0),
                grouped(*next)
            ),
            _ => "not computed: fewer than two ceilings".into(),
        }
    };
    let _ = writeln!(
        w,
        "## What the stack sustains with its defaults\n\n\
         - us-east-1: {}.\n\
         - us-east-2: {}.\n\n\
         A rush above that waits in the queues (an order may wait `MaxOrderWaitSeconds`). \
         To go further, raise the binding consumer's parameter, then the quota next in \
         line (Service Quotas console, per Region).",
        bounds(|c| c.0),
        bounds(|c| c.1),
    );
    Ok(out)
}

/// Reads the files under `root` and computes the report.
pub fn from_files(root: &Path) -> Result<String, CapacityError> {
    let template = Template::load(&root.join("template.yaml"))?;
    let path = root.join("statemachine/order-saga.asl.json");
    let definition = std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
        .map_err(|why| CapacityError::Definition {
            path: path.display().to_string(),
            why,
        })?;
    report(&template, &definition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_happy_path_follows_defaults_and_next_to_the_end() {
        let definition = json!({"StartAt": "Route", "States": {
            "Route": {"Type": "Choice", "Choices": [{"Next": "Other"}], "Default": "Reserve"},
            "Reserve": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                        "Parameters": {"QueueUrl": "${InventoryQueueUrl}"}, "Next": "Publish"},
            "Publish": {"Type": "Task", "Resource": "arn:aws:states:::events:putEvents", "End": true},
            "Other": {"Type": "Fail"}
        }});
        assert_eq!(
            happy_path(&definition).unwrap(),
            HappyPath {
                states: vec!["Route".into(), "Reserve".into(), "Publish".into()],
                callbacks: 1,
                commands: [("InventoryQueueUrl".to_owned(), 1)].into(),
                put_events: 1,
            }
        );
        let looping = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "A"}}});
        assert!(happy_path(&looping).is_err());
        let dangling = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}});
        assert!(happy_path(&dangling).is_err());
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(864_000.0), "864,000");
        assert_eq!(grouped(999.6), "1,000");
        assert_eq!(grouped(5.0), "5");
    }

    #[test]
    fn docs_capacity_is_what_the_template_and_the_definition_give() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let computed = from_files(&root).unwrap();
        let written = std::fs::read_to_string(root.join("docs/capacity.md")).unwrap_or_default();
        assert!(
            written == computed,
            "docs/capacity.md is stale: run `shop capacity --write`\n{computed}"
        );
    }
}

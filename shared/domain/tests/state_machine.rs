//! The contract between the errors services answer with and the saga's definition:
//! every name a `Retry` or `Catch` matches is one its task can raise, and every error a
//! service raises is retried exactly when it is transient; a compensation waits out
//! what is transient and escalates the rest.

use serde_json::Value;
use shop_domain::commands::{Service, TaskError};
use shop_domain::services::FORWARD_RETRY_MAX_DELAY_SECONDS;

#[test]
fn every_error_has_one_name_and_a_service_that_raises_it() {
    let mut names = std::collections::HashSet::new();
    for error in TaskError::ALL {
        assert!(names.insert(error.name()), "{error:?} shares its name");
        assert!(!error.name().is_empty() && !error.name().starts_with("States."));
        assert_eq!(error.to_string(), error.name());
        assert!(
            !error.raised_by().is_empty(),
            "{error:?} is raised by no service"
        );
    }
    assert_eq!(
        TaskError::OrderCancelled.raised_by(),
        [Service::Inventory, Service::Payments],
        "both services refuse a late command"
    );
}

/// The errors Step Functions itself raises (Amazon States Language, "Error names";
/// Step Functions developer guide, "Handling errors in Step Functions workflows").
const STATES_ERRORS: [&str; 17] = [
    "States.ALL",
    "States.BranchFailed",
    "States.DataLimitExceeded",
    "States.ExceedToleratedFailureThreshold",
    "States.HeartbeatTimeout",
    "States.Http.Socket",
    "States.IntrinsicFailure",
    "States.ItemReaderFailed",
    "States.NoChoiceMatched",
    "States.ParameterPathFailure",
    "States.Permissions",
    "States.QueryEvaluationError",
    "States.ResultPathMatchFailure",
    "States.ResultWriterFailed",
    "States.Runtime",
    "States.TaskFailed",
    "States.Timeout",
];

/// The errors DynamoDB's UpdateItem raises (DynamoDB API Reference, UpdateItem,
/// "Errors"), named as a Step Functions DynamoDB integration raises them: the
/// service's name, a dot, and the error's name with the `Exception` suffix added
/// where the API's own name lacks it (`InternalServerError` →
/// `DynamoDB.InternalServerErrorException`; Step Functions developer guide, "AWS
/// SDK service integrations", on error names).
const DYNAMODB_UPDATE_ITEM_ERRORS: [&str; 10] = [
    "DynamoDB.ConditionalCheckFailedException",
    "DynamoDB.InternalServerErrorException",
    "DynamoDB.InvalidEndpointException",
    "DynamoDB.ItemCollectionSizeLimitExceededException",
    "DynamoDB.ProvisionedThroughputExceededException",
    "DynamoDB.ReplicatedWriteConflictException",
    "DynamoDB.RequestLimitExceededException",
    "DynamoDB.ResourceNotFoundException",
    "DynamoDB.ThrottlingException",
    "DynamoDB.TransactionConflictException",
];

/// Why a state's Retry or Catch names `name` in vain, if it does: every name must be
/// one the state's task can raise.
fn unraisable(resource: &str, name: &str) -> Option<String> {
    if STATES_ERRORS.contains(&name) {
        return None;
    }
    if name.starts_with("DynamoDB.") {
        return match resource {
            "arn:aws:states:::dynamodb:updateItem"
                if DYNAMODB_UPDATE_ITEM_ERRORS.contains(&name) =>
            {
                None
            }
            "arn:aws:states:::dynamodb:updateItem" => Some("which UpdateItem never raises".into()),
            _ => Some(format!("but its task is {resource}, not DynamoDB")),
        };
    }
    if TaskError::ALL.iter().any(|e| e.name() == name) {
        return (resource != "arn:aws:states:::sqs:sendMessage.waitForTaskToken").then(|| {
            format!("which only a service answering a task token raises, not {resource}")
        });
    }
    Some("which no service raises".into())
}

#[test]
fn a_misnamed_error_is_noticed() {
    let update = "arn:aws:states:::dynamodb:updateItem";
    assert_eq!(
        unraisable(update, "DynamoDB.ConditionalCheckFailedException"),
        None
    );
    assert_eq!(unraisable(update, "States.Timeout"), None);
    for wrong in [
        "DynamoDB.InternalServerError",
        "DynamoDB.ConditionalCheckFailed",
        "DynamoDB.RequestLimitExceeded",
        "States.Timeout2",
        "States.HeartBeatTimeout",
        "OutOfStock",
    ] {
        assert!(unraisable(update, wrong).is_some(), "{wrong}");
    }
    assert!(
        unraisable(
            "arn:aws:states:::events:putEvents",
            "DynamoDB.ThrottlingException"
        )
        .is_some()
    );
    assert_eq!(
        unraisable(
            "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "OutOfStock"
        ),
        None
    );
}

#[test]
fn the_error_names_and_their_retries_are_the_state_machines() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../statemachine/order-saga.asl.json"
    ))
    .unwrap();
    let definition: Value = serde_json::from_str(&text).unwrap();
    let name_of = |raw: &str| TaskError::ALL.into_iter().find(|e| e.name() == raw);
    let mut caught_by_name = std::collections::HashSet::new();
    let mut problems = Vec::new();
    let mut commands = 0;
    let mut compensations = 0;
    for (state_name, state) in definition["States"].as_object().unwrap() {
        let listed = |block: &str| -> Vec<Vec<String>> {
            state[block]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| {
                    b["ErrorEquals"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e.as_str().unwrap().to_owned())
                        .collect()
                })
                .collect()
        };
        let (retries, catches) = (listed("Retry"), listed("Catch"));
        // Every name a block matches is one its task can raise: a misspelt name
        // would never match.
        let resource = state["Resource"].as_str().unwrap_or_default();
        for name in retries.iter().chain(&catches).flatten() {
            if let Some(why) = unraisable(resource, name) {
                problems.push(format!("{state_name} matches {name}, {why}"));
            }
        }
        if state["Resource"] != "arn:aws:states:::sqs:sendMessage.waitForTaskToken" {
            continue;
        }
        let service = match state["Parameters"]["QueueUrl"].as_str() {
            Some("${InventoryQueueUrl}") => Service::Inventory,
            Some("${PaymentsQueueUrl}") => Service::Payments,
            _ => continue,
        };
        let retried: Vec<&str> = retries.iter().flatten().map(String::as_str).collect();
        if state["Parameters"]["MessageBody"]
            .get("compensateUntil.$")
            .is_some()
        {
            compensations += 1;
            problems.extend(compensation_problems(
                &definition,
                state_name,
                service,
                &catches,
            ));
            continue;
        }
        commands += 1;
        for retrier in state["Retry"].as_array().into_iter().flatten() {
            let delay = retrier["MaxDelaySeconds"].as_u64().unwrap_or(u64::MAX);
            if delay > FORWARD_RETRY_MAX_DELAY_SECONDS {
                problems.push(format!(
                    "{state_name} waits up to {delay} s between attempts, more than the \
                     {FORWARD_RETRY_MAX_DELAY_SECONDS} s the compensation's patience allows for"
                ));
            }
        }
        for error in TaskError::ALL
            .iter()
            .filter(|e| e.raised_by().contains(&service))
        {
            let is_retried = retried.contains(&error.name());
            if is_retried != error.is_transient() {
                problems.push(format!(
                    "{state_name}: {error} is {} but the definition {} it",
                    if error.is_transient() {
                        "transient"
                    } else {
                        "final"
                    },
                    if is_retried {
                        "retries"
                    } else {
                        "does not retry"
                    }
                ));
            }
        }
        for name in catches.iter().flatten() {
            caught_by_name.extend(name_of(name));
        }
    }
    assert_eq!(
        commands, 4,
        "Reserve, Authorize, AwaitAuthentication and Capture are the saga's forward commands"
    );
    assert_eq!(compensations, 2, "Refund and Release are its compensations");
    // A declined card skips the refund: the only final error the saga tells apart.
    assert!(caught_by_name.contains(&TaskError::PaymentDeclined));
    assert!(problems.is_empty(), "{problems:#?}");
}

/// A compensation waits out every transient error of its service (and a step timeout,
/// when no worker answered) in a Wait state that sends it again, and escalates
/// anything else, `CompensationExhausted` first among them, never retried.
fn compensation_problems(
    definition: &Value,
    state_name: &str,
    service: Service,
    catches: &[Vec<String>],
) -> Vec<String> {
    let state = &definition["States"][state_name];
    let mut problems = Vec::new();
    let next_of = |error: &str| {
        catches
            .iter()
            .position(|names| names.iter().any(|n| n == error || n == "States.ALL"))
            .and_then(|i| state["Catch"][i]["Next"].as_str())
    };
    for error in TaskError::ALL
        .iter()
        .filter(|e| e.is_transient() && e.raised_by().contains(&service))
        .map(|e| e.name())
        .chain(["States.Timeout"])
    {
        let waits = next_of(error).map(|next| &definition["States"][next]);
        let sends_again = waits.is_some_and(|wait| {
            wait["Type"] == "Wait"
                && wait["SecondsPath"] == "$.compensationRetrySeconds"
                && wait["Next"] == state_name
        });
        if !sends_again {
            problems.push(format!(
                "{state_name}: {error} does not wait and send the compensation again"
            ));
        }
    }
    let exhausted = TaskError::CompensationExhausted.name();
    if next_of(exhausted) != Some("EscalateCompensation") {
        problems.push(format!("{state_name}: {exhausted} does not escalate"));
    }
    let retried_once_more = state["Retry"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| {
            r["ErrorEquals"]
                .as_array()
                .is_some_and(|names| names.iter().any(|n| n == exhausted || n == "States.ALL"))
        })
        .is_some_and(|r| r["MaxAttempts"].as_u64() != Some(0));
    if retried_once_more {
        problems.push(format!("{state_name}: {exhausted} is retried"));
    }
    problems
}

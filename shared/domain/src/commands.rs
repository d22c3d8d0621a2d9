//! Commands the saga sends to the services' queues, and the typed failures services
//! answer with. The JSON shapes are produced by `statemachine/order-saga.asl.json`;
//! `schemas/commands/*.json` pin them and contract tests check both sides.

use crate::lines::LineViolation;
use crate::order::{Currency, OrderId, OrderLine, Sku};
use serde::{Deserialize, Serialize};

/// The errors a command's failure is named by: exactly the names the state machine's
/// `Retry` and `Catch` blocks match (a contract test reads the definition and checks
/// both ways). Transient ones are retried with backoff; the others end the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskError {
    /// Not enough stock for at least one line.
    OutOfStock,
    /// The provider refused the card.
    PaymentDeclined,
    /// A compensation already ran for this order: a late command is refused.
    OrderCancelled,
    /// Inventory storage is briefly unavailable; retry.
    InventoryUnavailable,
    /// The order waited in the queues past the shop's limit (`MaxOrderWaitSeconds`):
    /// it is cancelled before any stock is held or card charged.
    OrderExpired,
    /// The payment provider or ledger is briefly unavailable; retry with the same key.
    PaymentProviderUnavailable,
    /// The provider did not answer in time; retrying with the same key is safe.
    PaymentTimeout,
    /// The provider refused the request itself, not the card (an authorization in a
    /// state that cannot be captured, a key it does not accept): retrying cannot help,
    /// the saga gives back what the payment holds and an operator reads the cause.
    PaymentRefused,
    /// Nothing is held yet: the card's issuer asks the shopper to authenticate the
    /// payment (3-D Secure). Not a failure of the order: the saga waits for the
    /// shopper in `AwaitAuthentication`.
    PaymentActionRequired,
    /// A compensation still failed for a transient reason after the order's
    /// `compensateUntil`: the saga stops waiting and hands the case to a human.
    CompensationExhausted,
}

/// The service whose commands raise an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Reserve, Release.
    Inventory,
    /// Charge, Refund.
    Payments,
}

impl TaskError {
    /// Every error, for the contract tests.
    pub const ALL: [TaskError; 10] = [
        Self::OutOfStock,
        Self::OrderExpired,
        Self::PaymentDeclined,
        Self::OrderCancelled,
        Self::InventoryUnavailable,
        Self::PaymentProviderUnavailable,
        Self::PaymentTimeout,
        Self::PaymentRefused,
        Self::PaymentActionRequired,
        Self::CompensationExhausted,
    ];

    /// The name Step Functions sees (`SendTaskFailure`'s `error`).
    pub fn name(self) -> &'static str {
        match self {
            Self::OutOfStock => "OutOfStock",
            Self::PaymentDeclined => "PaymentDeclined",
            Self::OrderCancelled => "OrderCancelled",
            Self::InventoryUnavailable => "InventoryUnavailable",
            Self::OrderExpired => "OrderExpired",
            Self::PaymentProviderUnavailable => "PaymentProviderUnavailable",
            Self::PaymentTimeout => "PaymentTimeout",
            Self::PaymentRefused => "PaymentRefused",
            Self::PaymentActionRequired => "PaymentActionRequired",
            Self::CompensationExhausted => "CompensationExhausted",
        }
    }

    /// Whether the saga retries it rather than compensating at once.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::InventoryUnavailable | Self::PaymentProviderUnavailable | Self::PaymentTimeout
        )
    }

    /// The services whose commands can fail with it.
    pub fn raised_by(self) -> &'static [Service] {
        match self {
            Self::OutOfStock | Self::InventoryUnavailable => &[Service::Inventory],
            Self::PaymentDeclined
            | Self::PaymentProviderUnavailable
            | Self::PaymentTimeout
            | Self::PaymentRefused
            | Self::PaymentActionRequired => &[Service::Payments],
            Self::OrderCancelled | Self::OrderExpired | Self::CompensationExhausted => {
                &[Service::Inventory, Service::Payments]
            }
        }
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Fields every command carries besides its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<C> {
    /// Step Functions task token to answer; absent for operator commands (restock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_token: Option<String>,
    /// Correlation id of the order, for logs.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// When the order stops waiting (RFC 3339, UTC): the time it was placed plus the
    /// shop's `MaxOrderWaitSeconds`. Forward commands (Reserve, Charge) carry it; a
    /// worker that picks one up later answers [`TaskError::OrderExpired`] without
    /// touching stock or card. Compensations carry none: they always run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// Until when a compensation (Release, Refund) keeps being retried while its
    /// dependency is unavailable (RFC 3339, UTC): the order's deadline plus a step's
    /// timeout, the longest forward retry delay and `CompensationPatienceSeconds`. A compensation that still fails
    /// transiently after it is answered [`TaskError::CompensationExhausted`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensate_until: Option<String>,
    /// The command itself.
    #[serde(flatten)]
    pub command: C,
}

/// A queue command: it decodes from JSON and knows the rules its fields follow, so a
/// message no producer of ours could have sent is refused before it touches anything.
pub trait Command: serde::de::DeserializeOwned {
    /// Why the command breaks a rule, if it does.
    fn invalid(&self) -> Option<String>;
}

/// Why a message body is not a command.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not the shape of any command.
    #[error("not a command: {0}")]
    Json(#[from] serde_json::Error),
    /// The shape of a command, breaking one of its rules.
    #[error("invalid command: {0}")]
    Invalid(String),
}

impl<C: Command> Envelope<C> {
    /// Decodes and checks a queue message body. The one decoder the handlers, the
    /// tests and the fuzz targets share, so what is fuzzed is what runs.
    pub fn decode(body: &str) -> Result<Self, DecodeError> {
        let envelope: Self = serde_json::from_str(body)?;
        for (field, time) in [
            ("deadline", &envelope.deadline),
            ("compensateUntil", &envelope.compensate_until),
        ] {
            if let Some(time) = time
                && crate::parse_rfc3339(time).is_none()
            {
                return Err(DecodeError::Invalid(format!(
                    "{field} {time:?} is not an RFC 3339 time"
                )));
            }
        }
        match envelope.command.invalid() {
            Some(why) => Err(DecodeError::Invalid(why)),
            None => Ok(envelope),
        }
    }
}

impl<C> Envelope<C> {
    /// What [`execute`] needs to know of the saga around the command.
    pub fn timing(&self) -> Timing<'_> {
        Timing {
            task_token: self.task_token.as_deref(),
            deadline: self.deadline.as_deref(),
            compensate_until: self.compensate_until.as_deref(),
        }
    }
}

/// The saga's side of a command: the token to answer and the times that bound it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing<'a> {
    /// The task token; absent for operator commands.
    pub task_token: Option<&'a str>,
    /// A forward command's deadline ([`Envelope::deadline`]).
    pub deadline: Option<&'a str>,
    /// A compensation's last retry time ([`Envelope::compensate_until`]).
    pub compensate_until: Option<&'a str>,
}

/// The rules of an order's lines ([`crate::lines`]), as the API enforced them when the
/// order was placed: a command breaking one was not sent by the saga.
fn invalid_lines(lines: &[OrderLine]) -> Option<String> {
    let quantity = |l: &OrderLine| i64::from(l.quantity);
    let found = crate::lines::violations(lines.iter().map(|l| (l.sku.0.as_str(), quantity(l))));
    found.first().map(|violation| match *violation {
        LineViolation::Count(n) => {
            format!("{n} lines; an order has 1 to {}", crate::lines::MAX_LINES)
        }
        LineViolation::Sku(i) => format!("SKU {:?} is not a catalog SKU", lines[i].sku.0),
        LineViolation::Duplicate(i) => format!("{} appears twice", lines[i].sku),
        LineViolation::Quantity(i) => format!("quantity {} of {}", lines[i].quantity, lines[i].sku),
    })
}

impl Command for InventoryCommand {
    fn invalid(&self) -> Option<String> {
        match self {
            Self::Reserve { lines, .. } | Self::Release { lines, .. } => invalid_lines(lines),
            Self::Restock { quantity, .. } if !(1..=MAX_RESTOCK).contains(quantity) => {
                Some(format!("restock of {quantity} units; 1 to {MAX_RESTOCK}"))
            }
            Self::Restock { .. } => None,
        }
    }
}

impl Command for PaymentCommand {
    fn invalid(&self) -> Option<String> {
        match self {
            Self::Authorize { amount: 0, .. } => Some("an authorization of 0".into()),
            Self::RefundPart { amount: 0, .. } => Some("a refund of 0".into()),
            Self::RefundPart { reference, .. } if !valid_reference(reference) => Some(format!(
                "reference {reference:?}: 1 to {MAX_REFERENCE_CHARS} letters, digits, '-' or '_'"
            )),
            _ => None,
        }
    }
}

/// A reference that can be part of an idempotency key and a DynamoDB map key as is.
fn valid_reference(reference: &str) -> bool {
    (1..=MAX_REFERENCE_CHARS).contains(&reference.len())
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Commands on the inventory queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all_fields = "camelCase")]
pub enum InventoryCommand {
    /// Hold stock for every line of an order, all or nothing.
    Reserve {
        /// Order whose lines to reserve.
        order_id: OrderId,
        /// Lines to reserve.
        lines: Vec<OrderLine>,
    },
    /// Compensation: give held stock back and leave a tombstone.
    Release {
        /// Order whose reservation to release.
        order_id: OrderId,
        /// Lines of the order, used when no reservation exists yet.
        lines: Vec<OrderLine>,
        /// Why the saga compensates.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Operator path: add units of a SKU.
    Restock {
        /// SKU to restock.
        sku: Sku,
        /// Units to add, 1 to 1,000,000.
        quantity: u32,
    },
}

/// Commands on the payments queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all_fields = "camelCase")]
pub enum PaymentCommand {
    /// Hold the order total on the shopper's payment method. The method is not in
    /// the command: the payments function reads it from the stored order.
    Authorize {
        /// Order to authorize for.
        order_id: OrderId,
        /// Amount in minor units.
        amount: u64,
        /// Currency of the amount.
        currency: Currency,
    },
    /// Take what was authorized for a confirmed order.
    Capture {
        /// Order whose authorization to capture.
        order_id: OrderId,
    },
    /// Wait for the shopper to authenticate the payment (3-D Secure): the task token
    /// is kept with the payment and answered when the authentication ends.
    AwaitAuthentication {
        /// Order whose payment awaits authentication.
        order_id: OrderId,
    },
    /// Something happened to the order's payment at the provider (a webhook event):
    /// look at it and answer the waiting `AwaitAuthentication` if the shopper's
    /// authentication ended.
    SettleAuthentication {
        /// Order the payment is for.
        order_id: OrderId,
        /// The provider's event id, for the logs.
        event_id: String,
    },
    /// Compensation: void an authorization, refund a capture, or void a charge that
    /// never happened.
    Refund {
        /// Order to refund.
        order_id: OrderId,
        /// Why the saga compensates.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Operator path: give back part of a captured order's payment (a returned item, a
    /// goodwill gesture). No task token; the outcome is in the ledger and the logs.
    RefundPart {
        /// Order whose payment to refund in part.
        order_id: OrderId,
        /// Amount in minor units, at most what the payment still holds.
        amount: u64,
        /// The operator's reference for this refund (a return or ticket number): the
        /// same reference refunds once.
        reference: String,
    },
}

/// Longest operator reference of a part refund; it becomes part of the provider's
/// idempotency key (Stripe takes 255 characters).
pub const MAX_REFERENCE_CHARS: usize = 64;

/// Largest restock in one command, to catch typos like an extra zero.
pub const MAX_RESTOCK: u32 = 1_000_000;

/// Longest cause, in characters, of a failure caused by a dependency. Step Functions
/// takes 32,768; an operator reading `shop saga show` needs the operation and the
/// service's message, not a response dump.
pub const MAX_CAUSE_CHARS: usize = 400;

/// A named failure to report with SendTaskFailure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct TaskFailure {
    /// The name the saga's `Retry` and `Catch` match.
    pub error: TaskError,
    /// Human-readable detail for operators.
    pub cause: String,
}

impl TaskFailure {
    /// A failure with the given name and cause.
    pub fn new(error: TaskError, cause: impl Into<String>) -> Self {
        Self {
            error,
            cause: cause.into(),
        }
    }

    /// A dependency failed: the cause is the error's whole chain (the operation, the
    /// service's code and message), cut to [`MAX_CAUSE_CHARS`] so the execution history
    /// an operator reads stays short.
    pub fn unavailable(error: TaskError, cause: &(dyn std::error::Error + 'static)) -> Self {
        let chain = observability::ErrorChain(cause).to_string();
        let cause = match chain.char_indices().nth(MAX_CAUSE_CHARS) {
            Some((cut, _)) => format!("{}…", &chain[..cut]),
            None => chain,
        };
        Self::new(error, cause)
    }
}

/// What a worker does with a saga command it has just received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// The saga still waits and the order is within its deadline: do the work.
    Work,
    /// The order's deadline passed while the command waited in its queue: answer
    /// [`TaskError::OrderExpired`] without doing the work.
    Expired(TaskFailure),
    /// The saga no longer waits for this command (its step timed out, or another
    /// delivery already answered): drop it, touching nothing.
    Stale,
}

/// Tells the saga the command was picked up, and finds out whether it still matters.
///
/// A `.waitForTaskToken` step's clocks start when the command is *sent*, so time in
/// the queue counts against the step. The receipt is a `SendTaskHeartbeat`: Step
/// Functions refuses it once the step has timed out or been answered, and that
/// refusal is how a command whose saga moved on is found before it charges a card or
/// holds stock. Then the order's own deadline is checked. Commands without a token
/// (operator restocks) always work. `now` is passed in so tests can place it.
pub async fn receive(
    callbacks: &dyn crate::ports::TaskCallbacks,
    task_token: Option<&str>,
    deadline: Option<&str>,
    now: time::OffsetDateTime,
) -> Result<Receipt, crate::ports::PortError> {
    let Some(token) = task_token else {
        return Ok(Receipt::Work);
    };
    if !callbacks.heartbeat(token).await? {
        return Ok(Receipt::Stale);
    }
    match deadline.and_then(|d| crate::parse_rfc3339(d).map(|at| (d, at))) {
        Some((text, at)) if now > at => Ok(Receipt::Expired(TaskFailure::new(
            TaskError::OrderExpired,
            format!("the order waited past its deadline, {text}"),
        ))),
        _ => Ok(Receipt::Work),
    }
}

/// The one way a worker runs a saga command: the receipt ([`receive`]), the work
/// only if the receipt says so, then the answer ([`answer_task`]). A stale command is
/// dropped, unexecuted and unanswered; only a failure to reach Step Functions is an
/// error, so the message is redelivered.
///
/// A compensation that fails transiently is answered with its transient error, and
/// the saga waits and sends it again (`CompensationWaiting` counts each time); once
/// its `compensate_until` has passed it is answered
/// [`TaskError::CompensationExhausted`] instead, so a human takes it.
pub async fn execute(
    callbacks: &dyn crate::ports::TaskCallbacks,
    timing: Timing<'_>,
    work: impl std::future::Future<Output = Result<serde_json::Value, TaskFailure>>,
) -> Result<(), crate::ports::PortError> {
    let now = time::OffsetDateTime::now_utc();
    let outcome = match receive(callbacks, timing.task_token, timing.deadline, now).await? {
        Receipt::Stale => {
            tracing::warn!("the saga no longer waits for this command: dropped unexecuted");
            return Ok(());
        }
        Receipt::Expired(failure) => Err(failure),
        Receipt::Work => work.await,
    };
    let outcome = outcome.map_err(|failure| patience(failure, timing.compensate_until, now));
    if let Err(failure) = &outcome {
        tracing::info!(error = failure.error.name(), cause = %failure.cause, "command failed");
    }
    answer_task(callbacks, timing.task_token, outcome).await
}

/// A compensation's transient failure, judged against how long it may keep waiting.
fn patience(
    failure: TaskFailure,
    compensate_until: Option<&str>,
    now: time::OffsetDateTime,
) -> TaskFailure {
    if !failure.error.is_transient() {
        return failure;
    }
    let Some((text, until)) =
        compensate_until.and_then(|t| crate::parse_rfc3339(t).map(|at| (t, at)))
    else {
        return failure;
    };
    if now > until {
        return TaskFailure::new(
            TaskError::CompensationExhausted,
            format!(
                "still failing after {text}, the last time to retry: {}",
                failure
            ),
        );
    }
    observability::emit(observability::Metric::CompensationWaiting, 1.0, &[]);
    failure
}

/// Answers the saga for a command: success with the output, or failure with the
/// error name its `Catch` matches. Commands without a token (operator commands) only
/// log, and a transient failure of theirs is returned for redelivery. A token that is no longer waiting is logged and dropped, since the saga
/// already moved on (timed out and compensated). Only a failure to deliver the
/// answer is an error, so the message is redelivered.
pub async fn answer_task(
    callbacks: &dyn crate::ports::TaskCallbacks,
    task_token: Option<&str>,
    outcome: Result<serde_json::Value, TaskFailure>,
) -> Result<(), crate::ports::PortError> {
    let Some(token) = task_token else {
        match &outcome {
            Ok(_) => tracing::info!("operator command done"),
            Err(failure) => {
                tracing::warn!(error = failure.error.name(), cause = %failure.cause, "operator command failed")
            }
        }
        return Ok(());
    };
    let delivered = match &outcome {
        Ok(output) => callbacks.succeed(token, output).await?,
        Err(failure) => {
            callbacks
                .fail(token, failure.error.name(), &failure.cause)
                .await?
        }
    };
    if !delivered {
        tracing::warn!("task token no longer waiting; the saga already moved on");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_no_producer_sends_are_refused_by_name() {
        let reserve = |lines: &str| {
            Envelope::<InventoryCommand>::decode(&format!(
                r#"{{"command":"Reserve","orderId":"ord-0190a4b2c3d4e5f60718293a4b5c6d7e","lines":{lines}}}"#
            ))
        };
        let line = |sku: &str, q: u32| format!(r#"{{"sku":"{sku}","quantity":{q},"unitPrice":1}}"#);
        assert!(reserve(&format!("[{}]", line("MUG", 2))).is_ok());
        for bad in [
            "[]".to_owned(),
            format!("[{}]", line("MUG", 0)),
            format!("[{}]", line("MUG", 1001)),
            format!("[{},{}]", line("MUG", 1), line("MUG", 1)),
            format!(
                "[{}]",
                (0..51)
                    .map(|i| line(&format!("S{i}"), 1))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ] {
            assert!(
                matches!(reserve(&bad), Err(DecodeError::Invalid(_))),
                "accepted {bad}"
            );
        }
        assert!(matches!(
            Envelope::<InventoryCommand>::decode(r#"{"command":"Teleport"}"#),
            Err(DecodeError::Json(_))
        ));
        let charge = |amount: u32| {
            Envelope::<PaymentCommand>::decode(&format!(
                r#"{{"command":"Authorize","orderId":"ord-0190a4b2c3d4e5f60718293a4b5c6d7e","amount":{amount},"currency":"EUR"}}"#
            ))
        };
        assert!(charge(100).is_ok());
        assert!(
            matches!(charge(0), Err(DecodeError::Invalid(_))),
            "accepted an authorization of 0"
        );
    }

    #[test]
    fn a_part_refund_names_an_amount_and_a_reference_that_fits_a_key() {
        let part = |amount: u64, reference: &str| {
            Envelope::<PaymentCommand>::decode(&format!(
                r#"{{"command":"RefundPart","orderId":"ord-1","amount":{amount},"reference":"{reference}"}}"#
            ))
        };
        assert!(part(1, "RMA-1042_b").is_ok());
        assert!(part(500, &"r".repeat(MAX_REFERENCE_CHARS)).is_ok());
        for (amount, reference) in [
            (0, "RMA-1"),
            (1, ""),
            (1, "RMA 1"),
            (1, "RMA/1"),
            (1, "ré"),
            (1, &*"r".repeat(MAX_REFERENCE_CHARS + 1)),
        ] {
            assert!(
                matches!(part(amount, reference), Err(DecodeError::Invalid(_))),
                "{amount} {reference:?}"
            );
        }
    }

    #[test]
    fn a_restock_adds_between_one_and_the_bound() {
        let restock = |quantity: u32| {
            Envelope::<InventoryCommand>::decode(&format!(
                r#"{{"command":"Restock","sku":"MUG","quantity":{quantity}}}"#
            ))
        };
        for fine in [1, MAX_RESTOCK] {
            assert!(restock(fine).is_ok(), "{fine}");
        }
        for bad in [0, MAX_RESTOCK + 1] {
            assert!(
                matches!(restock(bad), Err(DecodeError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn the_saga_hears_the_outcome_by_its_token_and_operators_by_the_log() {
        let callbacks = crate::fakes::FakeCallbacks::default();
        answer_task(&callbacks, Some("t1"), Ok(serde_json::json!({"ok": 1})))
            .await
            .unwrap();
        let declined = TaskFailure::new(TaskError::PaymentDeclined, "card declined");
        answer_task(&callbacks, Some("t2"), Err(declined.clone()))
            .await
            .unwrap();
        answer_task(&callbacks, None, Err(declined)).await.unwrap();
        assert_eq!(
            callbacks.succeeded.lock().unwrap().as_slice(),
            [("t1".to_owned(), serde_json::json!({"ok": 1}))]
        );
        assert_eq!(
            callbacks.failed.lock().unwrap().as_slice(),
            [("t2".to_owned(), "PaymentDeclined".to_owned())]
        );
    }

    #[test]
    fn decodes_the_reserve_command_the_saga_sends() {
        let raw = r#"{"command":"Reserve","taskToken":"t","correlationId":"c",
            "orderId":"ord-1","lines":[{"sku":"A","quantity":2,"unitPrice":100}]}"#;
        let env: Envelope<InventoryCommand> = serde_json::from_str(raw).unwrap();
        assert_eq!(env.task_token.as_deref(), Some("t"));
        assert!(
            matches!(env.command, InventoryCommand::Reserve { ref lines, .. } if lines[0].quantity == 2)
        );
    }

    #[test]
    fn refuses_an_unknown_command() {
        let raw = r#"{"command":"Steal","orderId":"ord-1"}"#;
        assert!(serde_json::from_str::<Envelope<InventoryCommand>>(raw).is_err());
    }

    #[tokio::test]
    async fn a_command_is_worked_only_while_its_saga_waits_and_its_order_is_in_time() {
        let callbacks = crate::fakes::FakeCallbacks::default();
        let deadline = "2026-12-03T12:00:00.000Z";
        let before = time::macros::datetime!(2026-12-03 11:59:59 UTC);
        let after = time::macros::datetime!(2026-12-03 12:00:00.001 UTC);
        let receipt = |token, deadline, now| receive(&callbacks, token, deadline, now);
        assert_eq!(
            receipt(Some("t1"), Some(deadline), before).await.unwrap(),
            Receipt::Work
        );
        assert_eq!(
            receipt(Some("t1"), None, after).await.unwrap(),
            Receipt::Work
        );
        let Receipt::Expired(failure) = receipt(Some("t1"), Some(deadline), after).await.unwrap()
        else {
            panic!("a command picked up after the deadline is not worked");
        };
        assert_eq!(failure.error, TaskError::OrderExpired);
        assert!(failure.cause.contains(deadline), "{failure}");
        assert_eq!(
            callbacks.heartbeats.lock().unwrap().as_slice(),
            ["t1", "t1", "t1"],
            "every receipt tells the saga"
        );
        callbacks.timed_out.lock().unwrap().push("t2".into());
        assert_eq!(
            receipt(Some("t2"), Some(deadline), before).await.unwrap(),
            Receipt::Stale
        );
        answer_task(&callbacks, Some("t3"), Ok(serde_json::json!({})))
            .await
            .unwrap();
        assert_eq!(
            receipt(Some("t3"), None, before).await.unwrap(),
            Receipt::Stale,
            "a redelivery after the answer"
        );
        let restocks = crate::fakes::FakeCallbacks::default();
        assert_eq!(
            receive(&restocks, None, Some(deadline), after)
                .await
                .unwrap(),
            Receipt::Work,
            "operator commands have no saga to ask"
        );
        assert!(restocks.heartbeats.lock().unwrap().is_empty());
    }

    #[test]
    fn a_deadline_that_is_not_a_time_is_refused() {
        let charge = |deadline: &str| {
            Envelope::<PaymentCommand>::decode(&format!(
                r#"{{"command":"Authorize","orderId":"ord-1","amount":1,"currency":"EUR","deadline":"{deadline}"}}"#
            ))
        };
        assert!(charge("2026-12-03T12:00:00.000Z").is_ok());
        assert!(matches!(charge("soon"), Err(DecodeError::Invalid(_))));
        let refund = Envelope::<PaymentCommand>::decode(
            r#"{"command":"Refund","orderId":"ord-1","compensateUntil":"tomorrow"}"#,
        );
        assert!(
            matches!(refund, Err(DecodeError::Invalid(why)) if why.contains("compensateUntil"))
        );
    }

    #[tokio::test]
    async fn a_compensation_failing_transiently_waits_until_its_patience_ends_then_escalates() {
        let callbacks = crate::fakes::FakeCallbacks::default();
        let down = || async {
            Err(TaskFailure::new(
                TaskError::PaymentProviderUnavailable,
                "refund endpoint down",
            ))
        };
        let timing = |token, until| Timing {
            task_token: Some(token),
            deadline: None,
            compensate_until: Some(until),
        };
        execute(
            &callbacks,
            timing("in-time", "2999-01-01T00:00:00Z"),
            down(),
        )
        .await
        .unwrap();
        execute(
            &callbacks,
            timing("too-late", "2000-01-01T00:00:00Z"),
            down(),
        )
        .await
        .unwrap();
        let declined = || async { Err(TaskFailure::new(TaskError::OrderCancelled, "tombstone")) };
        execute(
            &callbacks,
            timing("final", "2999-01-01T00:00:00Z"),
            declined(),
        )
        .await
        .unwrap();
        assert_eq!(
            callbacks.failed.lock().unwrap().as_slice(),
            [
                (
                    "in-time".to_string(),
                    "PaymentProviderUnavailable".to_string()
                ),
                ("too-late".to_string(), "CompensationExhausted".to_string()),
                ("final".to_string(), "OrderCancelled".to_string()),
            ]
        );
    }
}

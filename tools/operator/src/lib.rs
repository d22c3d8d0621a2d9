//! Operator commands: inspect and replay dead-letter queues, inspect and redrive failed
//! sagas, give back part of a payment. They speak only AWS APIs, so the same commands work on AWS and on `shop local`.

pub mod alarms;
pub mod audit;
pub mod dlq;
pub mod filter;
pub mod payments;
pub mod saga;
pub mod seed;
pub mod stack;
pub mod trace;

/// Why an operator command could not do what was asked. Returned before any message is
/// moved or deleted, except [`OpsError::Aws`] in the middle of a run, which the run's
/// journal makes safe to repeat.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The queue named on the command line is not one of the stack's queues.
    #[error("unknown queue {given:?}; the stack's queues are: {known}")]
    UnknownQueue {
        /// What the operator typed.
        given: String,
        /// The queues the stack has.
        known: String,
    },
    /// The stack lacks an output the command needs.
    #[error("the stack has no output {0:?}; is this the order saga stack?")]
    MissingOutput(String),
    /// A `--filter` expression could not be parsed.
    #[error("invalid filter {expr:?}: {reason}")]
    Filter {
        /// The expression.
        expr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The stack's outputs could not be read.
    #[error("cannot read the stack's outputs from {from}: {reason}")]
    Outputs {
        /// CloudFormation stack or file.
        from: String,
        /// Why.
        reason: String,
    },
    /// An AWS call failed.
    #[error("{operation} failed: {message}")]
    Aws {
        /// The API operation.
        operation: &'static str,
        /// The SDK's full error chain.
        message: String,
    },
    /// A port (an adapter over an AWS service) failed; the adapter's error, and the
    /// AWS error under it, stay as the source for the CLI to print whole.
    #[error(transparent)]
    Port(#[from] shop_domain::ports::PortError),
    /// The seed file could not be read or applied; its cause stays as the source.
    #[error(transparent)]
    Seed(#[from] crate::seed::SeedError),
    /// The command would do something unsafe or meaningless; nothing was done.
    #[error("{0}")]
    Refused(String),
    /// The audit log or replay journal could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Maps an SDK error to [`OpsError::Aws`] with the whole error chain, which is what an
/// operator needs to see (the SDK's own `Display` says only "service error").
pub(crate) fn aws<E: std::error::Error>(operation: &'static str) -> impl FnOnce(E) -> OpsError {
    move |e| OpsError::Aws {
        operation,
        message: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
    }
}

//! Step Functions: starting saga executions and answering task tokens.

use crate::port_error;
use async_trait::async_trait;
use aws_sdk_sfn::Client;
use aws_sdk_sfn::error::SdkError;
use serde_json::Value;
use shop_domain::OrderId;
use shop_domain::ports::{PortError, RunState, SagaRuns, SagaStarter, StartOutcome, TaskCallbacks};

/// The ARN of the execution named `name` of `state_machine_arn`: Step Functions names
/// an execution `arn:…:execution:<machine>:<name>` under `arn:…:stateMachine:<machine>`.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// Starts one execution per order, named after it.
#[derive(Clone)]
pub struct SfnSagaStarter {
    client: Client,
    state_machine_arn: String,
}

impl SfnSagaStarter {
    /// Starter for the given state machine.
    pub fn new(client: Client, state_machine_arn: impl Into<String>) -> Self {
        Self {
            client,
            state_machine_arn: state_machine_arn.into(),
        }
    }
}

#[async_trait]
impl SagaStarter for SfnSagaStarter {
    async fn start(&self, order_id: &OrderId, input: &Value) -> Result<StartOutcome, PortError> {
        // The X-Ray header carries the context the input carries: Step Functions' own
        // segments join the trace the saga's commands continue.
        let input = crate::with_traceparent(input.clone());
        let header = input["traceparent"].as_str().and_then(xray_trace_header);
        let result = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(order_id.as_str())
            .input(input.to_string())
            .set_trace_header(header)
            .send()
            .await;
        match result {
            Ok(_) => Ok(StartOutcome::Started),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_already_exists()) =>
            {
                Ok(StartOutcome::AlreadyExists)
            }
            Err(e) => Err(port_error("saga.start", e)),
        }
    }
}

/// The X-Ray form of a W3C `traceparent` (`Root=1-<8 hex>-<24 hex>;Parent=…;Sampled=…`),
/// which StartExecution's `traceHeader` takes: Step Functions' own tracing then puts
/// the execution's states in the order's trace.
fn xray_trace_header(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.split('-').skip(1);
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    (trace.len() == 32).then(|| {
        format!(
            "Root=1-{}-{};Parent={span};Sampled={}",
            &trace[..8],
            &trace[8..],
            u8::from(flags.ends_with('1'))
        )
    })
}

/// Executions are named after their order, so the state of an order's run is a
/// DescribeExecution of the name under this state machine.
#[async_trait]
impl SagaRuns for SfnSagaStarter {
    async fn run_state(&self, order_id: &OrderId) -> Result<RunState, PortError> {
        let arn = execution_arn(&self.state_machine_arn, order_id.as_str());
        match self
            .client
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
        {
            Ok(out) if out.status == aws_sdk_sfn::types::ExecutionStatus::Running => {
                Ok(RunState::Running)
            }
            Ok(_) => Ok(RunState::Ended),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_does_not_exist()) =>
            {
                Ok(RunState::NeverStarted)
            }
            Err(e) => Err(port_error("saga.describe", e)),
        }
    }
}

/// Answers task tokens. A token that is no longer waiting (timed out, or its
/// execution ended) is reported as `false`, not as an error: retrying cannot help.
#[derive(Clone)]
pub struct SfnTaskCallbacks {
    client: Client,
}

impl SfnTaskCallbacks {
    /// Callbacks over the given client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn token_is_dead<E: aws_sdk_sfn::error::ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|code| matches!(code, "TaskTimedOut" | "InvalidToken" | "TaskDoesNotExist"))
}

#[async_trait]
impl TaskCallbacks for SfnTaskCallbacks {
    async fn succeed(&self, task_token: &str, output: &Value) -> Result<bool, PortError> {
        match self
            .client
            .send_task_success()
            .task_token(task_token)
            .output(output.to_string())
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if token_is_dead(&e) => Ok(false),
            Err(e) => Err(port_error("saga.send_task_success", e)),
        }
    }

    async fn heartbeat(&self, task_token: &str) -> Result<bool, PortError> {
        match self
            .client
            .send_task_heartbeat()
            .task_token(task_token)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if token_is_dead(&e) => Ok(false),
            Err(e) => Err(port_error("saga.send_task_heartbeat", e)),
        }
    }

    async fn fail(&self, task_token: &str, error: &str, cause: &str) -> Result<bool, PortError> {
        let cause: String = cause.chars().take(32_000).collect();
        match self
            .client
            .send_task_failure()
            .task_token(task_token)
            .error(error)
            .cause(cause)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if token_is_dead(&e) => Ok(false),
            Err(e) => Err(port_error("saga.send_task_failure", e)),
        }
    }
}

#[cfg(test)]
mod trace_header_tests {
    #[test]
    fn a_traceparent_becomes_the_xray_header_step_functions_takes() {
        assert_eq!(
            super::xray_trace_header("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                .as_deref(),
            Some("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1")
        );
        assert_eq!(super::xray_trace_header("garbage"), None);
    }
}

#[cfg(test)]
mod tests {
    //! Step Functions' answers to a task callback, replayed: a dead token (the saga
    //! moved on) is `false`, any other failure an error, so the message is redelivered.
    use super::*;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn answering(code: &str) -> (Client, [aws_smithy_mocks::Rule; 3]) {
        let body = format!(r#"{{"__type":"{code}","message":"from the test"}}"#);
        let rules = [
            mock!(Client::send_task_success)
                .sequence()
                .http_status(400, Some(body.clone()))
                .build(),
            mock!(Client::send_task_failure)
                .sequence()
                .http_status(400, Some(body.clone()))
                .build(),
            mock!(Client::send_task_heartbeat)
                .sequence()
                .http_status(400, Some(body))
                .build(),
        ];
        let client = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, &rules);
        (client, rules)
    }

    #[tokio::test]
    async fn an_answer_taken_is_true() {
        use aws_sdk_sfn::operation::send_task_failure::SendTaskFailureOutput;
        use aws_sdk_sfn::operation::send_task_heartbeat::SendTaskHeartbeatOutput;
        use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput;
        let rules = [
            mock!(Client::send_task_success)
                .then_output(|| SendTaskSuccessOutput::builder().build()),
            mock!(Client::send_task_failure)
                .then_output(|| SendTaskFailureOutput::builder().build()),
            mock!(Client::send_task_heartbeat)
                .then_output(|| SendTaskHeartbeatOutput::builder().build()),
        ];
        let callbacks =
            SfnTaskCallbacks::new(mock_client!(aws_sdk_sfn, RuleMode::MatchAny, &rules));
        assert!(
            callbacks
                .succeed("t", &serde_json::json!({}))
                .await
                .unwrap()
        );
        assert!(callbacks.fail("t", "OutOfStock", "sold out").await.unwrap());
        assert!(callbacks.heartbeat("t").await.unwrap());
    }

    #[tokio::test]
    async fn a_dead_token_is_no_error_and_anything_else_is() {
        for dead in ["TaskTimedOut", "InvalidToken", "TaskDoesNotExist"] {
            let (client, _rules) = answering(dead);
            let callbacks = SfnTaskCallbacks::new(client);
            assert!(
                !callbacks
                    .succeed("t", &serde_json::json!({}))
                    .await
                    .unwrap()
            );
            assert!(!callbacks.fail("t", "OutOfStock", "late").await.unwrap());
            assert!(!callbacks.heartbeat("t").await.unwrap());
        }
        let (client, _rules) = answering("InvalidOutput");
        let callbacks = SfnTaskCallbacks::new(client);
        assert!(
            callbacks
                .succeed("t", &serde_json::json!({}))
                .await
                .is_err()
        );
        assert!(callbacks.fail("t", "OutOfStock", "late").await.is_err());
        assert!(callbacks.heartbeat("t").await.is_err());
    }
}

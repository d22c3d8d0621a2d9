//! Finding the stack's resources: from CloudFormation outputs on AWS, from the file
//! `shop local` writes on this machine. Both carry the same output keys.

use super::OpsError;
use crate::audit::OpsFiles;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The stack's outputs (`template.yaml`'s `Outputs`), by key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StackOutputs(pub BTreeMap<String, String>);

impl StackOutputs {
    /// Reads the outputs of a deployed CloudFormation stack.
    pub async fn from_cloudformation(
        client: &aws_sdk_cloudformation::Client,
        stack_name: &str,
    ) -> Result<Self, OpsError> {
        let out = client
            .describe_stacks()
            .stack_name(stack_name)
            .send()
            .await
            .map_err(|e| OpsError::Outputs {
                from: format!("CloudFormation stack {stack_name}"),
                reason: aws_sdk_cloudformation::error::DisplayErrorContext(&e).to_string(),
            })?;
        let stack = out.stacks().first().ok_or_else(|| OpsError::Outputs {
            from: format!("CloudFormation stack {stack_name}"),
            reason: "no such stack".into(),
        })?;
        Ok(Self(
            stack
                .outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
                .collect(),
        ))
    }

    /// One output, or an error naming it.
    pub fn get(&self, key: &str) -> Result<&str, OpsError> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| OpsError::MissingOutput(key.to_owned()))
    }
}

/// What `shop local` writes so operator commands can find its emulator and resources.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalStackFile {
    /// The emulator's endpoint.
    pub endpoint: String,
    /// Region the resources live in.
    pub region: String,
    /// The template's outputs, resolved against the local resources.
    pub outputs: StackOutputs,
    /// The identity provider the local stack trusts, for `shop token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<LocalIssuerFile>,
    /// The file the local trace receiver keeps the session's spans in, for `shop
    /// trace --local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces: Option<PathBuf>,
}

/// Where `shop token` finds the local issuer: its URL, audience and signing key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalIssuerFile {
    /// Issuer URL (the tokens' `iss`).
    pub url: String,
    /// The tokens' `aud`.
    pub audience: String,
    /// The PEM file of the signing key.
    pub key_file: PathBuf,
}

impl LocalStackFile {
    /// Where `shop local --stack-name NAME` writes it in its state folder (`.shop`).
    pub fn path(state_dir: &Path, stack_name: &str) -> PathBuf {
        state_dir.join(format!("{stack_name}.stack.json"))
    }

    /// Writes the file (creating its folder).
    pub fn write(&self, path: &Path) -> Result<(), OpsError> {
        let io = |source| OpsError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(path, text).map_err(io)
    }

    /// Reads the file; the error says to start `shop local` when it is missing.
    pub fn read(path: &Path) -> Result<Self, OpsError> {
        let text = std::fs::read_to_string(path).map_err(|e| OpsError::Outputs {
            from: path.display().to_string(),
            reason: format!("{e} (is `shop local` running?)"),
        })?;
        serde_json::from_str(&text).map_err(|e| OpsError::Outputs {
            from: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

/// A queue of the stack, as operators name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackQueue {
    /// The output key without `Url` (`PaymentsDLQ`), the short name operators type.
    pub key: String,
    /// The queue's name (the last part of its URL).
    pub name: String,
    /// The queue's URL.
    pub url: String,
}

impl StackQueue {
    /// Whether this is a FIFO queue (its name says so).
    pub fn is_fifo(&self) -> bool {
        self.name.ends_with(".fifo")
    }

    /// A queue known only by URL (e.g. `--to` outside the stack's outputs).
    pub fn from_url(url: &str) -> Self {
        let name = url.rsplit('/').next().unwrap_or(url).to_owned();
        Self {
            key: name.clone(),
            name,
            url: url.to_owned(),
        }
    }
}

/// Everything an operator command needs: outputs, clients (built once), local files.
pub struct Ops {
    /// The stack's outputs.
    pub outputs: StackOutputs,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// EventBridge.
    pub events: aws_sdk_eventbridge::Client,
    /// Step Functions.
    pub sfn: aws_sdk_sfn::Client,
    /// CloudWatch (alarm states).
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// DynamoDB (orders, reservations, ledger).
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// CloudWatch Logs (the spans Transaction Search keeps).
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// Audit log and replay journal.
    pub files: OpsFiles,
}

impl Ops {
    /// Builds the clients from one SDK configuration.
    pub fn new(sdk: &aws_config::SdkConfig, outputs: StackOutputs, files: OpsFiles) -> Self {
        Self {
            outputs,
            sqs: aws_sdk_sqs::Client::new(sdk),
            events: aws_sdk_eventbridge::Client::new(sdk),
            sfn: aws_sdk_sfn::Client::new(sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            files,
        }
    }

    /// Every queue in the outputs (keys ending in `QueueUrl` or `DLQUrl`).
    pub fn queues(&self) -> Vec<StackQueue> {
        self.outputs
            .0
            .iter()
            .filter(|(k, _)| k.ends_with("QueueUrl") || k.ends_with("DLQUrl"))
            .map(|(k, v)| StackQueue {
                key: k.trim_end_matches("Url").to_owned(),
                ..StackQueue::from_url(v)
            })
            .collect()
    }

    /// The stack's dead-letter queues (outputs named `*DLQUrl`).
    pub fn dead_letter_queues(&self) -> Vec<StackQueue> {
        self.queues()
            .into_iter()
            .filter(|q| q.key.ends_with("DLQ"))
            .collect()
    }

    /// Resolves what an operator typed: a short name (`PaymentsDLQ`, any case), a queue
    /// name, or a queue URL of the stack.
    pub fn queue(&self, given: &str) -> Result<StackQueue, OpsError> {
        let queues = self.queues();
        queues
            .iter()
            .find(|q| q.key.eq_ignore_ascii_case(given) || q.name == given || q.url == given)
            .cloned()
            .ok_or_else(|| OpsError::UnknownQueue {
                given: given.to_owned(),
                known: queues
                    .iter()
                    .map(|q| q.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The queue's ARN.
    pub async fn queue_arn(&self, queue: &StackQueue) -> Result<String, OpsError> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&queue.url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(super::aws("sqs:GetQueueAttributes"))?;
        Ok(out
            .attributes
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .unwrap_or_default())
    }
}

//! Names and intrinsic functions as they resolve in a local stack.

use super::QueueInfo;
use crate::ACCOUNT_ID;
use crate::template::{Names, Template, resolve};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// How the template's names and intrinsics resolve in a local stack: physical names
/// under the stack's prefix, ARNs in the emulator's account, and what was created so far.
pub(super) struct LocalNames<'a> {
    pub(super) prefix: &'a str,
    pub(super) region: &'a str,
    pub(super) template: &'a Template,
    pub(super) parameters: BTreeMap<String, Value>,
    pub(super) queues: BTreeMap<String, QueueInfo>,
    pub(super) secrets: BTreeMap<String, String>,
}

impl LocalNames<'_> {
    pub(super) fn physical(&self, logical_id: &str) -> String {
        format!("{}-{logical_id}", self.prefix)
    }

    fn arn(&self, service: &str, rest: &str) -> String {
        format!("arn:aws:{service}:{}:{ACCOUNT_ID}:{rest}", self.region)
    }
}

impl Names for LocalNames<'_> {
    fn reference(&self, id: &str) -> Option<Value> {
        match id {
            "AWS::StackName" => return Some(json!(self.prefix)),
            "AWS::Region" => return Some(json!(self.region)),
            "AWS::AccountId" => return Some(json!(ACCOUNT_ID)),
            "AWS::Partition" => return Some(json!("aws")),
            _ => {}
        }
        if let Some(p) = self.parameters.get(id) {
            return Some(p.clone());
        }
        // SAM's `!Ref Function.Alias` (the AutoPublishAlias): locally there are no
        // versions, so the alias is the function itself.
        if let Some(function) = id.strip_suffix(".Alias")
            && self.template.kind_of(function) == Some("AWS::Serverless::Function")
        {
            return self.attribute(function, "Arn");
        }
        Some(match self.template.kind_of(id)? {
            "AWS::SQS::Queue" => json!(self.queues.get(id)?.url),
            "AWS::SecretsManager::Secret" => json!(self.secrets.get(id)?),
            "AWS::Serverless::StateMachine" => {
                json!(self.arn("states", &format!("stateMachine:{}", self.physical(id))))
            }
            "AWS::Events::EventBus" => self.attribute(id, "Name")?,
            "AWS::DynamoDB::Table" | "AWS::Serverless::Function" | "AWS::Events::Rule" => {
                json!(self.physical(id))
            }
            "AWS::SNS::Topic" => json!(self.arn("sns", &self.physical(id))),
            "AWS::CloudWatch::Dashboard" => {
                let name = self.template.resources[id].pointer("/Properties/DashboardName")?;
                resolve(name, self, self.template).ok()?
            }
            "AWS::Cognito::UserPool" => json!(format!("{}_{}", self.region, self.physical(id))),
            _ => json!(id),
        })
    }

    fn attribute(&self, id: &str, attribute: &str) -> Option<Value> {
        let kind = self.template.kind_of(id)?;
        Some(match (kind, attribute) {
            ("AWS::SQS::Queue", "Arn") => json!(self.queues.get(id)?.arn),
            ("AWS::SQS::Queue", "QueueName") => json!(self.queues.get(id)?.name),
            ("AWS::SQS::Queue", "QueueUrl") => json!(self.queues.get(id)?.url),
            ("AWS::DynamoDB::Table", "Arn") => {
                json!(self.arn("dynamodb", &format!("table/{}", self.physical(id))))
            }
            ("AWS::Events::EventBus", "Name") => {
                let name = self.template.resources[id].pointer("/Properties/Name")?;
                resolve(name, self, self.template).ok()?
            }
            ("AWS::Events::EventBus", "Arn") => {
                let name = self.attribute(id, "Name")?;
                json!(self.arn("events", &format!("event-bus/{}", name.as_str()?)))
            }
            ("AWS::Events::Rule", "Arn") => {
                json!(self.arn("events", &format!("rule/{}", self.physical(id))))
            }
            ("AWS::Serverless::Function", "Arn") => {
                json!(self.arn("lambda", &format!("function:{}", self.physical(id))))
            }
            ("AWS::Serverless::StateMachine", "Name") => json!(self.physical(id)),
            ("AWS::Logs::LogGroup", "Arn") => {
                json!(self.arn("logs", &format!("log-group:{}", self.physical(id))))
            }
            _ => return None,
        })
    }
}

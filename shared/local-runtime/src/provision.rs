//! Creating the template's resources in the emulator, under a name prefix so several
//! stacks (one per test) can share one emulator.

use crate::ACCOUNT_ID;
use crate::jwt_authorizer::AuthorizerSpec;
use crate::template::{Names, Template, TemplateError, resolve};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_eventbridge::types::{DeadLetterConfig, RuleState, Target};
use aws_sdk_sfn::types::StateMachineType;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// Resource types the local runtime has nothing to do for: they only matter on AWS.
const CLOUD_ONLY: &[&str] = &[
    "AWS::Logs::LogGroup",
    "AWS::SQS::QueuePolicy",
    "AWS::Lambda::Permission",
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Integration",
    // The alarm topic and its key: alarms locally name the topic's ARN, and the
    // emulator never evaluates an alarm, so nothing would ever be published.
    "AWS::KMS::Key",
    "AWS::SNS::Topic",
    "AWS::SNS::TopicPolicy",
    "AWS::SNS::Subscription",
    // The stack's own identity provider. `shop local` points the authorizer at its
    // loopback issuer instead (JwtIssuer), so these are not created; a stack
    // provisioned without an issuer has an authorizer whose Cognito issuer cannot be
    // reached from here, and every request it guards is refused (401).
    "AWS::Cognito::UserPool",
    "AWS::Cognito::UserPoolClient",
];

/// Concurrent invocations per SQS event source without `ScalingConfig`: the smallest
/// `MaximumConcurrency` AWS accepts, so local runs stay light on the emulator.
pub const DEFAULT_CONCURRENCY: usize = 2;

/// A queue as created.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    /// Physical name.
    pub name: String,
    /// URL to call the SQS API with.
    pub url: String,
    /// ARN.
    pub arn: String,
    /// Logical id of its dead-letter queue, if it has a redrive policy.
    pub dead_letter: Option<String>,
    /// Receives before a message moves to the dead-letter queue.
    pub max_receive_count: Option<u32>,
}

/// An SQS event source of a function, as Lambda's event source mapping would run it.
#[derive(Debug, Clone)]
pub struct SqsSource {
    /// Logical id of the queue.
    pub queue: String,
    /// Most records per invocation.
    pub batch_size: i32,
    /// How long to gather a batch, in seconds.
    pub window_seconds: u64,
    /// Whether the function reports partial batch failures.
    pub report_failures: bool,
    /// Most concurrent invocations (`ScalingConfig.MaximumConcurrency`).
    pub max_concurrency: usize,
}

/// Lambda's timeout when a function declares none.
const DEFAULT_TIMEOUT_SECONDS: u64 = 3;

/// A function as declared.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Logical id, e.g. `InventoryFunction`.
    pub logical_id: String,
    /// Physical name used in logs.
    pub name: String,
    /// Name of the binary that implements it (`Metadata.BuildProperties.Binary`), as
    /// `cargo lambda watch` serves it.
    pub binary: Option<String>,
    /// Environment variables with every intrinsic resolved.
    pub env: BTreeMap<String, String>,
    /// SQS event sources.
    pub sqs_sources: Vec<SqsSource>,
    /// Periods of its `Schedule` events (`rate(...)` expressions).
    pub schedules: Vec<std::time::Duration>,
    /// Its `Timeout` (or the template's global one; Lambda's default is 3 s): what an
    /// invocation's deadline is measured from.
    pub timeout: std::time::Duration,
}

/// An HTTP route to a function.
#[derive(Debug, Clone)]
pub struct Route {
    /// HTTP method.
    pub method: String,
    /// Path pattern with `{param}` segments.
    pub path: String,
    /// Logical id of the function.
    pub function: String,
    /// The JWT authorizer in front of it, if any.
    pub authorization: Option<RouteAuthorization>,
}

/// A route's `AuthorizationType: JWT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAuthorization {
    /// Logical id of the authorizer.
    pub authorizer: String,
    /// `AuthorizationScopes`: the token needs at least one of them (none: any token).
    pub scopes: Vec<String>,
}

/// The stage API Gateway serves the API on when the template declares none.
pub const DEFAULT_STAGE: &str = "$default";

/// A stack as created in the emulator.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Name prefix of every resource.
    pub prefix: String,
    /// Region the resources live in.
    pub region: String,
    /// Logical id to table name.
    pub tables: BTreeMap<String, String>,
    /// Logical id to queue.
    pub queues: BTreeMap<String, QueueInfo>,
    /// Logical id to event bus name.
    pub buses: BTreeMap<String, String>,
    /// Logical id to state machine ARN.
    pub state_machines: BTreeMap<String, String>,
    /// Logical id to function.
    pub functions: BTreeMap<String, FunctionSpec>,
    /// The template's outputs, resolved; the same keys the deployed stack has.
    pub outputs: BTreeMap<String, String>,
    /// HTTP routes.
    pub routes: Vec<Route>,
    /// The HTTP API's stage (`$default`: served at the root, no path prefix).
    pub stage: String,
    /// Logical id to JWT authorizer.
    pub authorizers: BTreeMap<String, AuthorizerSpec>,
}

impl Stack {
    /// The queue with this logical id.
    pub fn queue(&self, logical_id: &str) -> Option<&QueueInfo> {
        self.queues.get(logical_id)
    }

    /// The logical id of the queue with this ARN.
    pub fn queue_by_arn(&self, arn: &str) -> Option<&str> {
        self.queues
            .iter()
            .find(|(_, q)| q.arn == arn)
            .map(|(k, _)| k.as_str())
    }
}

/// SDK clients the provisioning uses.
pub struct Clients {
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// EventBridge.
    pub events: aws_sdk_eventbridge::Client,
    /// Step Functions.
    pub sfn: aws_sdk_sfn::Client,
    /// CloudWatch, for the alarms operators look at.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// Secrets Manager, for the secrets functions read at cold start.
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Clients {
    /// Clients from one SDK configuration.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            events: aws_sdk_eventbridge::Client::new(sdk),
            sfn: aws_sdk_sfn::Client::new(sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }
}

/// Provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The template asks for something the local runtime cannot do.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A rule of the template refuses the parameters; nothing was created.
    #[error(transparent)]
    Rule(#[from] crate::template::RuleViolation),
    /// The emulator refused a call.
    #[error("creating {resource} failed: {message}")]
    Emulator {
        /// Logical id.
        resource: String,
        /// The SDK error, rendered.
        message: String,
    },
}

fn emulator<E: std::error::Error>(resource: &str) -> impl FnOnce(E) -> ProvisionError + '_ {
    move |e| ProvisionError::Emulator {
        resource: resource.to_owned(),
        message: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
    }
}

fn unsupported(resource: &str, reason: impl Into<String>) -> ProvisionError {
    ProvisionError::Template(TemplateError::Unsupported {
        resource: resource.to_owned(),
        reason: reason.into(),
    })
}

struct LocalNames<'a> {
    prefix: &'a str,
    region: &'a str,
    template: &'a Template,
    parameters: BTreeMap<String, Value>,
    queues: BTreeMap<String, QueueInfo>,
    secrets: BTreeMap<String, String>,
}

impl LocalNames<'_> {
    fn physical(&self, logical_id: &str) -> String {
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

/// The value a secret is created with: its `SecretString`, or what
/// `GenerateSecretString` would write (the template JSON with a random alphanumeric
/// string under `GenerateStringKey`, or the bare random string).
/// A table's or an index's `KeySchema`.
fn key_schema(resource: &str, schema: &Value) -> Result<Vec<KeySchemaElement>, ProvisionError> {
    schema
        .as_array()
        .into_iter()
        .flatten()
        .map(|key| {
            KeySchemaElement::builder()
                .attribute_name(key["AttributeName"].as_str().unwrap_or_default())
                .key_type(KeyType::from(key["KeyType"].as_str().unwrap_or_default()))
                .build()
                .map_err(emulator(resource))
        })
        .collect()
}

/// The period of an EventBridge `rate(N unit)` expression.
fn rate(expression: &str) -> Option<std::time::Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (count, unit) = inner.trim().split_once(' ')?;
    let count: u64 = count.parse().ok().filter(|c| *c > 0)?;
    let seconds = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(count * seconds))
}

fn secret_value(p: &Value) -> Result<String, String> {
    if let Some(text) = p.get("SecretString").and_then(Value::as_str) {
        return Ok(text.to_owned());
    }
    let Some(generate) = p.get("GenerateSecretString") else {
        return Err("a secret needs SecretString or GenerateSecretString".into());
    };
    let length = generate
        .get("PasswordLength")
        .and_then(|v| text(v)?.parse::<usize>().ok())
        .unwrap_or(32);
    let random: String = std::iter::repeat_with(|| uuid::Uuid::new_v4().simple().to_string())
        .flat_map(|chunk| chunk.chars().collect::<Vec<_>>())
        .take(length)
        .collect();
    match (
        generate.get("SecretStringTemplate").and_then(Value::as_str),
        generate.get("GenerateStringKey").and_then(Value::as_str),
    ) {
        (Some(template), Some(key)) => {
            let mut json: serde_json::Map<String, Value> = serde_json::from_str(template)
                .map_err(|e| format!("SecretStringTemplate is not a JSON object: {e}"))?;
            json.insert(key.to_owned(), json!(random));
            Ok(Value::Object(json).to_string())
        }
        (None, None) => Ok(random),
        _ => Err("SecretStringTemplate and GenerateStringKey go together".into()),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The scalars of a list (`Audience`, `AuthorizationScopes`, `AlarmActions`), as text;
/// empty when absent.
fn texts(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(text)
        .collect()
}

/// Creates every resource of `template` under `prefix` and describes the result.
pub async fn provision(
    template: &Template,
    prefix: &str,
    parameter_overrides: &BTreeMap<String, String>,
    clients: &Clients,
    region: &str,
) -> Result<Stack, ProvisionError> {
    let mut parameters: BTreeMap<String, Value> = template.parameters.clone();
    for (k, v) in parameter_overrides {
        parameters.insert(k.clone(), json!(v));
    }
    let mut names = LocalNames {
        prefix,
        region,
        template,
        parameters,
        queues: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    crate::template::check_rules(&names, template)?;
    let mut active: Vec<(&String, &Value)> = Vec::new();
    for (id, resource) in &template.resources {
        if let Some(condition) = resource.get("Condition") {
            let expr = json!({ "Fn::If": [condition, true, false] });
            if resolve(&expr, &names, template).map_err(|e| unsupported(id, e))? != json!(true) {
                continue;
            }
        }
        active.push((id, resource));
    }
    let kind = |r: &Value| {
        r.get("Type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let props = |id: &str, r: &Value, names: &LocalNames| {
        resolve(r.get("Properties").unwrap_or(&json!({})), names, template)
            .map_err(|e| unsupported(id, e))
    };

    let mut stack = Stack {
        prefix: prefix.to_owned(),
        region: region.to_owned(),
        tables: BTreeMap::new(),
        queues: BTreeMap::new(),
        buses: BTreeMap::new(),
        state_machines: BTreeMap::new(),
        functions: BTreeMap::new(),
        routes: Vec::new(),
        outputs: BTreeMap::new(),
        stage: DEFAULT_STAGE.to_owned(),
        authorizers: BTreeMap::new(),
    };

    for (id, r) in &active {
        let k = kind(r);
        if !CLOUD_ONLY.contains(&k.as_str())
            && !matches!(
                k.as_str(),
                "AWS::DynamoDB::Table"
                    | "AWS::CloudWatch::Alarm"
                    | "AWS::CloudWatch::Dashboard"
                    | "AWS::SQS::Queue"
                    | "AWS::SecretsManager::Secret"
                    | "AWS::Events::EventBus"
                    | "AWS::Events::Rule"
                    | "AWS::Serverless::StateMachine"
                    | "AWS::Serverless::Function"
                    | "AWS::ApiGatewayV2::Route"
                    | "AWS::ApiGatewayV2::Stage"
                    | "AWS::ApiGatewayV2::Authorizer"
            )
        {
            return Err(unsupported(
                id,
                format!("type {k} is not supported by the local runtime"),
            ));
        }
    }

    // Queues without a redrive policy first, so dead-letter ARNs exist when needed.
    let mut queues: Vec<_> = active
        .iter()
        .filter(|(_, r)| kind(r) == "AWS::SQS::Queue")
        .collect();
    queues.sort_by_key(|(_, r)| r.pointer("/Properties/RedrivePolicy").is_some());
    for (id, r) in queues {
        let p = props(id, r, &names)?;
        let fifo = p.get("FifoQueue").and_then(Value::as_bool).unwrap_or(false);
        let name = format!("{}{}", names.physical(id), if fifo { ".fifo" } else { "" });
        let mut attributes = HashMap::new();
        for key in [
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "ReceiveMessageWaitTimeSeconds",
            "MaximumMessageSize",
            "FifoQueue",
            "ContentBasedDeduplication",
        ] {
            if let Some(v) = p.get(key).and_then(text) {
                attributes.insert(QueueAttributeName::from(key), v);
            }
        }
        let mut dead_letter = None;
        let mut max_receive_count = None;
        if let Some(policy) = p.get("RedrivePolicy") {
            let dlq_arn = policy
                .get("deadLetterTargetArn")
                .and_then(Value::as_str)
                .unwrap_or_default();
            dead_letter = names
                .queues
                .iter()
                .find(|(_, q)| q.arn == dlq_arn)
                .map(|(k, _)| k.clone());
            if dead_letter.is_none() {
                return Err(unsupported(
                    id,
                    "redrive policy must target a queue of this template",
                ));
            }
            max_receive_count = policy
                .get("maxReceiveCount")
                .and_then(|v| text(v)?.parse().ok());
            attributes.insert(QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        let out = clients
            .sqs
            .create_queue()
            .queue_name(&name)
            .set_attributes(Some(attributes))
            .send()
            .await
            .map_err(emulator(id))?;
        let info = QueueInfo {
            arn: format!("arn:aws:sqs:{region}:{ACCOUNT_ID}:{name}"),
            url: out.queue_url.unwrap_or_default(),
            name,
            dead_letter,
            max_receive_count,
        };
        names.queues.insert((*id).clone(), info);
    }
    stack.queues = names.queues.clone();

    for (id, r) in active
        .iter()
        .filter(|(_, r)| kind(r) == "AWS::DynamoDB::Table")
    {
        let p = props(id, r, &names)?;
        if p.get("LocalSecondaryIndexes").is_some() {
            return Err(unsupported(
                id,
                "local secondary indexes are not supported locally yet",
            ));
        }
        let name = names.physical(id);
        let mut create = clients
            .dynamodb
            .create_table()
            .table_name(&name)
            .billing_mode(BillingMode::PayPerRequest);
        create = create.set_key_schema(Some(key_schema(id, &p["KeySchema"])?));
        for index in p
            .get("GlobalSecondaryIndexes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let projection = &index["Projection"];
            let non_key = projection["NonKeyAttributes"].as_array().map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            });
            let gsi = GlobalSecondaryIndex::builder()
                .index_name(index["IndexName"].as_str().unwrap_or_default())
                .set_key_schema(Some(key_schema(id, &index["KeySchema"])?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            projection["ProjectionType"].as_str().unwrap_or("ALL"),
                        ))
                        .set_non_key_attributes(non_key)
                        .build(),
                )
                .build()
                .map_err(emulator(id))?;
            create = create.global_secondary_indexes(gsi);
        }
        for attribute in p
            .get("AttributeDefinitions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let definition = AttributeDefinition::builder()
                .attribute_name(attribute["AttributeName"].as_str().unwrap_or_default())
                .attribute_type(ScalarAttributeType::from(
                    attribute["AttributeType"].as_str().unwrap_or_default(),
                ))
                .build()
                .map_err(emulator(id))?;
            create = create.attribute_definitions(definition);
        }
        create.send().await.map_err(emulator(id))?;
        if let Some(ttl) = p.get("TimeToLiveSpecification") {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(ttl["AttributeName"].as_str().unwrap_or_default())
                .enabled(ttl["Enabled"].as_bool().unwrap_or(true))
                .build()
                .map_err(emulator(id))?;
            clients
                .dynamodb
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(emulator(id))?;
        }
        stack.tables.insert((*id).clone(), name);
    }

    for (id, r) in active
        .iter()
        .filter(|(_, r)| kind(r) == "AWS::SecretsManager::Secret")
    {
        let p = props(id, r, &names)?;
        let value = secret_value(&p).map_err(|e| unsupported(id, e))?;
        let out = clients
            .secrets
            .create_secret()
            .name(names.physical(id))
            .secret_string(value)
            .send()
            .await
            .map_err(emulator(id))?;
        names
            .secrets
            .insert((*id).clone(), out.arn.unwrap_or_default());
    }

    for (id, r) in active
        .iter()
        .filter(|(_, r)| kind(r) == "AWS::Events::EventBus")
    {
        let p = props(id, r, &names)?;
        let name = p
            .get("Name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| names.physical(id));
        clients
            .events
            .create_event_bus()
            .name(&name)
            .send()
            .await
            .map_err(emulator(id))?;
        stack.buses.insert((*id).clone(), name);
    }

    for (id, r) in active
        .iter()
        .filter(|(_, r)| kind(r) == "AWS::Events::Rule")
    {
        let p = props(id, r, &names)?;
        let rule = names.physical(id);
        let bus = p
            .get("EventBusName")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_owned();
        clients
            .events
            .put_rule()
            .name(&rule)
            .event_bus_name(&bus)
            .event_pattern(
                p.get("EventPattern")
                    .cloned()
                    .unwrap_or_default()
                    .to_string(),
            )
            .state(RuleState::Enabled)
            .send()
            .await
            .map_err(emulator(id))?;
        for target in p
            .get("Targets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let arn = target["Arn"].as_str().unwrap_or_default();
            if !arn.starts_with("arn:aws:sqs:") {
                return Err(unsupported(
                    id,
                    "rule targets must be SQS queues locally (the emulator cannot deliver to others)",
                ));
            }
            let mut t = Target::builder()
                .id(target["Id"].as_str().unwrap_or("target"))
                .arn(arn);
            if let Some(dlq) = target
                .pointer("/DeadLetterConfig/Arn")
                .and_then(Value::as_str)
            {
                t = t.dead_letter_config(DeadLetterConfig::builder().arn(dlq).build());
            }
            clients
                .events
                .put_targets()
                .rule(&rule)
                .event_bus_name(&bus)
                .targets(t.build().map_err(emulator(id))?)
                .send()
                .await
                .map_err(emulator(id))?;
        }
    }

    for (id, r) in active
        .iter()
        .filter(|(_, r)| kind(r) == "AWS::Serverless::StateMachine")
    {
        let p = props(id, r, &names)?;
        let uri = p
            .get("DefinitionUri")
            .and_then(Value::as_str)
            .ok_or_else(|| unsupported(id, "needs a DefinitionUri file"))?;
        let mut definition = std::fs::read_to_string(template.dir.join(uri))
            .map_err(|e| unsupported(id, format!("cannot read {uri}: {e}")))?;
        if let Some(Value::Object(subs)) = p.get("DefinitionSubstitutions") {
            for (key, value) in subs {
                definition =
                    definition.replace(&format!("${{{key}}}"), &text(value).unwrap_or_default());
            }
        }
        if let Some(at) = definition.find("${") {
            let name: String = definition[at..].chars().take_while(|c| *c != '}').collect();
            return Err(unsupported(
                id,
                format!("definition uses {name}}} but DefinitionSubstitutions does not define it"),
            ));
        }
        let machine_type = match p.get("Type").and_then(Value::as_str) {
            Some("EXPRESS") => StateMachineType::Express,
            _ => StateMachineType::Standard,
        };
        let out = clients
            .sfn
            .create_state_machine()
            .name(names.physical(id))
            .definition(definition)
            .role_arn(format!("arn:aws:iam::{ACCOUNT_ID}:role/{prefix}-saga"))
            .r#type(machine_type)
            .send()
            .await
            .map_err(emulator(id))?;
        stack
            .state_machines
            .insert((*id).clone(), out.state_machine_arn);
    }

    let globals = &template.function_globals;
    let global_env = resolve(
        globals
            .pointer("/Environment/Variables")
            .unwrap_or(&json!({})),
        &names,
        template,
    )
    .map_err(|e| unsupported("Globals", e))?;
    for (id, r) in active
        .iter()
        .filter(|(_, r)| kind(r) == "AWS::Serverless::Function")
    {
        let p = props(id, r, &names)?;
        let mut env = BTreeMap::new();
        for source in [
            &global_env,
            p.pointer("/Environment/Variables").unwrap_or(&json!({})),
        ] {
            if let Value::Object(vars) = source {
                for (k, v) in vars {
                    env.insert(k.clone(), text(v).unwrap_or_default());
                }
            }
        }
        let mut sqs_sources = Vec::new();
        let mut schedules = Vec::new();
        if let Some(Value::Object(events)) = p.get("Events") {
            for (event_id, event) in events {
                let ep = &event["Properties"];
                match event["Type"].as_str() {
                    Some("SQS") => {
                        let arn = ep["Queue"].as_str().unwrap_or_default();
                        let queue = stack.queue_by_arn(arn).ok_or_else(|| {
                            unsupported(
                                id,
                                format!("event {event_id}: queue {arn} is not in the template"),
                            )
                        })?;
                        sqs_sources.push(SqsSource {
                            queue: queue.to_owned(),
                            batch_size: ep["BatchSize"].as_i64().unwrap_or(10).clamp(1, 10) as i32,
                            window_seconds: ep["MaximumBatchingWindowInSeconds"]
                                .as_u64()
                                .unwrap_or(0),
                            report_failures: ep["FunctionResponseTypes"]
                                .as_array()
                                .is_some_and(|t| t.iter().any(|v| v == "ReportBatchItemFailures")),
                            max_concurrency: ep
                                .pointer("/ScalingConfig/MaximumConcurrency")
                                .and_then(text)
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(DEFAULT_CONCURRENCY),
                        });
                    }
                    Some("Schedule") => {
                        let expression = ep["Schedule"].as_str().unwrap_or_default();
                        schedules.push(rate(expression).ok_or_else(|| {
                            unsupported(
                                id,
                                format!(
                                    "event {event_id}: schedule {expression:?} is not rate(N unit); cron expressions are not supported locally"
                                ),
                            )
                        })?);
                    }
                    Some("HttpApi") => stack.routes.push(Route {
                        method: ep["Method"].as_str().unwrap_or("ANY").to_uppercase(),
                        path: ep["Path"].as_str().unwrap_or("/").to_owned(),
                        function: (*id).clone(),
                        authorization: None,
                    }),
                    other => {
                        return Err(unsupported(
                            id,
                            format!("event {event_id} of type {other:?} is not supported locally"),
                        ));
                    }
                }
            }
        }
        stack.functions.insert(
            (*id).clone(),
            FunctionSpec {
                logical_id: (*id).clone(),
                name: names.physical(id),
                binary: r
                    .pointer("/Metadata/BuildProperties/Binary")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                env,
                sqs_sources,
                schedules,
                timeout: std::time::Duration::from_secs(
                    p.get("Timeout")
                        .or_else(|| globals.get("Timeout"))
                        .and_then(|t| t.as_u64().or_else(|| t.as_str()?.parse().ok()))
                        .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
                ),
            },
        );
    }

    let stages: Vec<_> = active
        .iter()
        .filter(|(_, r)| kind(r) == "AWS::ApiGatewayV2::Stage")
        .collect();
    if let [(id, r)] = stages.as_slice() {
        let p = props(id, r, &names)?;
        stack.stage = p
            .get("StageName")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| unsupported(id, "StageName must be a name or $default"))?
            .to_owned();
    } else if stages.len() > 1 {
        return Err(unsupported(
            stages[1].0,
            "the local runtime serves one stage of one HTTP API",
        ));
    }

    for (id, r) in active
        .iter()
        .filter(|(_, r)| kind(r) == "AWS::ApiGatewayV2::Authorizer")
    {
        let p = props(id, r, &names)?;
        if p.get("AuthorizerType").and_then(Value::as_str) != Some("JWT") {
            return Err(unsupported(
                id,
                "only JWT authorizers run locally (AuthorizerType: JWT)",
            ));
        }
        let identity_header = match p.get("IdentitySource").and_then(Value::as_array) {
            Some(sources) if sources.len() == 1 => sources[0]
                .as_str()
                .and_then(|s| s.strip_prefix("$request.header."))
                .map(str::to_ascii_lowercase),
            _ => None,
        }
        .ok_or_else(|| {
            unsupported(
                id,
                "IdentitySource must be one $request.header.NAME, as JWT authorizers require",
            )
        })?;
        let issuer = p
            .pointer("/JwtConfiguration/Issuer")
            .and_then(Value::as_str)
            .filter(|i| !i.is_empty())
            .ok_or_else(|| unsupported(id, "JwtConfiguration.Issuer is empty"))?
            .to_owned();
        let audiences = texts(p.pointer("/JwtConfiguration/Audience"));
        if audiences.is_empty() {
            return Err(unsupported(id, "JwtConfiguration.Audience is empty"));
        }
        stack.authorizers.insert(
            (*id).clone(),
            AuthorizerSpec {
                identity_header,
                issuer,
                audiences,
            },
        );
    }

    for (id, r) in active
        .iter()
        .filter(|(_, r)| kind(r) == "AWS::ApiGatewayV2::Route")
    {
        let p = props(id, r, &names)?;
        let authorization = match p.get("AuthorizationType").and_then(Value::as_str) {
            None | Some("NONE") => None,
            Some("JWT") => {
                let authorizer = p
                    .get("AuthorizerId")
                    .and_then(Value::as_str)
                    .filter(|a| stack.authorizers.contains_key(*a))
                    .ok_or_else(|| {
                        unsupported(
                            id,
                            "AuthorizerId must name a JWT authorizer of the template",
                        )
                    })?
                    .to_owned();
                let scopes = texts(p.get("AuthorizationScopes"));
                Some(RouteAuthorization { authorizer, scopes })
            }
            Some(other) => {
                return Err(unsupported(
                    id,
                    format!("AuthorizationType {other} is not supported locally"),
                ));
            }
        };
        let route_key = p
            .get("RouteKey")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (method, path) = route_key.split_once(' ').ok_or_else(|| {
            unsupported(id, format!("route key {route_key:?} is not METHOD /path"))
        })?;
        let integration = p
            .get("Target")
            .and_then(Value::as_str)
            .and_then(|t| t.strip_prefix("integrations/"))
            .ok_or_else(|| unsupported(id, "Target must be integrations/<Integration>"))?;
        let function_arn = template
            .resources
            .get(integration)
            .and_then(|i| i.pointer("/Properties/IntegrationUri"))
            .map(|uri| resolve(uri, &names, template))
            .transpose()
            .map_err(|e| unsupported(id, e))?
            .and_then(|v| v.as_str().map(str::to_owned))
            .ok_or_else(|| {
                unsupported(
                    id,
                    format!("integration {integration} has no IntegrationUri"),
                )
            })?;
        let function = stack
            .functions
            .values()
            .find(|f| function_arn.ends_with(&format!(":function:{}", f.name)))
            .ok_or_else(|| {
                unsupported(
                    id,
                    format!(
                        "integration {integration} does not target a function of this template"
                    ),
                )
            })?;
        stack.routes.push(Route {
            method: method.to_owned(),
            path: path.to_owned(),
            function: function.logical_id.clone(),
            authorization,
        });
    }

    for (id, r) in active
        .iter()
        .filter(|(_, r)| kind(r) == "AWS::CloudWatch::Alarm")
    {
        create_alarm(id, &props(id, r, &names)?, &names.physical(id), clients).await?;
    }

    for (id, r) in active
        .iter()
        .filter(|(_, r)| kind(r) == "AWS::CloudWatch::Dashboard")
    {
        let p = props(id, r, &names)?;
        let body = p
            .get("DashboardBody")
            .and_then(Value::as_str)
            .ok_or_else(|| unsupported(id, "DashboardBody must be a string"))?;
        serde_json::from_str::<Value>(body)
            .map_err(|e| unsupported(id, format!("DashboardBody is not JSON: {e}")))?;
        clients
            .cloudwatch
            .put_dashboard()
            .dashboard_name(
                p.get("DashboardName")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| names.physical(id)),
            )
            .dashboard_body(body)
            .send()
            .await
            .map_err(emulator(id))?;
    }

    for (key, expression) in &template.outputs {
        if let Some(value) = resolve(expression, &names, template)
            .ok()
            .as_ref()
            .and_then(text)
        {
            stack.outputs.insert(key.clone(), value);
        }
    }
    Ok(stack)
}

/// Creates a metric alarm as declared, so `shop dlq list` finds the same alarm locally as
/// on AWS (the emulator never evaluates it; its state stays `INSUFFICIENT_DATA`).
async fn create_alarm(
    id: &str,
    p: &Value,
    name: &str,
    clients: &Clients,
) -> Result<(), ProvisionError> {
    use aws_sdk_cloudwatch::types::{
        ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, Statistic,
    };
    let number = |key: &str| {
        p.get(key)
            .and_then(text)
            .and_then(|v| v.parse::<f64>().ok())
    };
    let string = |key: &str| p.get(key).and_then(Value::as_str).map(str::to_owned);
    let strings = |key: &str| p.get(key).is_some().then(|| texts(p.get(key)));
    let dimensions = |v: Option<&Value>| -> Vec<Dimension> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|d| {
                Dimension::builder()
                    .set_name(d["Name"].as_str().map(str::to_owned))
                    .set_value(text(&d["Value"]))
                    .build()
            })
            .collect()
    };
    // Metric math alarms (`Metrics`): each query as declared.
    let queries = p.get("Metrics").and_then(Value::as_array).map(|queries| {
        queries
            .iter()
            .map(|q| {
                let stat = q.get("MetricStat").map(|m| {
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .set_namespace(m.pointer("/Metric/Namespace").and_then(text))
                                .set_metric_name(m.pointer("/Metric/MetricName").and_then(text))
                                .set_dimensions(Some(dimensions(m.pointer("/Metric/Dimensions"))))
                                .build(),
                        )
                        .set_period(m.get("Period").and_then(text).and_then(|v| v.parse().ok()))
                        .set_stat(m.get("Stat").and_then(text))
                        .build()
                });
                MetricDataQuery::builder()
                    .set_id(q.get("Id").and_then(text))
                    .set_expression(q.get("Expression").and_then(text))
                    .set_label(q.get("Label").and_then(text))
                    .set_return_data(q.get("ReturnData").and_then(Value::as_bool))
                    .set_metric_stat(stat)
                    .build()
            })
            .collect::<Vec<_>>()
    });
    let single = queries.is_none();
    clients
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .set_alarm_description(string("AlarmDescription"))
        .set_alarm_actions(strings("AlarmActions"))
        .set_ok_actions(strings("OKActions"))
        .set_namespace(string("Namespace"))
        .set_metric_name(string("MetricName"))
        .set_dimensions(single.then(|| dimensions(p.get("Dimensions"))))
        .set_statistic(string("Statistic").map(|s| Statistic::from(s.as_str())))
        .set_extended_statistic(string("ExtendedStatistic"))
        .set_metrics(queries)
        .set_period(number("Period").map(|v| v as i32))
        .set_evaluation_periods(number("EvaluationPeriods").map(|v| v as i32))
        .set_datapoints_to_alarm(number("DatapointsToAlarm").map(|v| v as i32))
        .set_threshold(number("Threshold"))
        .set_comparison_operator(
            string("ComparisonOperator").map(|s| ComparisonOperator::from(s.as_str())),
        )
        .set_treat_missing_data(string("TreatMissingData"))
        .send()
        .await
        .map_err(emulator(id))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_what_it_cannot_run_and_names_the_resource() {
        let dir = std::env::temp_dir().join(format!("unsupported-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("template.yaml");
        std::fs::write(
            &path,
            "Resources:\n  Stream:\n    Type: AWS::Kinesis::Stream\n    Properties: {}\n",
        )
        .unwrap();
        let template = Template::load(&path).unwrap();
        // No call reaches this endpoint: the template is refused before anything is created.
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let err = provision(
            &template,
            "t",
            &BTreeMap::new(),
            &Clients::new(&sdk),
            "us-east-1",
        )
        .await
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("Stream") && message.contains("AWS::Kinesis::Stream"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn the_templates_rules_refuse_a_prod_stack_with_a_placeholder_issuer() {
        let template = Template::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml"),
        )
        .unwrap();
        // No call reaches this endpoint: the rules refuse before anything is created.
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let refused = |parameters: &[(&str, &str)]| {
            let parameters: BTreeMap<String, String> = parameters
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let template = template.clone();
            let clients = Clients::new(&sdk);
            async move {
                match provision(&template, "t", &parameters, &clients, "us-east-1").await {
                    Err(ProvisionError::Rule(v)) => Some(v.rule),
                    _ => None,
                }
            }
        };
        let placeholder = [
            ("Stage", "prod"),
            ("JwtIssuer", "https://auth.example.com/"),
            ("JwtAudience", "api"),
        ];
        assert_eq!(
            refused(&placeholder).await.as_deref(),
            Some("ProdIssuerIsReal")
        );
        let no_audience = [("JwtIssuer", "https://idp.example.org/")];
        assert_eq!(
            refused(&no_audience).await.as_deref(),
            Some("IssuerNeedsAudience")
        );
        // The same placeholder outside prod, and prod with its own user pool, pass the
        // rules (and then fail only on the unreachable endpoint, or on the user pool
        // the local runtime does not create).
        let dev = [
            ("JwtIssuer", "https://auth.example.com/"),
            ("JwtAudience", "api"),
        ];
        assert_eq!(refused(&dev).await, None);
        assert_eq!(refused(&[("Stage", "prod")]).await, None);
    }

    #[test]
    fn reads_rate_schedules_and_refuses_the_rest() {
        use std::time::Duration;
        assert_eq!(rate("rate(5 minutes)"), Some(Duration::from_secs(300)));
        assert_eq!(rate("rate(1 hour)"), Some(Duration::from_secs(3600)));
        assert_eq!(rate("rate(2 days)"), Some(Duration::from_secs(172_800)));
        assert_eq!(rate("rate(0 minutes)"), None);
        assert_eq!(rate("rate(5 fortnights)"), None);
        assert_eq!(rate("cron(0 12 * * ? *)"), None);
    }
}

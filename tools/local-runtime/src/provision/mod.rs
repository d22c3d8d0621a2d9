//! Creating the template's resources in the emulator, under a name prefix so several
//! stacks (one per test) can share one emulator. One module per kind of resource; each
//! reads its resources' properties into typed structs, so a template typo is refused
//! with the resource and the path of the bad field instead of becoming an empty name.

mod events;
pub use events::tap_events;
mod functions;
mod http_api;
mod monitoring;
mod names;
mod queues;
mod secrets;
mod state_machines;
mod tables;

use crate::jwt_authorizer::AuthorizerSpec;
use crate::template::{Template, TemplateError, resolve};
use names::LocalNames;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Resource types the local runtime has nothing to do for: they only matter on AWS.
const CLOUD_ONLY: &[&str] = &[
    "AWS::Logs::LogGroup",
    "AWS::SQS::QueuePolicy",
    "AWS::Lambda::Permission",
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
    "AWS::Cognito::UserPoolResourceServer",
    "AWS::Cognito::UserPoolDomain",
    "AWS::Cognito::ManagedLoginBranding",
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

/// The variable Lambda sets to the function's name, as the local runtime does too.
pub const FUNCTION_NAME_VARIABLE: &str = "AWS_LAMBDA_FUNCTION_NAME";

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
    /// Environment variables with every intrinsic resolved, and the function's name
    /// in [`FUNCTION_NAME_VARIABLE`] as Lambda sets it.
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

/// A stage's route throttling: a token bucket of `burst` requests refilled at `rate`
/// a second (`ThrottlingBurstLimit`, `ThrottlingRateLimit`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    /// Steady requests per second.
    pub rate: f64,
    /// Requests admitted at once from a full bucket.
    pub burst: u32,
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
    /// The stage's `DefaultRouteSettings` throttling, applied to each route on its
    /// own as API Gateway does; `None` when the stage sets none.
    pub throttle: Option<Throttle>,
    /// The HTTP API's `CorsConfiguration`, `None` when it has none.
    pub cors: Option<crate::cors::Cors>,
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

/// A scalar property as the template gives it after intrinsics resolve: a `!Ref` to a
/// parameter is text even where the property is a number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Flag(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Number(n) => n.to_string(),
            Self::Flag(b) => b.to_string(),
        }
    }

    fn parse<T: std::str::FromStr>(&self) -> Option<T> {
        self.text().parse().ok()
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

/// The template's resources whose `Condition` holds.
struct Active<'t> {
    resources: Vec<(&'t str, &'t Value)>,
}

/// Every resource type the local runtime creates or serves.
const SUPPORTED: &[&str] = &[
    "AWS::DynamoDB::Table",
    "AWS::CloudWatch::Alarm",
    "AWS::CloudWatch::Dashboard",
    "AWS::SQS::Queue",
    "AWS::SecretsManager::Secret",
    "AWS::Events::EventBus",
    "AWS::Events::Rule",
    "AWS::Serverless::StateMachine",
    "AWS::Serverless::Function",
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::Stage",
    "AWS::ApiGatewayV2::Authorizer",
];

impl<'t> Active<'t> {
    /// The resources to create, refusing a type the local runtime cannot run.
    fn of(template: &'t Template, names: &LocalNames) -> Result<Self, ProvisionError> {
        let mut resources = Vec::new();
        for (id, resource) in &template.resources {
            if let Some(condition) = resource.get("Condition") {
                let expr = json!({ "Fn::If": [condition, true, false] });
                if resolve(&expr, names, template).map_err(|e| unsupported(id, e))? != json!(true) {
                    continue;
                }
            }
            let kind = resource.get("Type").and_then(Value::as_str).unwrap_or("");
            if !CLOUD_ONLY.contains(&kind) && !SUPPORTED.contains(&kind) {
                return Err(unsupported(
                    id,
                    format!("type {kind} is not supported by the local runtime"),
                ));
            }
            resources.push((id.as_str(), resource));
        }
        Ok(Self { resources })
    }

    /// The resources of one type, with their logical ids.
    fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'t str, &'t Value)> + 'a {
        self.resources
            .iter()
            .copied()
            .filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
    }
}

/// A resource's properties with intrinsics resolved, read into `T`; a field of the
/// wrong shape is refused with its path (`Properties.RedrivePolicy.maxReceiveCount`).
fn properties<T: DeserializeOwned>(
    id: &str,
    resource: &Value,
    names: &LocalNames,
) -> Result<T, ProvisionError> {
    let resolved = resolve(
        resource.get("Properties").unwrap_or(&json!({})),
        names,
        names.template,
    )
    .map_err(|e| unsupported(id, e))?;
    typed(id, "Properties", resolved)
}

/// `value` read into `T`; a field of the wrong shape is refused with its path under
/// `at` in the resource `id`.
fn typed<T: DeserializeOwned>(id: &str, at: &str, value: Value) -> Result<T, ProvisionError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| unsupported(id, format!("{at}.{}: {}", e.path(), e.inner())))
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
    let active = Active::of(template, &names)?;
    // In dependency order: queues before what names their ARNs, secrets before the
    // functions whose environment names them, functions before the routes to them.
    queues::create(&active, &mut names, clients).await?;
    let mut stack = Stack {
        prefix: prefix.to_owned(),
        region: region.to_owned(),
        queues: names.queues.clone(),
        tables: tables::create(&active, &names, clients).await?,
        buses: BTreeMap::new(),
        state_machines: BTreeMap::new(),
        functions: BTreeMap::new(),
        routes: Vec::new(),
        outputs: BTreeMap::new(),
        stage: DEFAULT_STAGE.to_owned(),
        throttle: None,
        cors: None,
        authorizers: BTreeMap::new(),
    };
    secrets::create(&active, &mut names, clients).await?;
    stack.buses = events::create_buses(&active, &names, clients).await?;
    events::create_rules(&active, &names, clients).await?;
    stack.state_machines = state_machines::create(&active, &names, clients).await?;
    functions::declare(&active, &names, &mut stack)?;
    http_api::declare(&active, &names, &mut stack)?;
    monitoring::create(&active, &names, clients).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Why `provision` refuses a template of `yaml`. No call reaches the endpoint: a
    /// refusal comes before anything is created.
    async fn refusal(yaml: &str) -> String {
        let dir = std::env::temp_dir().join(format!("refused-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("template.yaml");
        std::fs::write(&path, yaml).unwrap();
        let template = Template::load(&path).unwrap();
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url("http://127.0.0.1:9")
            .build();
        provision(
            &template,
            "t",
            &BTreeMap::new(),
            &Clients::new(&sdk),
            "us-east-1",
        )
        .await
        .unwrap_err()
        .to_string()
    }

    #[tokio::test]
    async fn refuses_what_it_cannot_run_and_names_the_resource() {
        let message =
            refusal("Resources:\n  Stream:\n    Type: AWS::Kinesis::Stream\n    Properties: {}\n")
                .await;
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
        // prod with its own user pool sends shoppers' e-mail through SES, not Cognito's
        // built-in sender; with an existing issuer there is no pool to send from.
        assert_eq!(
            refused(&[("Stage", "prod")]).await.as_deref(),
            Some("ProdEmailThroughSes")
        );
        let ses = "arn:aws:ses:us-east-1:123456789012:identity/shop.example";
        assert_eq!(
            refused(&[("Stage", "prod"), ("CognitoEmailSourceArn", ses)]).await,
            None
        );
        let issuer = [
            ("Stage", "prod"),
            ("JwtIssuer", "https://idp.shop.example/"),
            ("JwtAudience", "api"),
        ];
        assert_eq!(refused(&issuer).await, None);
    }

    #[tokio::test]
    async fn a_property_of_the_wrong_shape_is_named_by_its_path() {
        let message = refusal(
            "Resources:\n  Orders:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      KeySchema: [{ AttributeName: id, KeyType: HASH }]\n      AttributeDefinitions: [{ AttributeName: id, AttribteType: S }]\n",
        )
        .await;
        assert!(
            message.contains("Orders")
                && message.contains("Properties.AttributeDefinitions[0]")
                && message.contains("AttributeType"),
            "{message}"
        );
    }
}

//! The whole app on one machine, as `shop local` runs it and the end-to-end tests
//! test it: starts (or attaches to) the emulator, creates what `template.yaml`
//! declares, seeds the catalog, builds every function as its `main.rs` does, runs
//! every SQS event source and schedule, and serves the HTTP API and the token issuer,
//! invoking functions in process or through a Lambda invoke URL (`cargo lambda watch`).
#![warn(missing_docs)]

pub mod functions;

use functions::{AppConfig, AppPorts, LinkError};
use local_runtime::emulator::{Emulator, EmulatorError, emulator_sdk};
use local_runtime::http_api::{HttpApi, HttpResponse};
use local_runtime::oidc_issuer::{IssuerError, IssuerKey, LocalIssuer, TokenRequest};
use local_runtime::provision::{Clients, ProvisionError, Stack, provision};
use local_runtime::traces::TraceFile;
use local_runtime::{InvokeUrl, Invoker, Template, TemplateError};
use payment_sandbox::SandboxProvider;
use shop_aws::catalog::DynamoCatalog;
use shop_aws::stock::DynamoStockStore;
use shop_ops::seed::{Seed, SeedError};
use shop_ops::stack::{LocalIssuerFile, LocalStackFile, StackOutputs};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Replaces ports of the in-process functions before they are built (fault injection).
pub type PortEdit = Arc<dyn Fn(&mut AppPorts) + Send + Sync>;

/// Wraps the invoker every event source, schedule and the HTTP API call functions
/// through (recording or duplicating deliveries in tests).
pub type InvokerLayer = Arc<dyn Fn(Arc<dyn Invoker>) -> Arc<dyn Invoker> + Send + Sync>;

/// What to start.
#[derive(Clone, Default)]
pub struct LocalOptions {
    /// Folder holding `template.yaml`, `local/` and the project's `.venv`.
    pub root: PathBuf,
    /// Where the emulator log, the functions' env file, the stack file and the
    /// issuer's key go; `<root>/.shop` when absent.
    pub state_dir: Option<PathBuf>,
    /// The template to run instead of `<root>/template.yaml`.
    pub template: Option<Template>,
    /// Use this emulator instead of starting moto.
    pub endpoint: Option<String>,
    /// Port of the HTTP API; 0 picks a free one.
    pub port: u16,
    /// Port of the local OpenID Connect issuer; 0 picks a free one.
    pub issuer_port: u16,
    /// Invoke functions through this Lambda invoke URL instead of in process.
    pub invoke_url: Option<String>,
    /// Seed file; `local/seed.json` when absent.
    pub seed: Option<PathBuf>,
    /// Prefix of every resource name.
    pub stack_name: String,
    /// Ports replaced in the in-process functions (fault injection in tests).
    pub ports: Option<PortEdit>,
    /// A layer around the invoker (in tests).
    pub invoker: Option<InvokerLayer>,
    /// Template parameter values instead of their defaults, as `sam deploy
    /// --parameter-overrides` takes them.
    pub parameters: BTreeMap<String, String>,
    /// How long the payment provider takes to answer (`P50,P99` such as `300ms,2s`),
    /// whichever provider runs: the Stripe emulator's answers are delayed, or the
    /// sandbox's (`PaymentSandboxLatency`).
    pub payment_latency: Option<String>,
}

/// The test key `shop local` puts in the provider key secret for the Stripe emulator,
/// as an operator puts a Stripe secret key there (docs/deploying.md, "Connecting Stripe").
pub const LOCAL_STRIPE_KEY: &str = "sk_test_shoplocal0000000000000000";

/// The signing secret `shop local` gives the Stripe emulator's webhook endpoint and
/// puts in the webhook function's secret, as an operator copies an endpoint's signing
/// secret from Stripe's Dashboard (docs/deploying.md, "Connecting Stripe").
pub const LOCAL_STRIPE_WEBHOOK_SECRET: &str = "whsec_shoplocal000000000000000000";

/// `shop local` could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Emulator setup failed.
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
    /// The template cannot run locally.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Creating resources failed.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The seed could not be applied.
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// A function could not start: its configuration is incomplete or a secret it
    /// reads at cold start is unusable.
    #[error(transparent)]
    Init(#[from] LinkError),
    /// The HTTP port could not be bound.
    #[error("cannot listen on 127.0.0.1:{0}: {1}")]
    Listen(u16, #[source] std::io::Error),
    /// The session's trace file could not be created.
    #[error("cannot create the trace file {0}: {1}")]
    Traces(PathBuf, #[source] std::io::Error),
    /// The local issuer's key could not be read or created.
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// The functions' env file could not be written.
    #[error("cannot write {0}: {1}")]
    EnvFile(String, #[source] std::io::Error),
    /// The stack file for operator commands could not be written.
    #[error(transparent)]
    StackFile(#[from] shop_ops::OpsError),
    /// `--payment-latency` is not two percentiles.
    #[error(transparent)]
    PaymentLatency(#[from] payment_sandbox::InvalidLatency),
    /// The Stripe emulator refused the webhook endpoint.
    #[error("cannot register the webhook with the Stripe emulator: {0}")]
    Webhook(String),
    /// The Stripe emulator's key could not be put in the provider key secret.
    #[error("cannot put the local Stripe secrets in {0}")]
    StripeKey(
        String,
        #[source]
        Box<
            aws_sdk_secretsmanager::error::SdkError<
                aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueError,
            >,
        >,
    ),
}

/// A running local app.
pub struct LocalApp {
    /// The resources created.
    pub stack: Arc<Stack>,
    /// SDK configuration pointing at the emulator.
    pub sdk: aws_config::SdkConfig,
    /// Base URL of the HTTP API.
    pub api_url: String,
    /// Emulator endpoint.
    pub endpoint: String,
    /// Emulator log, when `shop local` started it.
    pub emulator_log: Option<PathBuf>,
    /// Env file with every function's variables, for `cargo lambda watch --env-file`.
    pub env_file: PathBuf,
    /// Where operator commands (`shop dlq … --local`) find the emulator and resources.
    pub stack_file: PathBuf,
    /// The sandbox provider of in-process payments (absent with an invoke URL or with
    /// Stripe).
    pub sandbox: Option<Arc<SandboxProvider>>,
    /// The Stripe emulator's URL, when the stack pays through it.
    pub stripe_url: Option<String>,
    /// Whether functions run in this process (not through a Lambda invoke URL).
    pub in_process: bool,
    /// How functions are invoked.
    pub invoker: Arc<dyn Invoker>,
    /// The identity provider the stack's JWT authorizer trusts.
    pub issuer: LocalIssuer,
    /// The HTTP API, as the server serves it.
    pub http: Arc<HttpApi>,
    /// Time from start to ready.
    pub startup: Duration,
    emulator: Emulator,
    stripe: Option<Emulator>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The local issuer's signing key in the state folder, shared by every local stack
/// and kept across restarts, so a token outlives a restart of `shop local`.
pub const ISSUER_KEY_FILE: &str = "local-issuer.pem";

fn write_env_file(path: &PathBuf, endpoint: &str, stack: &Stack) -> Result<(), LocalError> {
    let mut vars = BTreeMap::new();
    for function in stack.functions.values() {
        vars.extend(function.env.clone());
    }
    // One file for every function: `cargo lambda watch` names each function itself.
    vars.remove(local_runtime::provision::FUNCTION_NAME_VARIABLE);
    vars.insert("AWS_ENDPOINT_URL".into(), endpoint.to_owned());
    vars.insert("AWS_ACCESS_KEY_ID".into(), "test".into());
    vars.insert("AWS_SECRET_ACCESS_KEY".into(), "test".into());
    vars.insert("AWS_REGION".into(), "us-east-1".into());
    let text: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| LocalError::EnvFile(path.display().to_string(), e))?;
    }
    std::fs::write(path, text).map_err(|e| LocalError::EnvFile(path.display().to_string(), e))
}

/// Puts [`LOCAL_STRIPE_KEY`] in the payments function's provider key secret and
/// [`LOCAL_STRIPE_WEBHOOK_SECRET`] in the webhook function's signing secret, as an
/// operator connecting a Stripe account puts the account's key and its endpoint's
/// signing secret there.
pub async fn put_local_stripe_secrets(
    sdk: &aws_config::SdkConfig,
    stack: &Stack,
) -> Result<(), LocalError> {
    let Some(secret) = stack
        .functions
        .get("PaymentsFunction")
        .and_then(|f| f.env.get("PAYMENT_PROVIDER_KEY_SECRET"))
    else {
        return Ok(());
    };
    let value =
        serde_json::json!({ "provider": "stripe", payments::PROVIDER_KEY_FIELD: LOCAL_STRIPE_KEY });
    put_secret(sdk, secret, &value).await?;
    if let Some(secret) = stack
        .functions
        .get("StripeWebhookFunction")
        .and_then(|f| f.env.get("STRIPE_WEBHOOK_SECRET"))
    {
        let value = serde_json::json!({
            "provider": "stripe",
            stripe_webhook::SECRET_FIELD: LOCAL_STRIPE_WEBHOOK_SECRET,
        });
        put_secret(sdk, secret, &value).await?;
    }
    Ok(())
}

async fn put_secret(
    sdk: &aws_config::SdkConfig,
    secret: &str,
    value: &serde_json::Value,
) -> Result<(), LocalError> {
    aws_sdk_secretsmanager::Client::new(sdk)
        .put_secret_value()
        .secret_id(secret)
        .secret_string(value.to_string())
        .send()
        .await
        .map_err(|e| LocalError::StripeKey(secret.to_owned(), Box::new(e)))?;
    Ok(())
}

/// Registers the API's webhook route with the Stripe emulator, for the events the
/// webhook function acts on, as an operator adds the endpoint in Stripe's Dashboard.
async fn register_webhook(stripe: &str, api_url: &str) -> Result<(), LocalError> {
    let body = serde_json::json!({
        "url": format!("{api_url}/v1/webhooks/stripe"),
        "secret": LOCAL_STRIPE_WEBHOOK_SECRET,
        "events": stripe_webhook::EVENTS,
    });
    let url = format!("{stripe}/_config/webhooks/shop");
    let answer = local_runtime::http_client::HttpClient::default()
        .send("POST", &url, body.to_string().into_bytes())
        .await;
    match answer {
        Ok((200, _, _)) => Ok(()),
        Ok((status, _, body)) => Err(LocalError::Webhook(format!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        ))),
        Err(e) => Err(LocalError::Webhook(format!("{url}: {e}"))),
    }
}

impl LocalApp {
    /// Starts everything and returns once the API answers.
    pub async fn start(options: LocalOptions) -> Result<Self, LocalError> {
        let started = Instant::now();
        let state_dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| options.root.join(".shop"));
        // The API's port first: the ports picked for the emulators and the trace
        // receiver come from the same free pool and must not take the one asked for.
        let listener = TcpListener::bind(("127.0.0.1", options.port))
            .await
            .map_err(|e| LocalError::Listen(options.port, e))?;
        let emulator = match &options.endpoint {
            Some(endpoint) => Emulator::attach(endpoint).await?,
            None => Emulator::start(&options.root, &state_dir, &options.stack_name).await?,
        };
        let sdk = emulator_sdk(&emulator.endpoint).await;
        let template = match &options.template {
            Some(template) => template.clone(),
            None => Template::load(&options.root.join("template.yaml"))?,
        };
        let issuer_key_file = state_dir.join(ISSUER_KEY_FILE);
        let (issuer, issuer_listener) = LocalIssuer::bind(
            options.issuer_port,
            IssuerKey::load_or_create(&issuer_key_file)?,
        )
        .await
        .map_err(|e| LocalError::Listen(options.issuer_port, e))?;
        // The stack trusts the local issuer as a deployment trusts an existing identity
        // provider, unless the developer names another one.
        let mut parameters = options.parameters.clone();
        for (k, v) in issuer.template_parameters() {
            parameters.entry(k).or_insert(v);
        }
        // The payment provider's stand-in: the Stripe emulator unless the developer
        // points StripeApiBase elsewhere, with the latency asked for.
        let latency = options
            .payment_latency
            .as_deref()
            .map(str::parse::<payment_sandbox::Latency>)
            .transpose()?;
        let provider = parameters
            .get("PaymentProvider")
            .cloned()
            .or_else(|| {
                template
                    .parameters
                    .get("PaymentProvider")
                    .and_then(|v| v.as_str().map(str::to_owned))
            })
            .unwrap_or_default();
        let mut stripe = None;
        if provider == "stripe" && !parameters.contains_key("StripeApiBase") {
            let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            let emulator = Emulator::start_stripe(
                &options.root,
                &state_dir,
                &options.stack_name,
                latency.map(|l| (millis(l.p50), millis(l.p99))),
            )
            .await?;
            parameters.insert("StripeApiBase".into(), emulator.endpoint.clone());
            stripe = Some(emulator);
        } else if let Some(latency) = &options.payment_latency {
            parameters
                .entry("PaymentSandboxLatency".into())
                .or_insert_with(|| latency.clone());
        }
        let mut stack = provision(
            &template,
            &options.stack_name,
            &parameters,
            &Clients::new(&sdk),
            "us-east-1",
        )
        .await?;
        // Spans go to the local receiver instead of X-Ray, unsigned.
        let trace_path = TraceFile::path(&state_dir, &options.stack_name);
        let trace_file = TraceFile::create(trace_path.clone())
            .map_err(|e| LocalError::Traces(trace_path.clone(), e))?;
        let trace_listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| LocalError::Listen(0, e))?;
        let receiver = trace_listener
            .local_addr()
            .map(|a| format!("http://{a}/v1/traces"))
            .map_err(|e| LocalError::Listen(0, e))?;
        for function in stack.functions.values_mut() {
            if function
                .env
                .get("TRACES_ENDPOINT")
                .is_some_and(|e| !e.is_empty())
            {
                function
                    .env
                    .insert("TRACES_ENDPOINT".into(), receiver.clone());
                function.env.insert("TRACES_SIGNED".into(), "false".into());
            }
        }
        let stack = Arc::new(stack);
        let seed_path = options
            .seed
            .clone()
            .unwrap_or_else(|| options.root.join("local/seed.json"));
        Seed::load(&seed_path)?
            .apply(
                &DynamoCatalog::new(
                    aws_sdk_dynamodb::Client::new(&sdk),
                    stack.tables["CatalogTable"].clone(),
                ),
                &DynamoStockStore::new(
                    aws_sdk_dynamodb::Client::new(&sdk),
                    stack.tables["InventoryTable"].clone(),
                ),
            )
            .await?;
        if stripe.is_some() {
            put_local_stripe_secrets(&sdk, &stack).await?;
        }
        let env_file = state_dir.join(format!("{}.env", options.stack_name));
        write_env_file(&env_file, &emulator.endpoint, &stack)?;

        let (invoker, provider): (Arc<dyn Invoker>, _) = match &options.invoke_url {
            Some(url) => (Arc::new(InvokeUrl::new(url)), None),
            None => {
                let config = AppConfig::from_stack(&stack)?;
                let (mut ports, provider) = config.aws_ports(&sdk).await?;
                if let Some(edit) = &options.ports {
                    edit(&mut ports);
                }
                (Arc::new(config.link(&sdk, ports).await?), Some(provider))
            }
        };
        let in_process = provider.is_some();
        let sandbox = match provider {
            Some(payments::Provider::Sandbox(sandbox)) => Some(sandbox),
            _ => None,
        };
        let invoker = match &options.invoker {
            Some(layer) => layer(invoker),
            None => invoker,
        };
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(issuer.clone().serve(issuer_listener, rx.clone())),
            tokio::spawn(local_runtime::traces::serve(
                trace_listener,
                trace_file,
                rx.clone(),
            )),
        ];
        tasks.extend(local_runtime::sqs_poller::spawn_all(
            stack.clone(),
            aws_sdk_sqs::Client::new(&sdk),
            invoker.clone(),
            rx.clone(),
        ));
        tasks.extend(local_runtime::schedules::spawn_all(
            stack.clone(),
            invoker.clone(),
            rx.clone(),
        ));
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(options.port);
        let http = Arc::new(HttpApi::new(stack.clone(), invoker.clone()));
        tasks.push(tokio::spawn(local_runtime::http_server::serve_api(
            listener,
            http.clone(),
            rx,
        )));
        let api_url = format!("http://127.0.0.1:{port}");
        if let Some(stripe) = &stripe {
            register_webhook(&stripe.endpoint, &api_url).await?;
        }
        let mut outputs = stack.outputs.clone();
        outputs.insert("ApiUrl".into(), api_url.clone());
        let stack_file = LocalStackFile::path(&state_dir, &options.stack_name);
        LocalStackFile {
            endpoint: emulator.endpoint.clone(),
            region: stack.region.clone(),
            outputs: StackOutputs(outputs),
            issuer: Some(LocalIssuerFile {
                url: issuer.url.clone(),
                audience: issuer.audience.clone(),
                key_file: issuer_key_file,
            }),
            traces: Some(trace_path),
        }
        .write(&stack_file)?;
        Ok(Self {
            stack,
            sdk,
            api_url,
            stack_file,
            endpoint: emulator.endpoint.clone(),
            emulator_log: emulator.log.clone(),
            env_file,
            sandbox,
            stripe_url: stripe.as_ref().map(|s| s.endpoint.clone()),
            in_process,
            invoker,
            issuer,
            http,
            startup: started.elapsed(),
            emulator,
            stripe,
            shutdown,
            tasks,
        })
    }

    /// Sends a request as `customer` (with a token from the local issuer) through the
    /// template's routes and authorizer, as the HTTP server does.
    pub async fn request(
        &self,
        customer: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Option<HttpResponse> {
        let token = self
            .issuer
            .mint(&TokenRequest::shopper(customer, Duration::from_secs(300)))
            .ok()?;
        let headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("authorization".to_owned(), format!("Bearer {token}")),
        ];
        self.http
            .serve(method, path, &headers, body.map(str::to_owned))
            .await
            .ok()
    }

    /// Where everything is, for the console.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "shop local is ready in {:.1} s\n  API             {}/v1/orders\n  emulator        {}{}\n",
            self.startup.as_secs_f64(),
            self.api_url,
            self.endpoint,
            self.emulator_log
                .as_ref()
                .map(|l| format!(" (moto server, log {})", l.display()))
                .unwrap_or_default(),
        );
        if let Some(stripe) = &self.stripe {
            out.push_str(&format!(
                "  payments        Stripe emulator {} (localstripe, log {})\n",
                stripe.endpoint,
                stripe
                    .log
                    .as_ref()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default()
            ));
            out.push_str(&format!(
                "  webhook         {}/v1/webhooks/stripe, registered with the emulator (signing secret {LOCAL_STRIPE_WEBHOOK_SECRET})\n",
                self.api_url
            ));
        }
        for arn in self.stack.state_machines.values() {
            out.push_str(&format!("  state machine   {arn}\n"));
        }
        for (id, q) in &self.stack.queues {
            out.push_str(&format!("  queue           {id:<20} {}\n", q.url));
        }
        for (id, t) in &self.stack.tables {
            out.push_str(&format!("  table           {id:<20} {t}\n"));
        }
        out.push_str(&format!(
            "  token issuer    {} (a token: shop token --customer ID)\n",
            self.issuer.url
        ));
        out.push_str(&format!(
            "  functions env   {} (cargo lambda watch --env-file)\n  operator tools  shop dlq list --local, shop saga list --local ({})\n  invoking        {}\n",
            self.env_file.display(),
            self.stack_file.display(),
            if self.in_process {
                "in process"
            } else {
                "through the Lambda invoke URL"
            }
        ));
        out
    }

    /// Stops pollers, the server and the emulator.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
        self.emulator.stop().await;
        if let Some(stripe) = &mut self.stripe {
            stripe.stop().await;
        }
    }
}

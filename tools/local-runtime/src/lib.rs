//! Runs the stack that `template.yaml` declares on one machine, against an AWS-API
//! emulator: creates its tables, queues, bus, rules and state machine, then acts as
//! Lambda's event source mappings, EventBridge schedules and API Gateway, invoking functions in process or
//! through a Lambda invoke URL. The template is the single source of truth for the
//! wiring; the end-to-end tests and `shop local` use this same code.
#![warn(missing_docs)]

pub mod cors;
pub mod emulator;
pub mod http_api;
pub mod http_client;
pub mod http_server;
pub mod invoke;
pub mod jwt_authorizer;
pub mod oidc_issuer;
pub mod provision;
pub mod schedules;
pub mod sqs_poller;
pub mod template;
pub mod traces;

pub use invoke::{FunctionHandler, InProcess, InvokeError, InvokeUrl, Invoker};
pub use provision::{Stack, provision};
pub use template::{Template, TemplateError};

/// Account id the emulator reports, used to build ARNs.
pub const ACCOUNT_ID: &str = "123456789012";

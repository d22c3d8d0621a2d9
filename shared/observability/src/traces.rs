//! OpenTelemetry traces of one order across the functions, built on `tracing`.
//!
//! Every function records spans with `tracing` as it logs; [`Tracing`] turns them into
//! OpenTelemetry spans (tracing-opentelemetry) and holds the finished ones until the
//! invocation ends, when [`Tracing::flush`] exports them in one request. A Lambda
//! environment is frozen between invocations, so a background batch exporter would
//! sit on spans for minutes; exporting after each invocation, once its answer is
//! sent, is what lambda_runtime's own layer does too. Its layer cannot be used as is:
//! it starts its span before the handler has read the event, so the span never takes
//! the producer's context as parent. [`invocation`] starts the span from the event.
//!
//! The context travels as a W3C `traceparent` in the project's own envelopes (the
//! orders queue message, the saga's input, every command, every event's `detail`),
//! next to the correlation id: [`traceparent`] writes it, [`Trigger::parents`] reads
//! it back.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::event::sqs::SqsEvent;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracerProvider, Span as SdkSpan, SpanData, SpanExporter, SpanProcessor,
};
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Dispatch;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;

/// The attribute every span of an order carries, by which `shop trace` finds them.
pub const ORDER_ID: &str = "order.id";

/// Spans ended during the current invocation, until [`Tracing::flush`] takes them.
#[derive(Debug, Default, Clone)]
struct Ended(Arc<Mutex<Vec<SpanData>>>);

impl Ended {
    fn take(&self) -> Vec<SpanData> {
        self.0
            .lock()
            .map(|mut spans| std::mem::take(&mut *spans))
            .unwrap_or_default()
    }
}

impl SpanProcessor for Ended {
    fn on_start(&self, _span: &mut SdkSpan, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled()
            && let Ok(mut spans) = self.0.lock()
        {
            spans.push(span);
        }
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// Which spans become OpenTelemetry spans: the project's own (info and above) and the
/// AWS SDK's one span per operation (`DynamoDB.PutItem`, with the RPC conventions'
/// attributes), not the SDK's internals nor the runtime's.
fn exported(metadata: &tracing::Metadata<'_>) -> bool {
    let target = metadata.target();
    if target.starts_with("aws_sdk_") {
        return metadata.is_span() && *metadata.level() <= tracing::Level::DEBUG;
    }
    *metadata.level() <= tracing::Level::INFO
        && !target.starts_with("aws_")
        && !target.starts_with("lambda_")
        && !target.starts_with("hyper")
        && !target.starts_with("h2")
        && !target.starts_with("rustls")
}

struct Enabled<X> {
    provider: SdkTracerProvider,
    ended: Ended,
    exporter: X,
}

/// A function's traces: where its spans go, and how many of its orders are traced.
/// Built once per execution environment, like the AWS clients.
pub struct Tracing<X> {
    enabled: Option<Enabled<X>>,
}

impl<X: SpanExporter> Tracing<X> {
    /// Traces exported by `exporter` as `service` (the function's name), keeping
    /// `sample_ratio` of the traces that start here and the decision of the producer
    /// for those that continue one (parent-based, so an order is traced whole or not
    /// at all). A ratio of 0 turns tracing off: no span is recorded, and the context
    /// sent on is a fresh unsampled one.
    pub fn new(service: &str, sample_ratio: f64, mut exporter: X) -> Self {
        if sample_ratio <= 0.0 {
            return Self { enabled: None };
        }
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", service.to_owned()),
                KeyValue::new("cloud.provider", "aws"),
                KeyValue::new("cloud.platform", "aws_lambda"),
                KeyValue::new("faas.name", service.to_owned()),
            ])
            .build();
        exporter.set_resource(&resource);
        let ended = Ended::default();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                sample_ratio.min(1.0),
            ))))
            .with_span_processor(ended.clone())
            .build();
        Self {
            enabled: Some(Enabled {
                provider,
                ended,
                exporter,
            }),
        }
    }

    /// Tracing off.
    pub fn off() -> Self {
        Self { enabled: None }
    }

    /// The subscriber of a function: JSON logs to `log` (level from `RUST_LOG`, as
    /// [`crate::init_logging`]) and, when tracing is on, its spans to this tracer.
    pub fn dispatch<W>(&self, log: W) -> Dispatch
    where
        W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    {
        let logs = crate::json_logs(log).with_filter(crate::log_filter());
        let spans = self.enabled.as_ref().map(|e| {
            tracing_opentelemetry::layer()
                .with_tracer(e.provider.tracer("order-saga"))
                .with_filter(filter_fn(exported))
        });
        Dispatch::new(tracing_subscriber::registry().with(logs).with(spans))
    }

    /// Runs `handle` on `event` as `function`'s own process runs an invocation, for a
    /// host that runs several functions in one process (`shop local`, the tests, the
    /// warm benchmark): inside its invocation's span ([`traced`]), every span made,
    /// entered and dropped under `dispatch`, this function's subscriber (a span closed
    /// under another one would close its parent in the wrong registry), and its spans
    /// exported once it has answered, as [`run`] does under lambda_runtime.
    pub async fn invoke<E, Fut>(
        &self,
        dispatch: &Dispatch,
        function: &str,
        invocation_id: &str,
        event: E,
        handle: impl FnOnce(E) -> Fut,
    ) -> Fut::Output
    where
        E: Trigger,
        Fut: std::future::Future,
    {
        tracing::instrument::WithSubscriber::with_subscriber(
            async {
                let answer = traced(function, invocation_id, event, handle).await;
                self.flush().await;
                answer
            },
            dispatch.clone(),
        )
        .await
    }

    /// Installs [`Self::dispatch`] for the whole process, as a function's `main` does.
    pub fn install(&self) {
        let _ = tracing::dispatcher::set_global_default(self.dispatch(std::io::stdout));
    }

    /// Exports the spans the invocation ended, in one request. Called after each
    /// invocation, once its answer is sent; an export that fails is logged and
    /// dropped: traces never fail the work they describe.
    pub async fn flush(&self) {
        let Some(enabled) = &self.enabled else {
            return;
        };
        let spans = enabled.ended.take();
        if spans.is_empty() {
            return;
        }
        let count = spans.len();
        if let Err(error) = enabled.exporter.export(spans).await {
            tracing::warn!(spans = count, error = %error, "traces were not exported");
        }
    }
}

/// Set once the first invocation of this execution environment has started.
static WARM: AtomicBool = AtomicBool::new(false);

/// How a function was invoked, and the producers its event names: the W3C
/// `traceparent` of every record, or of the request.
pub trait Trigger {
    /// The FaaS convention's `faas.trigger`: `http`, `pubsub`, `timer`, `other`.
    const TRIGGER: &'static str;
    /// The producers' contexts, one per record that carries one.
    fn parents(&self) -> Vec<SpanContext>;
}

impl Trigger for SqsEvent {
    const TRIGGER: &'static str = "pubsub";
    fn parents(&self) -> Vec<SpanContext> {
        self.records
            .iter()
            .filter_map(|r| r.body.as_deref().and_then(carried))
            .collect()
    }
}

impl Trigger for ApiGatewayV2httpRequest {
    const TRIGGER: &'static str = "http";
    fn parents(&self) -> Vec<SpanContext> {
        self.headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse)
            .into_iter()
            .collect()
    }
}

impl Trigger for serde_json::Value {
    const TRIGGER: &'static str = "timer";
    fn parents(&self) -> Vec<SpanContext> {
        Vec::new()
    }
}

/// The `traceparent` a message body carries: at its top level (our envelopes), or in
/// an EventBridge event's `detail`.
#[derive(Deserialize)]
struct Carrier<'a> {
    #[serde(borrow, default)]
    traceparent: Option<&'a str>,
    #[serde(borrow, default)]
    detail: Option<DetailCarrier<'a>>,
}

#[derive(Deserialize)]
struct DetailCarrier<'a> {
    #[serde(borrow, default)]
    traceparent: Option<&'a str>,
}

/// The producer's context a message body carries, if any.
pub fn carried(body: &str) -> Option<SpanContext> {
    let carrier: Carrier<'_> = serde_json::from_str(body).ok()?;
    carrier
        .traceparent
        .or(carrier.detail.and_then(|d| d.traceparent))
        .and_then(parse)
}

/// A W3C `traceparent` (version 00) as a remote span context.
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let context = SpanContext::new(
        trace,
        span,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

fn format(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// The `traceparent` to send on from the current span: the consumer continues this
/// trace. With tracing off (or outside a span) a fresh unsampled one, so every
/// envelope carries a well-formed value.
pub fn traceparent() -> String {
    let context = tracing::Span::current().context();
    let span = context.span();
    let current = span.span_context();
    if current.is_valid() {
        return format(current);
    }
    let id = uuid::Uuid::new_v4().as_u128();
    format!("00-{:032x}-{:016x}-00", id, (id as u64) | 1)
}

/// The span of one invocation, with the FaaS conventions' attributes (trigger, cold
/// start, invocation id). Its parent is the producer's context when the event holds
/// exactly one; with several records it links to each, and every record's own span
/// takes its producer as parent ([`record`]).
pub fn invocation<E: Trigger>(function: &str, invocation_id: &str, event: &E) -> tracing::Span {
    let cold = !WARM.swap(true, Ordering::Relaxed);
    let span = tracing::info_span!(
        "invocation",
        otel.name = function,
        otel.kind = if E::TRIGGER == "http" {
            "server"
        } else {
            "consumer"
        },
        faas.name = function,
        faas.trigger = E::TRIGGER,
        faas.invocation_id = invocation_id,
        faas.coldstart = cold,
    );
    let parents = event.parents();
    match parents.as_slice() {
        [one] => {
            let _ = span.set_parent(Context::new().with_remote_span_context(one.clone()));
        }
        many => {
            // A root: without an explicit parent, tracing-opentelemetry would take
            // OpenTelemetry's thread-local current context, which another invocation
            // on the same worker thread may have left (shop local runs them side by
            // side), and join that trace.
            let _ = span.set_parent(Context::new());
            for parent in many {
                span.add_link(parent.clone());
            }
        }
    }
    span
}

/// The span of one queue record, in the trace of the order it carries: a child of the
/// invocation when the batch holds this record alone, else a child of its producer,
/// linked to the invocation.
pub fn record(message_id: &str, body: &str, batch_size: usize) -> tracing::Span {
    let span = tracing::info_span!(
        "record",
        otel.kind = "consumer",
        messaging.system = "aws_sqs",
        messaging.message.id = message_id,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    if batch_size > 1
        && let Some(producer) = carried(body)
    {
        let invocation = tracing::Span::current()
            .context()
            .span()
            .span_context()
            .clone();
        let _ = span.set_parent(Context::new().with_remote_span_context(producer));
        if invocation.is_valid() {
            span.add_link(invocation);
        }
    }
    span
}

/// Runs `handle` on `event` inside the span of its invocation ([`invocation`]): the one
/// way every function is invoked, by lambda_runtime in `main.rs`, by `shop local` and
/// by the tests.
pub fn traced<E, Fut>(
    function: &str,
    invocation_id: &str,
    event: E,
    handle: impl FnOnce(E) -> Fut,
) -> tracing::instrument::Instrumented<Fut>
where
    E: Trigger,
    Fut: std::future::Future,
{
    let span = invocation(function, invocation_id, &event);
    tracing::Instrument::instrument(handle(event), span)
}

/// Runs a function under lambda_runtime: each event handled inside its invocation's
/// span ([`traced`]), the runtime's own log span kept, the spans flushed after each
/// invocation ([`FlushLayer`]). `handle` gets the event and Lambda's context.
pub async fn run<E, R, F, Fut, X>(
    tracing: Arc<Tracing<X>>,
    function: &str,
    handle: F,
) -> Result<(), lambda_runtime::Error>
where
    E: Trigger + serde::de::DeserializeOwned,
    R: serde::Serialize,
    F: Fn(E, lambda_runtime::Context) -> Fut,
    Fut: std::future::Future<Output = Result<R, lambda_runtime::Error>>,
    X: SpanExporter + 'static,
{
    let handle = &handle;
    let handler = lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<E>| {
        let lambda_runtime::LambdaEvent { payload, context } = event;
        let id = context.request_id.clone();
        traced(function, &id, payload, move |payload| {
            handle(payload, context)
        })
    });
    lambda_runtime::Runtime::new(handler)
        .layer(lambda_runtime::layers::TracingLayer::new())
        .layer(FlushLayer::new(tracing))
        .run()
        .await
}

/// lambda_runtime's layer that flushes a function's spans after each invocation, once
/// the runtime has posted its answer (the layer wraps the whole invocation), so the
/// caller never waits for the export.
pub struct FlushLayer<X> {
    tracing: Arc<Tracing<X>>,
}

impl<X> FlushLayer<X> {
    /// Flushes `tracing` after each invocation.
    pub fn new(tracing: Arc<Tracing<X>>) -> Self {
        Self { tracing }
    }
}

impl<S, X> lambda_runtime::tower::Layer<S> for FlushLayer<X> {
    type Service = Flushed<S, X>;

    fn layer(&self, inner: S) -> Self::Service {
        Flushed {
            inner,
            tracing: self.tracing.clone(),
        }
    }
}

/// The service [`FlushLayer`] makes.
pub struct Flushed<S, X> {
    inner: S,
    tracing: Arc<Tracing<X>>,
}

impl<S, X> lambda_runtime::Service<lambda_runtime::LambdaInvocation> for Flushed<S, X>
where
    S: lambda_runtime::Service<lambda_runtime::LambdaInvocation, Response = ()>,
    S::Error: Unpin,
    X: SpanExporter + 'static,
{
    type Response = ();
    type Error = S::Error;
    type Future = Flushing<S::Future, X>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, invocation: lambda_runtime::LambdaInvocation) -> Self::Future {
        Flushing {
            answered: Box::pin(self.inner.call(invocation)),
            result: None,
            flush: None,
            tracing: self.tracing.clone(),
        }
    }
}

/// An invocation, then the export of its spans.
pub struct Flushing<F: std::future::Future, X> {
    answered: std::pin::Pin<Box<F>>,
    result: Option<F::Output>,
    flush: Option<futures::future::BoxFuture<'static, ()>>,
    tracing: Arc<Tracing<X>>,
}

impl<F, X> std::future::Future for Flushing<F, X>
where
    F: std::future::Future,
    F::Output: Unpin,
    X: SpanExporter + 'static,
{
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        use std::task::Poll;
        loop {
            if let Some(flush) = self.flush.as_mut() {
                if flush.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.flush = None;
                if let Some(result) = self.result.take() {
                    return Poll::Ready(result);
                }
            }
            let Poll::Ready(result) = self.answered.as_mut().poll(cx) else {
                return Poll::Pending;
            };
            self.result = Some(result);
            let tracing = self.tracing.clone();
            self.flush = Some(Box::pin(async move { tracing.flush().await }));
        }
    }
}

/// Marks `span` failed with the error and every cause under it.
pub fn fail(span: &tracing::Span, error: &(dyn std::error::Error + 'static)) {
    span.record("otel.status_code", "ERROR");
    span.record(
        "otel.status_description",
        crate::ErrorChain(error).to_string().as_str(),
    );
}

/// What a function's span tests need: its spans captured in memory as its
/// invocation ends them, and producers' contexts to put in events.
#[cfg(feature = "testing")]
pub mod testing {
    use super::*;
    pub use opentelemetry_sdk::trace::InMemorySpanExporter;

    /// Invokes `handle` on `event` as `function` is invoked ([`traced`], then the
    /// flush), and returns its answer and the spans it exported.
    pub async fn invoke<E, Fut>(
        function: &str,
        event: E,
        handle: impl FnOnce(E) -> Fut,
    ) -> (Fut::Output, Vec<SpanData>)
    where
        E: Trigger,
        Fut: std::future::Future,
    {
        // While a single dispatcher is registered, tracing-core decides whether a
        // callsite is enabled from the default subscriber of the thread that first
        // hits it: a span another test reaches first, with no subscriber, would stay
        // disabled for this one. A second dispatcher for the whole test process makes
        // every callsite ask all of them.
        static PROCESS: std::sync::LazyLock<Dispatch> =
            std::sync::LazyLock::new(|| Dispatch::new(tracing_subscriber::registry()));
        std::sync::LazyLock::force(&PROCESS);
        let exporter = InMemorySpanExporter::default();
        let tracing = Tracing::new(function, 1.0, exporter.clone());
        let dispatch = tracing.dispatch(tracing_subscriber::fmt::TestWriter::new());
        let answer = tracing
            .invoke(&dispatch, function, "invocation-1", event, handle)
            .await;
        (answer, exporter.get_finished_spans().unwrap_or_default())
    }

    /// A sampled producer's `traceparent`, distinct for each `n`.
    pub fn producer(n: u8) -> String {
        format!(
            "00-{:032x}-{:016x}-01",
            0xabc0 + u128::from(n),
            0x100 + u64::from(n)
        )
    }

    /// The span named `name`; panics naming the spans there are.
    pub fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
            let names: Vec<_> = spans.iter().map(|s| s.name.as_ref()).collect();
            panic!("no span {name} among {names:?}")
        })
    }

    /// The value of attribute `key` of `span`, as text.
    pub fn attribute(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    /// Checks the tree every queue consumer's invocation makes, for a batch whose
    /// records came from `producers` (one `traceparent` each): with one record the
    /// invocation continues its producer's trace and the record is its child; with
    /// several the invocation links to each producer and each record continues its
    /// own producer's trace, linked back to the invocation. Returns the record spans.
    pub fn assert_consumer_tree<'a>(
        spans: &'a [SpanData],
        function: &str,
        producers: &[String],
    ) -> Vec<&'a SpanData> {
        let invocation = named(spans, function);
        assert_eq!(
            attribute(invocation, "faas.trigger").as_deref(),
            Some("pubsub")
        );
        assert_eq!(
            attribute(invocation, "faas.invocation_id").as_deref(),
            Some("invocation-1")
        );
        assert!(attribute(invocation, "faas.coldstart").is_some());
        let producers: Vec<SpanContext> = producers.iter().filter_map(|p| parse(p)).collect();
        let records: Vec<&SpanData> = spans.iter().filter(|s| s.name == "record").collect();
        assert_eq!(records.len(), producers.len(), "a span per record");
        if let [only] = producers.as_slice() {
            assert_eq!(invocation.span_context.trace_id(), only.trace_id());
            assert_eq!(invocation.parent_span_id, only.span_id());
            assert_eq!(records[0].parent_span_id, invocation.span_context.span_id());
            assert_eq!(records[0].span_context.trace_id(), only.trace_id());
        } else {
            let linked: Vec<_> = invocation
                .links
                .iter()
                .map(|l| l.span_context.span_id())
                .collect();
            for producer in &producers {
                assert!(
                    linked.contains(&producer.span_id()),
                    "linked to {producer:?}"
                );
                let record = records
                    .iter()
                    .find(|r| r.parent_span_id == producer.span_id())
                    .expect("a record continues each producer's trace");
                assert_eq!(record.span_context.trace_id(), producer.trace_id());
                assert!(
                    record
                        .links
                        .iter()
                        .any(|l| l.span_context.span_id() == invocation.span_context.span_id()),
                    "the record links back to its invocation"
                );
            }
        }
        records
    }

    /// Checks that each of `records` holds, at any depth, a span `name` naming its
    /// order (`order.id`).
    pub fn assert_each_names_its_order(spans: &[SpanData], records: &[&SpanData], name: &str) {
        for record in records {
            let inner = descendants(spans, record)
                .into_iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("no {name} span under a record"));
            assert!(
                attribute(inner, ORDER_ID).is_some_and(|id| id.starts_with("ord-")),
                "{name} names its order"
            );
        }
    }

    /// The spans under `parent`, at any depth.
    pub fn descendants<'a>(spans: &'a [SpanData], parent: &SpanData) -> Vec<&'a SpanData> {
        let mut found = Vec::new();
        let mut open = vec![parent.span_context.span_id()];
        while let Some(id) = open.pop() {
            for span in spans.iter().filter(|s| s.parent_span_id == id) {
                open.push(span.span_context.span_id());
                found.push(span);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_hostile_ones_are_ignored() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = parse(text).expect("valid");
        assert!(context.is_sampled());
        assert!(context.is_remote());
        assert_eq!(format(&context), text);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_body_carries_its_context_at_the_top_or_in_an_events_detail() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let top = format!(r#"{{"command":"Reserve","traceparent":"{tp}"}}"#);
        let event =
            format!(r#"{{"detail-type":"OrderConfirmed","detail":{{"traceparent":"{tp}"}}}}"#);
        assert_eq!(carried(&top).map(|c| format(&c)).as_deref(), Some(tp));
        assert_eq!(carried(&event).map(|c| format(&c)).as_deref(), Some(tp));
        assert!(carried("not json").is_none());
        assert!(carried(r#"{"command":"Reserve"}"#).is_none());
    }

    #[test]
    fn without_a_span_the_context_sent_on_is_fresh_and_unsampled() {
        let a = traceparent();
        let b = traceparent();
        let context = parse(&a).expect("well-formed");
        assert!(!context.is_sampled());
        assert_ne!(a, b);
    }
}

//! Logging and tracing, set up the same way in every process.
//!
//! - Log filter from `BULKHEAD_LOG` (else `RUST_LOG`, else `info,openraft=warn`); `BULKHEAD_LOG_FORMAT=json`
//!   for JSON lines.
//! - Spans get OpenTelemetry ids always, so trace context flows through the bus even when
//!   nothing is exported; with the `otlp` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are
//!   exported over OTLP/HTTP. The standard `OTEL_*` variables (`OTEL_SERVICE_NAME`,
//!   `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_*`, `OTEL_SDK_DISABLED`) are honoured.

use std::collections::HashMap;

use bulkhead_schema::Envelope;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// openraft narrates every election and replication round at info; its warnings are enough.
const DEFAULT_FILTER: &str = "info,openraft=warn";

/// Flushes and shuts the tracer down when dropped (end of `main`).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("telemetry shutdown: {e}");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

fn env_true(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Installs the global subscriber for a process whose default service name is `service`.
pub fn init(service: &str) -> Result<TelemetryGuard, TelemetryError> {
    let filter = std::env::var("BULKHEAD_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| DEFAULT_FILTER.into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("ignoring log filter {filter:?}: {e}");
        EnvFilter::new(DEFAULT_FILTER)
    });
    let fmt = if std::env::var("BULKHEAD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };

    let provider = (!env_true("OTEL_SDK_DISABLED"))
        .then(|| tracer_provider(service))
        .transpose()?;
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("bulkhead")));
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

fn tracer_provider(service: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    let builder = SdkTracerProvider::builder().with_resource(resource.build());
    Ok(with_exporter(builder)?.build())
}

#[cfg(feature = "otlp")]
fn with_exporter(
    builder: opentelemetry_sdk::trace::TracerProviderBuilder,
) -> Result<opentelemetry_sdk::trace::TracerProviderBuilder, TelemetryError> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some());
    if !configured {
        return Ok(builder);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    Ok(builder.with_batch_exporter(exporter))
}

#[cfg(not(feature = "otlp"))]
fn with_exporter(
    builder: opentelemetry_sdk::trace::TracerProviderBuilder,
) -> Result<opentelemetry_sdk::trace::TracerProviderBuilder, TelemetryError> {
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        tracing::warn!("OTEL_EXPORTER_OTLP_ENDPOINT is set but this build has no `otlp` feature");
    }
    Ok(builder)
}

/// Writes the current span's trace context into an outgoing envelope.
pub fn inject_trace_context(envelope: &mut Envelope) {
    let context = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    envelope.traceparent = carrier.remove("traceparent");
    envelope.tracestate = carrier.remove("tracestate").filter(|s| !s.is_empty());
}

/// Makes `span` a child of the sender's span, as recorded in the envelope.
pub fn follow_trace_context(envelope: &Envelope, span: &tracing::Span) {
    let carrier: HashMap<String, String> = [
        ("traceparent", &envelope.traceparent),
        ("tracestate", &envelope.tracestate),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k.to_owned(), v)))
    .collect();
    if carrier.is_empty() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&carrier);
    // Fails only when the span is already closed or has a parent: nothing to do then.
    let _ = span.set_parent(parent);
}

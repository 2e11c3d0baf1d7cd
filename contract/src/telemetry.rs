//! Logs and metrics the same way in every process, so one log pipeline and
//! one scrape configuration read them all.

use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::env;

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// The value the command line and [`env::LOG_FORMAT`] accept, for the
    /// operator to write into the pods' environment.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Installs the global subscriber, writing to stderr: [`env::LOG_FILTER`]
/// filters (`default_filter` when unset or invalid), `format` picks human text
/// or one JSON object per line for log shippers.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_env(env::LOG_FILTER).unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The Content-Type of [`encode_metrics`]' output.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `registry` in the OpenMetrics text format Prometheus scrapes.
pub fn encode_metrics(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing metrics to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn log_format_values_are_what_clap_parses() {
        for format in LogFormat::value_variants() {
            assert_eq!(
                LogFormat::from_str(format.as_str(), false).as_ref(),
                Ok(format)
            );
        }
    }

    #[test]
    fn metrics_are_openmetrics_text() {
        let mut registry = Registry::with_prefix("multivac");
        let counter = Counter::<u64>::default();
        registry.register("things", "Things counted", counter.clone());
        counter.inc_by(3);
        let text = encode_metrics(&registry);
        assert!(text.contains("# TYPE multivac_things counter"), "{text}");
        assert!(text.contains("multivac_things_total 3"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(METRICS_CONTENT_TYPE.starts_with("application/openmetrics-text"));
    }
}

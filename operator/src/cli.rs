//! The operator's command line: every option is a flag and an environment
//! variable (the chart and `config/manager` set the variables). In the library
//! so the documentation generator reads the same definition the binary parses.

use std::net::SocketAddr;

use clap::Parser;

use multivac_contract::LogFormat;

/// Reconciles MultiVac resources (multivac.io/v1alpha1) into running MultiVACs.
#[derive(Debug, Parser)]
#[command(name = "multivac-operator", version, about)]
pub struct Cli {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "MULTIVAC_OPERATOR_METRICS_BIND",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_bind: SocketAddr,
    /// Log line format.
    #[arg(
        long,
        env = "MULTIVAC_OPERATOR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Run only while holding the leader Lease (needed with more than one replica).
    #[arg(long, env = "MULTIVAC_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "MULTIVAC_OPERATOR_LEASE_NAME",
        default_value = "multivac-operator"
    )]
    pub lease_name: String,
    /// Namespace of the leader Lease; also where the operator's pods run.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "MULTIVAC_OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// App image of a MultiVac without spec.image (the chart passes its release's, value appImage); unset: such a MultiVac is Ready=False, NoAppImage.
    #[arg(long, env = "MULTIVAC_OPERATOR_DEFAULT_APP_IMAGE")]
    pub default_app_image: Option<String>,
    /// MultiVacs reconciled at once, at most (a MultiVac is never reconciled twice at once).
    #[arg(
        long,
        env = "MULTIVAC_OPERATOR_CONCURRENCY",
        default_value_t = 16,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub concurrency: u16,
}

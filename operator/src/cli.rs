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
    /// Reach a managed store's Service at another address, as SERVICE=ADDRESS (e.g. `mv-mongodb.ns.svc:27017=127.0.0.1:27017`), for an operator run outside the cluster (a port-forward, local test servers); several separated by commas.
    #[arg(long = "store-address", env = "MULTIVAC_OPERATOR_STORE_ADDRESSES", value_delimiter = ',', value_parser = store_address)]
    pub store_addresses: Vec<(String, String)>,
}

/// `SERVICE=ADDRESS`, both `host:port`.
fn store_address(text: &str) -> Result<(String, String), String> {
    let host_port = |s: &str| {
        s.rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
    };
    match text.split_once('=') {
        Some((service, address)) if host_port(service) && host_port(address) => {
            Ok((service.into(), address.into()))
        }
        _ => Err(format!(
            "{text:?} is not SERVICE=ADDRESS with both host:port (e.g. mv-mongodb.ns.svc:27017=127.0.0.1:27017)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_addresses_are_service_equals_address() {
        let cli = Cli::try_parse_from([
            "multivac-operator",
            "--store-address",
            "a-mongodb.ns.svc:27017=127.0.0.1:4000,a-redis.ns.svc:6379=localhost:4001",
        ])
        .unwrap();
        assert_eq!(
            cli.store_addresses,
            [
                ("a-mongodb.ns.svc:27017".into(), "127.0.0.1:4000".into()),
                ("a-redis.ns.svc:6379".into(), "localhost:4001".into()),
            ]
        );
        for bad in ["a-mongodb.ns.svc:27017", "a:1=b", "=127.0.0.1:1", "a:x=b:1"] {
            let err = Cli::try_parse_from(["multivac-operator", "--store-address", bad])
                .unwrap_err()
                .to_string();
            assert!(err.contains("is not SERVICE=ADDRESS"), "{bad}: {err}");
        }
    }
}

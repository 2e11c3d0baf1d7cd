//! Resolves Redis host names without blocking threads. Redis' default
//! resolver calls `getaddrinfo` on tokio's blocking pool: with hundreds of
//! MultiVacs whose host names do not resolve, hundreds of threads (and their
//! stacks) waited there, and capping the pool made shutdown wait for them.
//! hickory's resolver is a future like any other: a lookup dropped on
//! shutdown (or by the poll's time budget) ends at once.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use redis::RedisFuture;
use redis::io::AsyncDNSResolver;
use tracing::warn;

/// One resolver shared by every poller, configured like the C library's
/// (`/etc/resolv.conf`: name servers, search domains, `ndots`; `/etc/hosts`).
#[derive(Clone)]
pub struct Resolver(Arc<TokioResolver>);

impl Resolver {
    /// Reads the system configuration; without one, only IP addresses and
    /// `/etc/hosts` names resolve (and the scaler says why the others do not).
    pub fn from_system() -> Self {
        let builder = TokioResolver::builder_tokio().unwrap_or_else(|e| {
            warn!(error = %e, "cannot read the DNS configuration; Redis host names will not resolve");
            TokioResolver::builder_with_config(
                ResolverConfig::new(),
                TokioConnectionProvider::default(),
            )
            .with_options(ResolverOpts::default())
        });
        Self(Arc::new(builder.build()))
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Self::from_system()
    }
}

impl AsyncDNSResolver for Resolver {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        host: &'b str,
        port: u16,
    ) -> RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        Box::pin(async move {
            let ips = self.0.lookup_ip(host).await.map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("cannot resolve the Redis host {host}: {e}"),
                )
            })?;
            let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(ip, port)).collect();
            Ok(Box::new(addrs.into_iter()) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_and_hosts_file_names_resolve_without_a_name_server() {
        let resolver = Resolver::from_system();
        let ip: Vec<SocketAddr> = resolver.resolve("127.0.0.1", 6379).await.unwrap().collect();
        assert_eq!(ip, ["127.0.0.1:6379".parse().unwrap()]);
        let local: Vec<SocketAddr> = resolver.resolve("localhost", 1).await.unwrap().collect();
        assert!(
            local.iter().all(|a| a.ip().is_loopback() && a.port() == 1) && !local.is_empty(),
            "{local:?}"
        );
    }
}

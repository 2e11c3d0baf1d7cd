//! How a Redis URL becomes a client. The app (server, workers) and the
//! operator's scaler connect the same way, so a `rediss://` Redis that one of
//! them can reach, the other can too.

use redis::{Client, TlsCertificates};

/// Why no client could be built. The messages never contain the URL, which
/// carries the password.
#[derive(Debug, thiserror::Error)]
pub enum RedisClientError {
    /// The URL does not parse (or names a scheme the build cannot speak).
    #[error("the Redis URL is invalid: {0}")]
    Url(#[source] redis::RedisError),
    /// A CA was given for a URL without TLS: the CA would silently not be used.
    #[error(
        "a CA is configured for Redis but its URL is not rediss:// (TLS): use rediss://HOST:PORT, or remove the CA"
    )]
    CaWithoutTls,
    /// The CA holds no certificate: every TLS handshake would fail.
    #[error("the Redis CA holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    /// The CA's certificates do not parse.
    #[error("the Redis CA cannot be used: {0}")]
    Ca(#[source] redis::RedisError),
}

const PEM_CERTIFICATE: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// A client for `url`: `redis://` (plain) or `rediss://` (TLS, through
/// rustls). Over TLS the server's certificate and host name are checked
/// against `ca` (PEM certificates) when given, else against the Mozilla roots
/// built into the binary (webpki-roots), as a managed cloud Redis needs.
/// Nothing connects yet.
pub fn redis_client(url: &str, ca: Option<&[u8]>) -> Result<Client, RedisClientError> {
    let Some(ca) = ca else {
        return Client::open(url).map_err(RedisClientError::Url);
    };
    let tls = url
        .trim_start()
        .get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"));
    if !tls {
        return Err(RedisClientError::CaWithoutTls);
    }
    if !ca
        .windows(PEM_CERTIFICATE.len())
        .any(|w| w == PEM_CERTIFICATE)
    {
        return Err(RedisClientError::NoCertificate);
    }
    let certificates = TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.to_vec()),
    };
    Client::build_with_tls(url, certificates).map_err(|e| match e.kind() {
        redis::ErrorKind::InvalidClientConfig => RedisClientError::Url(e),
        _ => RedisClientError::Ca(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::ConnectionAddr;

    fn ca_pem() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem().into_bytes()
    }

    fn is_tls(client: &Client) -> bool {
        matches!(
            client.get_connection_info().addr(),
            ConnectionAddr::TcpTls { .. }
        )
    }

    #[test]
    fn plain_and_public_tls_urls_need_no_ca() {
        assert!(!is_tls(
            &redis_client("redis://:pw@host:6379/0", None).unwrap()
        ));
        assert!(is_tls(
            &redis_client("rediss://:pw@host:6380/0", None).unwrap()
        ));
    }

    #[test]
    fn a_private_ca_is_used_only_with_tls_and_only_if_it_holds_a_certificate() {
        let ca = ca_pem();
        assert!(is_tls(
            &redis_client("rediss://:pw@host:6380", Some(&ca)).unwrap()
        ));
        assert!(is_tls(
            &redis_client("REDISS://host:6380", Some(&ca)).unwrap()
        ));
        assert!(matches!(
            redis_client("redis://:pw@host:6379", Some(&ca)),
            Err(RedisClientError::CaWithoutTls)
        ));
        assert!(matches!(
            redis_client("rediss://host:6380", Some(b"not a certificate")),
            Err(RedisClientError::NoCertificate)
        ));
        let broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            redis_client("rediss://host:6380", Some(broken)),
            Err(RedisClientError::Ca(_))
        ));
    }

    #[test]
    fn errors_never_show_the_password() {
        for url in ["redis://:s3cret@host:notaport", "rediss://:s3cret@"] {
            let err = redis_client(url, None).map(|_| ()).unwrap_err().to_string();
            assert!(!err.contains("s3cret"), "{err}");
        }
        let err = redis_client("redis://:s3cret@host", Some(b"x")).unwrap_err();
        assert!(!err.to_string().contains("s3cret"));
    }
}

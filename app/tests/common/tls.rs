//! TLS for the integration tests: a CA made for the test (rcgen), a Debian
//! redis-server that speaks only TLS (`--port 0 --tls-port`), and FerretDB's
//! TLS listener (`--listen-tls`, no plain listener), both on a certificate
//! that CA signed for 127.0.0.1 and localhost.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tempfile::TempDir;

use multivac_testkit::{RedisConfig, free_port, kill, start_redis, wait_listening};

use super::{Mongo, MongoKind, Multivac, unique};

/// A CA and a server certificate it signed, as PEM files.
pub struct Pki {
    dir: TempDir,
}

impl Pki {
    /// A new CA ("multivac test CA") and a certificate for 127.0.0.1 and localhost.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "multivac test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("self-signed CA");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("server key");
        let server = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("server params")
            .signed_by(&key, &issuer)
            .expect("server certificate");
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.crt", ca_cert.pem());
        write("server.crt", server.pem());
        write("server.key", key.serialize_pem());
        Pki { dir }
    }

    /// Another CA's certificate, which did not sign the server's.
    pub fn stranger_ca(&self) -> PathBuf {
        let other = Pki::new();
        let path = self.dir.path().join("stranger.crt");
        std::fs::copy(other.ca(), &path).expect("copy the other CA");
        path
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.ca()).expect("read ca.crt")
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

/// A redis-server listening only with TLS, requiring `password`.
pub struct TlsRedis {
    child: Child,
    pub port: u16,
    password: String,
    _dir: TempDir,
}

impl TlsRedis {
    pub fn start(pki: &Pki, password: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let (cert, key, ca) = (pki.cert(), pki.key(), pki.ca());
        let config = RedisConfig::tls(&cert, &key, &ca, password);
        let child = start_redis(port, dir.path(), &config);
        TlsRedis {
            child,
            port,
            password: password.to_owned(),
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("rediss://:{}@127.0.0.1:{}/0", self.password, self.port)
    }

    /// The same server as a plain `redis://` URL: what a client without TLS would try.
    pub fn plain_url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}/0", self.password, self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// FerretDB with only its TLS listener; `uri` is `mongodb://` without TLS
/// options (each test adds `tls=true&tlsCAFile=...` or the CA variable).
pub fn tls_mongo(pki: &Pki) -> Mongo {
    let ferretdb = Mongo::ferretdb();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut child = multivac_testkit::ferretdb_command(&ferretdb, dir.path())
        .arg("--listen-addr=")
        .arg(format!("--listen-tls=127.0.0.1:{port}"))
        .arg(tls_flag("cert", &pki.cert()))
        .arg(tls_flag("key", &pki.key()))
        .spawn()
        .expect("starting FerretDB with TLS");
    wait_listening(port, "FerretDB (TLS)", &mut child, Duration::from_secs(30));
    Mongo {
        kind: MongoKind::FerretDb(ferretdb),
        child: Some(child),
        port,
        dir,
        uri: format!("mongodb://127.0.0.1:{port}/"),
        database: unique("multivac_tls"),
    }
}

fn tls_flag(what: &str, path: &Path) -> String {
    format!("--listen-tls-{what}-file={}", path.display())
}

/// `multivac server` on `redis_url` (any scheme) and `mongo`, with extra environment.
pub fn server(redis_url: &str, mongo: &Mongo, env: &[(&str, &str)]) -> Multivac {
    Multivac::spawn("server", redis_url, mongo, free_port(), env)
}

/// `multivac worker` named `name` on `redis_url` and `mongo`.
pub fn worker(redis_url: &str, mongo: &Mongo, name: &str, env: &[(&str, &str)]) -> Multivac {
    let mut all = vec![("MULTIVAC_CONSUMER_NAME", name)];
    all.extend_from_slice(env);
    Multivac::spawn("worker", redis_url, mongo, free_port(), &all)
}

//! MongoDB: what MultiVAC has learned.
//!
//! `concepts` holds one document per concept (`_id` = the concept) and `data`
//! one per processed stream entry (`_id` = the entry id). Both are written
//! with unordered bulk inserts that ignore duplicate keys, so writing the same
//! batch twice (a redelivery) changes no count: processing is idempotent.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mongodb::bson::{Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, Tls, TlsOptions};
use mongodb::{Client, Collection, Database};
use multivac_contract::env;
use serde::{Deserialize, Serialize};

use crate::redact::redact_url;

/// MongoDB's duplicate key error code.
const DUPLICATE_KEY: i32 = 11000;
/// Concepts remembered as already stored, to skip re-inserting them; past
/// this size the memory is cleared (inserts stay correct, just less skipped).
const KNOWN_CONCEPTS_CAP: usize = 200_000;

/// MongoDB failures, with what to check.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URI cannot be used.
    #[error("invalid {var} {uri}: {source}", var = env::MONGODB_URI)]
    Uri {
        uri: String,
        #[source]
        source: mongodb::error::Error,
    },
    /// A CA file is configured but the URI turns TLS off.
    #[error(
        "{uri} says tls=false but {var} is set: remove tls=false (or ssl=false) from {uri_var}, or unset {var}",
        var = env::MONGODB_CA_FILE,
        uri_var = env::MONGODB_URI
    )]
    TlsOff { uri: String },
    /// A command failed or MongoDB did not answer.
    #[error(
        "MongoDB at {uri} is unreachable or failed: {source}; check {var} and that MongoDB is up",
        var = env::MONGODB_URI
    )]
    Mongo {
        uri: String,
        #[source]
        source: mongodb::error::Error,
    },
}

/// The knowledge figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knowledge {
    /// Distinct concepts learned.
    pub concepts: u64,
    /// Data processed.
    pub data_processed: u64,
}

/// A datum ready to be stored: its entry id, text and concepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learned {
    pub(crate) id: String,
    pub(crate) data: String,
    pub(crate) concepts: Vec<String>,
}

impl Learned {
    /// Learns from one datum.
    pub fn new(id: String, data: String) -> Self {
        let concepts = crate::learn::concepts(&data);
        Learned { id, data, concepts }
    }
}

/// Access to the MongoDB database.
pub struct Store {
    db: Database,
    concepts: Collection<Document>,
    data: Collection<Document>,
    uri: String,
    known: Mutex<HashSet<String>>,
}

impl Store {
    /// A client for `uri` (connected lazily: the driver connects on first
    /// use); `timeout` bounds server selection and connecting.
    pub async fn connect(uri: &str, database: &str, timeout: Duration) -> Result<Self, StoreError> {
        Self::connect_with_ca(uri, database, None, timeout).await
    }

    /// [`Store::connect`] over TLS checked against the CA in `ca_file`
    /// (PEM), as `tls=true&tlsCAFile=...` in the URI would; the URI's other
    /// TLS options stay. A URI that turns TLS off is refused.
    pub async fn connect_with_ca(
        uri: &str,
        database: &str,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let redacted = redact_url(uri);
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|source| StoreError::Uri {
                uri: redacted.clone(),
                source,
            })?;
        if let Some(path) = ca_file {
            options.tls = Some(Tls::Enabled(match options.tls.take() {
                Some(Tls::Disabled) => {
                    return Err(StoreError::TlsOff {
                        uri: redacted.clone(),
                    });
                }
                Some(Tls::Enabled(mut tls)) => {
                    tls.ca_file_path = Some(path.to_owned());
                    tls
                }
                None => TlsOptions::builder().ca_file_path(path.to_owned()).build(),
            }));
        }
        options
            .app_name
            .get_or_insert_with(|| "multivac".to_owned());
        options.server_selection_timeout = Some(timeout);
        options.connect_timeout = Some(timeout);
        let client = Client::with_options(options).map_err(|source| StoreError::Uri {
            uri: redacted.clone(),
            source,
        })?;
        let db = client.database(database);
        Ok(Store {
            concepts: db.collection("concepts"),
            data: db.collection("data"),
            db,
            uri: redacted,
            known: Mutex::new(HashSet::new()),
        })
    }

    fn err(&self, source: mongodb::error::Error) -> StoreError {
        StoreError::Mongo {
            uri: self.uri.clone(),
            source,
        }
    }

    /// The URI without its password, for logs.
    pub(crate) fn redacted_uri(&self) -> &str {
        &self.uri
    }

    /// The `ping` command, for readiness.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .run_command(doc! {"ping": 1})
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The knowledge figures. The estimated count reads collection metadata
    /// instead of scanning, which keeps GET /multivac cheap; it is exact for
    /// collections that are only inserted into, as these are.
    pub async fn knowledge(&self) -> Result<Knowledge, StoreError> {
        let (concepts, data) = tokio::try_join!(
            self.concepts.estimated_document_count(),
            self.data.estimated_document_count()
        )
        .map_err(|e| self.err(e))?;
        Ok(Knowledge {
            concepts,
            data_processed: data,
        })
    }

    /// Stores a batch: first its new concepts, then its data records, each
    /// in one unordered bulk insert. Succeeds only when both are stored, so
    /// the caller acknowledges only what MongoDB holds.
    pub async fn write_batch(&self, batch: &[Learned]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let new_concepts: Vec<String> = {
            let known = self.known.lock().expect("known concepts lock");
            let mut seen = HashSet::new();
            batch
                .iter()
                .flat_map(|l| l.concepts.iter())
                .filter(|c| !known.contains(*c) && seen.insert(c.as_str()))
                .cloned()
                .collect()
        };
        if !new_concepts.is_empty() {
            let docs = new_concepts.iter().map(|c| doc! {"_id": c});
            self.insert_ignoring_duplicates(&self.concepts, docs)
                .await?;
            let mut known = self.known.lock().expect("known concepts lock");
            if known.len() + new_concepts.len() > KNOWN_CONCEPTS_CAP {
                known.clear();
            }
            known.extend(new_concepts);
        }
        let now = mongodb::bson::DateTime::from_millis(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default(),
        );
        let docs = batch.iter().map(|l| {
            doc! {
                "_id": &l.id,
                "data": &l.data,
                "concepts": l.concepts.len() as i64,
                "learned_at": now,
            }
        });
        self.insert_ignoring_duplicates(&self.data, docs).await
    }

    async fn insert_ignoring_duplicates(
        &self,
        collection: &Collection<Document>,
        docs: impl Iterator<Item = Document>,
    ) -> Result<(), StoreError> {
        match collection.insert_many(docs).ordered(false).await {
            Ok(_) => Ok(()),
            Err(e) => match e.kind.as_ref() {
                ErrorKind::InsertMany(failure)
                    if failure.write_concern_error.is_none()
                        && failure
                            .write_errors
                            .as_ref()
                            .is_some_and(|errs| errs.iter().all(|w| w.code == DUPLICATE_KEY)) =>
                {
                    Ok(())
                }
                _ => Err(self.err(e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ca_file_with_tls_turned_off_is_refused() {
        for uri in [
            "mongodb://u:secret@127.0.0.1:1/?tls=false",
            "mongodb://u:secret@127.0.0.1:1/?ssl=false",
        ] {
            let err = Store::connect_with_ca(
                uri,
                "db",
                Some(Path::new("ca.crt")),
                Duration::from_secs(1),
            )
            .await
            .err()
            .expect("refused");
            let text = err.to_string();
            assert!(matches!(err, StoreError::TlsOff { .. }), "{text}");
            assert!(
                text.contains(env::MONGODB_CA_FILE) && !text.contains("secret"),
                "{text}"
            );
        }
        // TLS on in the URI or not mentioned: the CA is taken (the driver
        // reads it when the client is built; nothing connects yet).
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(&ca, cert.pem()).unwrap();
        for uri in ["mongodb://127.0.0.1:1/?tls=true", "mongodb://127.0.0.1:1/"] {
            Store::connect_with_ca(uri, "db", Some(&ca), Duration::from_secs(1))
                .await
                .unwrap_or_else(|e| panic!("{uri}: {e}"));
        }
        // A CA file that is not there is an error at once, naming it.
        let missing = dir.path().join("missing.crt");
        let err = Store::connect_with_ca(
            "mongodb://127.0.0.1:1/",
            "db",
            Some(&missing),
            Duration::from_secs(1),
        )
        .await
        .err()
        .expect("refused")
        .to_string();
        assert!(err.contains("missing.crt"), "{err}");
    }
}

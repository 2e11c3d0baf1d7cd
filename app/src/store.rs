//! MongoDB: what MultiVAC has learned.
//!
//! `concepts` holds one document per concept (`_id` = the concept) and `data`
//! one per processed stream entry (`_id` = the entry id). Both are written
//! with unordered bulk inserts that ignore duplicate keys, so writing the same
//! batch twice (a redelivery) changes no count: processing is idempotent.
//!
//! Writes are journaled (`j: true`) and, on a replica set or a sharded
//! cluster, acknowledged by a majority (`w: majority`): the worker
//! acknowledges (deletes) stream entries only after that, so an entry never
//! leaves Redis before MongoDB can survive a crash with it.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mongodb::bson::{Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::{Acknowledgment, ClientOptions, Tls, TlsOptions, WriteConcern};
use mongodb::{Client, Collection, Database};
use multivac_contract::env;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::redact::redact_url;

/// MongoDB's duplicate key error code.
const DUPLICATE_KEY: i32 = 11000;
/// Concepts remembered as already stored, to skip re-inserting them; past
/// this size the memory is cleared (inserts stay correct, just less skipped).
const KNOWN_CONCEPTS_CAP: usize = 200_000;
/// Error codes of a document's write error that say "not now" rather than
/// "never": the server is stepping down, shutting down, interrupted, out of
/// time, throttling, out of disk or refusing our user. The batch is retried;
/// every other per-document error refuses that document for good.
const TRANSIENT_WRITE_CODES: [i32; 23] = [
    6, 7, 13, 18, 24, 46, 50, 64, 89, 91, 112, 189, 262, 9001, 10058, 10107, 11600, 11601, 11602,
    13435, 13436, 14031, 16500,
];

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

/// What the first write learns about the deployment.
#[derive(Clone, Debug)]
struct Deployment {
    concern: WriteConcern,
    /// The largest document MongoDB stores (`maxBsonObjectSize`).
    max_document: usize,
}

/// `maxBsonObjectSize` when `hello` does not say.
const DEFAULT_MAX_DOCUMENT: usize = 16 * 1024 * 1024;

/// A datum of a batch that MongoDB refused for good (a write error that no
/// retry changes, such as a document too large or a key it cannot store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Its position in the batch given to [`Store::write_batch`].
    pub index: usize,
    /// MongoDB's error, for the dead-letter entry.
    pub reason: String,
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
    /// The write concern and document size limit, from what the deployment
    /// says it is (`hello`) on the first write.
    deployment: OnceCell<Deployment>,
    /// Set in the connection string, if at all.
    configured_concern: Option<WriteConcern>,
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
        let configured_concern = options.write_concern.clone();
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
            deployment: OnceCell::new(),
            configured_concern,
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

    /// The write concern of every write, journaled, and acknowledged by a
    /// majority when `hello` shows a replica set (`setName`) or a sharded
    /// cluster (`msg: isdbgrid`); a `w` set in the connection string wins,
    /// `j` is always true. And the largest document it takes.
    async fn deployment(&self) -> Result<Deployment, StoreError> {
        self.deployment
            .get_or_try_init(|| async {
                let hello = self
                    .db
                    .run_command(doc! {"hello": 1})
                    .await
                    .map_err(|e| self.err(e))?;
                let (concern, max_document) =
                    deployment_of(&hello, self.configured_concern.clone());
                tracing::info!(w = ?concern.w, journal = ?concern.journal, max_document, "MongoDB write concern");
                Ok(Deployment {
                    concern,
                    max_document,
                })
            })
            .await
            .cloned()
    }

    /// Stores a batch: first its new concepts, then its data records, each
    /// in one unordered bulk insert. `Ok` means MongoDB holds every datum
    /// except the returned ones, which it refused for good (a datum whose
    /// concept was refused is refused with it, and its record is not
    /// written): the caller acknowledges the rest and dead-letters those.
    /// `Err` means nothing can be said (MongoDB down, a timeout, a write
    /// concern not met): retry the batch.
    pub async fn write_batch(&self, batch: &[Learned]) -> Result<Vec<Rejected>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let Deployment {
            concern,
            max_document,
        } = self.deployment().await?;
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
        let mut rejected = Vec::new();
        if !new_concepts.is_empty() {
            let docs: Vec<Document> = new_concepts.iter().map(|c| doc! {"_id": c}).collect();
            let (docs, mut refused) = split_oversized(docs, max_document);
            refused.extend(
                self.insert_ignoring_duplicates(&self.concepts, docs, &concern)
                    .await?,
            );
            for (concept_index, reason) in &refused {
                let concept = &new_concepts[*concept_index];
                for (index, learned) in batch.iter().enumerate() {
                    if learned.concepts.binary_search(concept).is_ok() {
                        rejected.push(Rejected {
                            index,
                            reason: format!("MongoDB refused its concept {concept:?}: {reason}"),
                        });
                    }
                }
            }
            let mut known = self.known.lock().expect("known concepts lock");
            if known.len() + new_concepts.len() > KNOWN_CONCEPTS_CAP {
                known.clear();
            }
            let refused: HashSet<usize> = refused.into_iter().map(|(i, _)| i).collect();
            known.extend(
                new_concepts
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| !refused.contains(i))
                    .map(|(_, c)| c),
            );
        }
        rejected.sort_by_key(|r| r.index);
        rejected.dedup_by_key(|r| r.index);
        let now = mongodb::bson::DateTime::from_millis(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default(),
        );
        // Records of the data whose concepts are all stored; positions in
        // this list map back to the batch through `written`.
        let written: Vec<usize> = (0..batch.len())
            .filter(|i| rejected.binary_search_by_key(i, |r| r.index).is_err())
            .collect();
        let docs: Vec<Document> = written
            .iter()
            .map(|&i| {
                let l = &batch[i];
                doc! {
                    "_id": &l.id,
                    "data": &l.data,
                    "concepts": l.concepts.len() as i64,
                    "learned_at": now,
                }
            })
            .collect();
        if !written.is_empty() {
            let (docs, mut refused) = split_oversized(docs, max_document);
            refused.extend(
                self.insert_ignoring_duplicates(&self.data, docs, &concern)
                    .await?,
            );
            rejected.extend(refused.into_iter().map(|(i, reason)| Rejected {
                index: written[i],
                reason: format!("MongoDB refused its record: {reason}"),
            }));
        }
        rejected.sort_by_key(|r| r.index);
        Ok(rejected)
    }

    /// One unordered insert of `docs` (positions in the caller's list, so
    /// the refusals it returns use them; `None` is a document already
    /// refused). Duplicates count as stored (a redelivery); documents
    /// refused for good come back with MongoDB's reason; anything else (no
    /// answer, a transient refusal, a write concern not met) is an error,
    /// and the whole insert is retried.
    async fn insert_ignoring_duplicates(
        &self,
        collection: &Collection<Document>,
        docs: Positioned,
        concern: &WriteConcern,
    ) -> Result<Refusals, StoreError> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let positions: Vec<usize> = docs.iter().map(|(i, _)| *i).collect();
        let inserted = collection
            .insert_many(docs.into_iter().map(|(_, d)| d))
            .ordered(false)
            .write_concern(concern.clone())
            .await;
        match inserted {
            Ok(_) => Ok(Vec::new()),
            Err(e) => match refused_documents(&e) {
                Some(refused) => Ok(refused
                    .into_iter()
                    .map(|(i, reason)| (positions[i], reason))
                    .collect()),
                None => Err(self.err(e)),
            },
        }
    }
}

/// The write concern and the largest document, from a `hello` reply and the
/// write concern of the connection string (if any).
fn deployment_of(hello: &Document, configured: Option<WriteConcern>) -> (WriteConcern, usize) {
    let replicated = hello.contains_key("setName") || hello.get_str("msg") == Ok("isdbgrid");
    let mut concern = configured.unwrap_or_default();
    concern.journal = Some(true);
    if concern.w.is_none() {
        concern.w = Some(if replicated {
            Acknowledgment::Majority
        } else {
            Acknowledgment::Nodes(1)
        });
    }
    let max_document = hello
        .get_i32("maxBsonObjectSize")
        .ok()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(DEFAULT_MAX_DOCUMENT);
    (concern, max_document)
}

/// Documents with their positions in the caller's list.
type Positioned = Vec<(usize, Document)>;
/// Refused documents' positions with MongoDB's reason.
type Refusals = Vec<(usize, String)>;

/// Documents larger than MongoDB takes (the driver refuses the whole insert
/// for one of them, without saying which) are set apart with a reason; the
/// rest come with their positions in `docs`.
fn split_oversized(docs: Vec<Document>, max_document: usize) -> (Positioned, Refusals) {
    let mut fit = Vec::with_capacity(docs.len());
    let mut oversized = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        // Cheap first: a document is at most a little larger than its
        // strings (the key names and headers are under 100 bytes here).
        let strings: usize = doc.values().filter_map(|v| v.as_str()).map(str::len).sum();
        let size = if strings + 1024 > max_document {
            mongodb::bson::to_vec(&doc)
                .map(|v| v.len())
                .unwrap_or(usize::MAX)
        } else {
            strings
        };
        if size > max_document {
            oversized.push((
                i,
                format!("BSONObjectTooLarge: the document is {size} bytes, MongoDB stores at most {max_document}"),
            ));
        } else {
            fit.push((i, doc));
        }
    }
    (fit, oversized)
}

/// The documents an unordered insert failed for good, with MongoDB's reason
/// (duplicates are not failures: they are stored already); `None` when the
/// failure says nothing about the documents themselves and the insert must
/// be retried (no answer, a write concern not met, a transient code).
fn refused_documents(e: &mongodb::error::Error) -> Option<Refusals> {
    let ErrorKind::InsertMany(failure) = e.kind.as_ref() else {
        return None;
    };
    if failure.write_concern_error.is_some() {
        return None;
    }
    let errors = failure.write_errors.as_ref()?;
    if errors
        .iter()
        .any(|w| TRANSIENT_WRITE_CODES.contains(&w.code))
    {
        return None;
    }
    Some(
        errors
            .iter()
            .filter(|w| w.code != DUPLICATE_KEY)
            .map(|w| {
                let name = w.code_name.as_deref().unwrap_or("error");
                (w.index, format!("{name} ({}): {}", w.code, w.message))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert_many_error(failure: serde_json::Value) -> mongodb::error::Error {
        let failure: mongodb::error::InsertManyError = serde_json::from_value(failure).unwrap();
        mongodb::error::Error::from(ErrorKind::InsertMany(failure))
    }

    fn write_error(index: usize, code: i32, message: &str) -> serde_json::Value {
        serde_json::json!({"index": index, "code": code, "errmsg": message})
    }

    #[test]
    fn only_permanent_per_document_errors_refuse_documents() {
        let dup = write_error(0, DUPLICATE_KEY, "E11000 duplicate key");
        let too_large = write_error(2, 10334, "object to insert too large");
        let bad_value = write_error(3, 2, "invalid key");
        let stepping_down = write_error(1, 10107, "not primary");
        let out_of_disk = write_error(1, 14031, "out of disk space");
        // (the insert's write errors, what is refused: None = retry all)
        let table = [
            (vec![dup.clone()], Some(vec![])),
            (
                vec![dup.clone(), too_large.clone(), bad_value.clone()],
                Some(vec![2, 3]),
            ),
            (vec![too_large.clone(), stepping_down], None),
            (vec![out_of_disk], None),
        ];
        for (errors, refused) in table {
            let e = insert_many_error(serde_json::json!({"writeErrors": errors.clone()}));
            let got =
                refused_documents(&e).map(|r| r.into_iter().map(|(i, _)| i).collect::<Vec<_>>());
            assert_eq!(got, refused, "{errors:?}");
        }
        // A write concern not met says nothing about the documents.
        let e = insert_many_error(serde_json::json!({
            "writeErrors": [too_large],
            "writeConcernError": {"code": 64, "errmsg": "waiting for replication timed out"},
        }));
        assert_eq!(refused_documents(&e), None);
        // Nor does a failure that is not an insert's.
        let e = mongodb::error::Error::custom("no server");
        assert_eq!(refused_documents(&e), None);
        // The reason names the code.
        let e = insert_many_error(serde_json::json!({"writeErrors": [bad_value]}));
        let reason = &refused_documents(&e).unwrap()[0].1;
        assert!(reason.contains("(2): invalid key"), "{reason}");
    }

    #[test]
    fn writes_are_journaled_and_majority_acknowledged_when_replicated() {
        let majority = Some(Acknowledgment::Majority);
        let one = Some(Acknowledgment::Nodes(1));
        // (hello reply, w from the connection string, w used)
        let table = [
            (doc! {"isWritablePrimary": true}, None, one.clone()),
            (
                doc! {"isWritablePrimary": true, "setName": "rs0"},
                None,
                majority.clone(),
            ),
            (
                doc! {"isWritablePrimary": true, "msg": "isdbgrid"},
                None,
                majority.clone(),
            ),
            (
                doc! {"setName": "rs0"},
                Some(Acknowledgment::Nodes(3)),
                Some(Acknowledgment::Nodes(3)),
            ),
        ];
        for (hello, configured, w) in table {
            let configured =
                configured.map(|w| WriteConcern::builder().w(w).journal(false).build());
            let (concern, max_document) = deployment_of(&hello, configured);
            assert_eq!(concern.w, w, "{hello}");
            assert_eq!(concern.journal, Some(true), "{hello}: always journaled");
            assert_eq!(max_document, DEFAULT_MAX_DOCUMENT);
        }
        let (_, max) = deployment_of(&doc! {"maxBsonObjectSize": 1000}, None);
        assert_eq!(max, 1000);
    }

    #[test]
    fn oversized_documents_are_set_apart() {
        let docs = vec![
            doc! {"_id": "small", "data": "x"},
            doc! {"_id": "large", "data": "y".repeat(2000)},
            doc! {"_id": "small too"},
        ];
        let (fit, oversized) = split_oversized(docs, 1500);
        let kept: Vec<usize> = fit.iter().map(|(i, _)| *i).collect();
        assert_eq!(kept, [0, 2]);
        assert_eq!(oversized.len(), 1);
        assert_eq!(oversized[0].0, 1);
        assert!(
            oversized[0].1.contains("BSONObjectTooLarge"),
            "{}",
            oversized[0].1
        );
        assert!(
            oversized[0].1.contains("at most 1500"),
            "{}",
            oversized[0].1
        );
    }

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

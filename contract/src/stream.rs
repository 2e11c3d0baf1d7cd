//! The Redis layout the server writes, the workers consume and the scaler
//! reads.

use redis::{Pipeline, ToRedisArgs};

/// The stream the server appends data to (XADD) and the workers consume.
pub const STREAM: &str = "multivac:data";
/// The consumer group every worker reads [`STREAM`] in; its lag and pending
/// count are the [`Backlog`](crate::Backlog).
pub const GROUP: &str = "multivac-workers";
/// Where a worker moves entries it can never learn, so they leave the backlog
/// without being lost.
pub const DEAD_LETTER: &str = "multivac:data:dead";
/// Prefix of the worker heartbeat keys (`multivac:workers:<consumer>`), which
/// `/zzz` lists as the live workers.
pub const HEARTBEAT_PREFIX: &str = "multivac:workers:";
/// The field holding the datum in an entry of [`STREAM`] (and of
/// [`DEAD_LETTER`]).
pub const DATA_FIELD: &str = "data";

/// Adds to `pipe` what takes entries out of the backlog once they are safe
/// elsewhere: XACK in [`GROUP`] and XDEL from [`STREAM`].
///
/// Deleting what is acknowledged keeps Redis memory bounded by the backlog,
/// and it is what makes [`BacklogReading::LenFallback`](crate::BacklogReading)
/// exact: the stream then holds only undelivered and pending entries.
pub fn acknowledge<'a, I: ToRedisArgs>(pipe: &'a mut Pipeline, ids: &[I]) -> &'a mut Pipeline {
    pipe.cmd("XACK")
        .arg(STREAM)
        .arg(GROUP)
        .arg(ids)
        .ignore()
        .cmd("XDEL")
        .arg(STREAM)
        .arg(ids)
        .ignore()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledging_also_deletes() {
        let mut pipe = redis::pipe();
        acknowledge(&mut pipe, &["1-0", "2-0"]);
        let packed = String::from_utf8(pipe.get_packed_pipeline()).unwrap();
        let words: Vec<&str> = packed
            .split("\r\n")
            .filter(|w| !w.is_empty() && !w.starts_with(['*', '$']))
            .collect();
        assert_eq!(
            words,
            [
                "XACK", STREAM, GROUP, "1-0", "2-0", "XDEL", STREAM, "1-0", "2-0"
            ]
        );
    }
}

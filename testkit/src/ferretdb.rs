//! FerretDB with its SQLite backend: the MongoDB the project tests against.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::on_path;

/// How to get FerretDB, for the errors of tests that cannot find it.
pub const GET_FERRETDB: &str = "run `bash hack/deps/ferretdb.sh` (builds FerretDB v1.24.2 into \
     the cache) and set MULTIVAC_TEST_FERRETDB to the path it prints, or run `make test`";

/// The cache the project's scripts build heavy tools into (hack/lib.sh's
/// MULTIVAC_CACHE, default `$XDG_CACHE_HOME/multivac` or `~/.cache/multivac`).
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("MULTIVAC_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(|d| PathBuf::from(d).join("multivac"))
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/multivac"))
                })
        })
}

/// FerretDB's binary, if there is one: MULTIVAC_TEST_FERRETDB (what
/// `make test` sets), else the one `hack/deps/ferretdb.sh` built into the
/// cache, else one on PATH.
pub fn find_ferretdb() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MULTIVAC_TEST_FERRETDB") {
        return Some(PathBuf::from(path));
    }
    cache_dir()
        .map(|c| c.join("ferretdb/v1.24.2/bin/ferretdb"))
        .filter(|p| p.is_file())
        .or_else(|| on_path("ferretdb"))
}

/// [`find_ferretdb`], or a panic saying how to get it.
pub fn ferretdb() -> PathBuf {
    find_ferretdb().unwrap_or_else(|| panic!("no FerretDB: {GET_FERRETDB}"))
}

/// `binary` (FerretDB) on SQLite with its data and state in `dir`, quiet, no
/// telemetry and its debug listener on a port of its own choosing; the
/// caller adds the listener (`--listen-addr` / `--listen-tls`) and any
/// authentication flags, then spawns it.
pub fn ferretdb_command(binary: &Path, dir: &Path) -> Command {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("FerretDB's data dir");
    let mut cmd = Command::new(binary);
    cmd.arg("--handler=sqlite")
        .arg(format!("--sqlite-url=file:{}/", data.display()))
        .arg(format!("--state-dir={}", dir.display()))
        .args([
            "--debug-addr=127.0.0.1:0",
            "--telemetry=disable",
            "--log-level=error",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

//! Ports and child processes.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that nothing listens on right now: every server a
/// test starts gets its own, so tests run in parallel.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

/// Waits until `child` (called `what` in errors) accepts connections on
/// 127.0.0.1:`port`, so a test never talks to a server that is still starting.
/// Panics if it exits first or is not listening within `timeout`.
pub fn wait_listening(port: u16, what: &str, child: &mut Child, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within {timeout:?}");
}

/// Spawns `cmd` (called `what` in errors) and returns it once it listens on
/// 127.0.0.1:`port` (see [`wait_listening`]).
pub fn spawn_listening(cmd: &mut Command, port: u16, what: &str, timeout: Duration) -> Child {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    wait_listening(port, what, &mut child, timeout);
    child
}

/// `name`'s path in a directory of `PATH`, if any: where a server installed
/// by the system (apt) is found when no variable names it.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// SIGKILL and reap: a server stopped with no chance to finish anything (a
/// crash), and no zombie left behind. Errors (already exited) are fine.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

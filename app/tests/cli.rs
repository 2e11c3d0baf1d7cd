//! The binary's command line: every option is documented in --help with its
//! environment variable, and bad configuration fails fast with a clear error.

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_multivac"))
        .args(args)
        .env_clear()
        .output()
        .expect("running multivac")
}

#[test]
fn help_documents_every_option_and_its_variable() {
    let server = String::from_utf8(run(&["server", "--help"]).stdout).unwrap();
    for var in [
        "MULTIVAC_REDIS_URL",
        "MULTIVAC_MONGODB_URI",
        "MULTIVAC_MONGODB_DATABASE",
        "MULTIVAC_LOG_FORMAT",
        "MULTIVAC_BIND",
        "MULTIVAC_METRICS_BIND",
        "MULTIVAC_PUBLIC_ZZZ",
        "MULTIVAC_REDIS_CA_FILE",
        "MULTIVAC_MONGODB_CA_FILE",
        "MULTIVAC_REQUIRED_CONCEPTS",
        "MULTIVAC_MAX_DATA_BYTES",
        "MULTIVAC_API_TOKEN",
        "MULTIVAC_STATS_TTL_MS",
        "MULTIVAC_REQUEST_TIMEOUT_MS",
        "MULTIVAC_BACKEND_TIMEOUT_MS",
        "MULTIVAC_MAX_BACKLOG",
        "MULTIVAC_MAX_IN_FLIGHT",
        "MULTIVAC_DRAIN_MS",
    ] {
        assert!(server.contains(var), "server --help lacks {var}:\n{server}");
    }
    let worker = String::from_utf8(run(&["worker", "--help"]).stdout).unwrap();
    for var in [
        "MULTIVAC_REDIS_URL",
        "MULTIVAC_MONGODB_URI",
        "MULTIVAC_MONGODB_DATABASE",
        "MULTIVAC_LOG_FORMAT",
        "MULTIVAC_METRICS_BIND",
        "MULTIVAC_REDIS_CA_FILE",
        "MULTIVAC_MONGODB_CA_FILE",
        "MULTIVAC_CONSUMER_NAME",
        "MULTIVAC_BATCH_SIZE",
        "MULTIVAC_BATCH_BYTES",
        "MULTIVAC_BLOCK_MS",
        "MULTIVAC_CLAIM_IDLE_MS",
        "MULTIVAC_MAX_DELIVERIES",
        "MULTIVAC_SHUTDOWN_TIMEOUT_MS",
        "MULTIVAC_BACKEND_TIMEOUT_MS",
    ] {
        assert!(worker.contains(var), "worker --help lacks {var}:\n{worker}");
    }
}

#[test]
fn secrets_are_never_echoed_by_help() {
    let output = Command::new(env!("CARGO_BIN_EXE_multivac"))
        .args(["server", "--help"])
        .env("MULTIVAC_API_TOKEN", "token-that-must-not-show")
        .env(
            "MULTIVAC_REDIS_URL",
            "redis://:pw-that-must-not-show@h:6379",
        )
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(!help.contains("must-not-show"), "{help}");
}

#[test]
fn invalid_configuration_fails_with_a_clear_error() {
    let output = run(&["server", "--bind", "not-an-address"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--bind"), "{stderr}");

    let output = run(&[
        "worker",
        "--redis-url",
        "nonsense://x",
        "--metrics-bind",
        "127.0.0.1:0",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("MULTIVAC_REDIS_URL"), "{stderr}");
}

/// An API token that is set but empty or blank (an empty Secret value) is a
/// start-up error, never "no authentication"; the token is not echoed.
#[test]
fn an_empty_or_blank_api_token_refuses_to_start() {
    for token in ["", "   ", "\n", "\t \r\n"] {
        let output = Command::new(env!("CARGO_BIN_EXE_multivac"))
            .args(["server", "--bind", "127.0.0.1:0"])
            .env_clear()
            .env("MULTIVAC_API_TOKEN", token)
            .output()
            .unwrap();
        assert!(!output.status.success(), "started with the token {token:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(
            stderr.contains("the API token is empty"),
            "{token:?}: {stderr}"
        );
        assert!(stderr.contains("MULTIVAC_API_TOKEN"), "{token:?}: {stderr}");
    }
    // The new options refuse nonsense too.
    for args in [
        ["server", "--max-in-flight", "0"],
        ["server", "--max-backlog", "many"],
        ["worker", "--batch-bytes", "lots"],
    ] {
        let output = run(&args);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(args[1]), "{args:?}: {stderr}");
    }
}
/// A CA file that cannot be read, or a CA given for a Redis URL without TLS
/// (or a MongoDB URI that turns TLS off), stops the process at once with
/// what to fix: never a silent fallback to a connection the CA was meant to
/// protect.
#[test]
fn tls_misconfiguration_stops_the_process_with_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let ca = ca.to_str().unwrap();
    for (args, needles) in [
        (
            vec!["worker", "--redis-ca-file", "/nonexistent/ca.crt"],
            vec!["MULTIVAC_REDIS_CA_FILE", "/nonexistent/ca.crt"],
        ),
        (
            vec!["server", "--mongodb-ca-file", "/nonexistent/mongo.crt"],
            vec!["MULTIVAC_MONGODB_CA_FILE", "/nonexistent/mongo.crt"],
        ),
        (
            vec![
                "worker",
                "--redis-url",
                "redis://:hidden@127.0.0.1:1",
                "--redis-ca-file",
                ca,
            ],
            vec!["MULTIVAC_REDIS_URL", "not rediss://"],
        ),
        (
            vec![
                "server",
                "--mongodb-uri",
                "mongodb://127.0.0.1:1/?tls=false",
                "--mongodb-ca-file",
                ca,
            ],
            vec!["tls=false", "MULTIVAC_MONGODB_CA_FILE"],
        ),
    ] {
        // Free ports, should the check wrongly pass and the process serve.
        let mut argv = args.clone();
        argv.extend(["--metrics-bind", "127.0.0.1:0"]);
        if args[0] == "server" {
            argv.extend(["--bind", "127.0.0.1:0"]);
        }
        let (success, stderr) = run_for_at_most(&argv, std::time::Duration::from_secs(20));
        assert!(!success, "{argv:?} did not fail: {stderr}");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{argv:?}: no {needle:?} in {stderr}"
            );
        }
        assert!(!stderr.contains("hidden"), "{stderr}");
    }
}

/// Runs `multivac ARGS`, killing it after `limit`: (exited successfully, stderr).
fn run_for_at_most(args: &[&str], limit: std::time::Duration) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_multivac"))
        .args(args)
        .env_clear()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running multivac");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.is_some_and(|s| s.success()), stderr)
}

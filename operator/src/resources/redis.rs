//! The managed Redis: one pod (strategy Recreate, so two never share the
//! volume), AOF persistence on the PVC, a password from the generated Secret.
//!
//! It never fills up silently: `maxmemory` is half its memory limit with
//! `maxmemory-policy noeviction`, so at the bound Redis refuses new data
//! (the server answers 503 `queue_full`) and deletes nothing, while the
//! workers' XREADGROUP, XACK and XDEL, which need no memory, go on draining
//! it. Half, because the other half must hold what the limit counts besides
//! the data: the copy-on-write pages of the child Redis forks to rewrite the
//! append-only file (up to the pages the writes touch while it runs),
//! allocator fragmentation, and client buffers (a 64 KiB datum per POST in
//! flight). No RDB snapshots (`save ""`): the AOF is the persistence, and a
//! failing snapshot would stop every write, acknowledgements included
//! (MISCONF).

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use super::{
    REDIS_PORT, container_security, metadata, placement, pull_secrets, resources_or,
    store_default_resources, store_pod_security, typed,
};
use multivac_contract::secret_key;

use crate::crd::{AppendFsync, ManagedStore};
use crate::error::Result;
use crate::validated::Validated;

/// Image used when `redis.managed.image` is unset.
const DEFAULT_IMAGE: &str = "redis:7.4";

/// Environment variable holding the container's memory limit in bytes (the
/// downward API), from which the start command derives `maxmemory`.
const MEMORY_LIMIT: &str = "MEMORY_LIMIT";

/// The start command. The password reaches redis-server through its stdin
/// config (`-`), so it is never on a command line that `ps` or an audit log
/// would show. It is read from the Secret when the container starts: a
/// restart takes the current one. The `multivac-probe` user may only PING,
/// without a password, so the readiness probe works whichever password a
/// rotation has reached. `maxmemory` is computed from [`MEMORY_LIMIT`] by the
/// shell.
fn start(appendfsync: AppendFsync) -> String {
    format!(
        "exec redis-server - --dir /data --port 6379 --appendonly yes --appendfsync {} --save '' \
         --maxmemory $(({MEMORY_LIMIT} / 2)) --maxmemory-policy noeviction \
         <<EOF\nrequirepass $REDIS_PASSWORD\nuser multivac-probe on nopass resetchannels -@all +ping\nEOF\n",
        appendfsync.as_str()
    )
}

/// PONG from the probe user: Redis is up and has loaded its data (PING is
/// refused with LOADING before).
const READY: &str =
    "redis-cli -p 6379 --user multivac-probe --pass none --no-auth-warning ping | grep -q PONG";

/// Deployment `<mv>-redis`.
pub(super) fn build(mv: &Validated, managed: &ManagedStore) -> Result<Deployment> {
    let password = json!({"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": mv.credentials_name(), "key": secret_key::REDIS_PASSWORD}}});
    let memory_limit = json!({"name": MEMORY_LIMIT, "valueFrom": {"resourceFieldRef": {"containerName": "redis", "resource": "limits.memory"}}});
    let appendfsync = mv
        .spec
        .redis
        .managed
        .as_ref()
        .map(|m| m.appendfsync)
        .unwrap_or_default();
    let mut deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(mv, &mv.redis_name(), "redis"),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": super::app_pod::selector(mv, "redis"),
            "template": {
                "metadata": {"labels": super::labels(mv, "redis")},
                "spec": {
                    "serviceAccountName": mv.service_account_name(),
                    "automountServiceAccountToken": false,
                    "securityContext": store_pod_security(),
                    "imagePullSecrets": pull_secrets(mv),
                    "containers": [{
                        "name": "redis",
                        "image": managed.image.as_deref().unwrap_or(DEFAULT_IMAGE),
                        "command": ["sh", "-c", start(appendfsync)],
                        "env": [password, memory_limit],
                        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
                        "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10, "failureThreshold": 3},
                        "readinessProbe": {
                            "exec": {"command": ["sh", "-c", READY]},
                            "periodSeconds": 5, "timeoutSeconds": 2,
                        },
                        "resources": resources_or(&managed.resources, store_default_resources())?,
                        "securityContext": container_security(),
                        "volumeMounts": [
                            {"name": "data", "mountPath": "/data"},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": super::pvc::name(mv, "redis")}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
        },
    });
    placement::place(&mut deployment, &managed.placement)?;
    typed(deployment)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;

    #[test]
    fn redis_runs_as_its_own_user_with_aof_and_a_hidden_password() {
        let m = mv(json!({"image": "x", "imagePullSecrets": [{"name": "reg"}]}));
        assert_eq!(
            json_of(&build(&validated(&m), &m.spec.redis.managed.clone().unwrap().store).unwrap()),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "mv-redis", "namespace": "ns", "labels": labels("redis"), "ownerReferences": owner()},
                "spec": {
                    "replicas": 1,
                    "strategy": {"type": "Recreate"},
                    "selector": {"matchLabels": {
                        "app.kubernetes.io/name": "multivac",
                        "app.kubernetes.io/instance": "mv",
                        "app.kubernetes.io/component": "redis",
                    }},
                    "template": {
                        "metadata": {"labels": labels("redis")},
                        "spec": {
                            "serviceAccountName": "mv-multivac",
                            "automountServiceAccountToken": false,
                            "securityContext": {
                                "runAsNonRoot": true, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999,
                                "fsGroupChangePolicy": "OnRootMismatch",
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "imagePullSecrets": [{"name": "reg"}],
                            "containers": [{
                                "name": "redis",
                                "image": "redis:7.4",
                                "command": ["sh", "-c", "exec redis-server - --dir /data --port 6379 --appendonly yes --appendfsync always --save '' --maxmemory $((MEMORY_LIMIT / 2)) --maxmemory-policy noeviction <<EOF\nrequirepass $REDIS_PASSWORD\nuser multivac-probe on nopass resetchannels -@all +ping\nEOF\n"],
                                "env": [
                                    {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "mv-credentials", "key": "redis-password"}}},
                                    {"name": "MEMORY_LIMIT", "valueFrom": {"resourceFieldRef": {"containerName": "redis", "resource": "limits.memory"}}},
                                ],
                                "ports": [{"name": "redis", "containerPort": 6379, "protocol": "TCP"}],
                                "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10, "failureThreshold": 3},
                                "readinessProbe": {
                                    "exec": {"command": ["sh", "-c", "redis-cli -p 6379 --user multivac-probe --pass none --no-auth-warning ping | grep -q PONG"]},
                                    "periodSeconds": 5, "timeoutSeconds": 2,
                                },
                                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": true,
                                    "runAsNonRoot": true,
                                    "seccompProfile": {"type": "RuntimeDefault"},
                                },
                                "volumeMounts": [
                                    {"name": "data", "mountPath": "/data"},
                                    {"name": "tmp", "mountPath": "/tmp"},
                                ],
                            }],
                            "volumes": [
                                {"name": "data", "persistentVolumeClaim": {"claimName": "mv-redis-data"}},
                                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                            ],
                        },
                    },
                },
            })
        );
    }

    #[test]
    fn appendfsync_follows_the_spec() {
        for (appendfsync, flag) in [
            ("always", "--appendfsync always "),
            ("everysec", "--appendfsync everysec "),
        ] {
            let m = mv(json!({"image": "x", "redis": {"managed": {"appendfsync": appendfsync}}}));
            let built = json_of(
                &build(&validated(&m), &m.spec.redis.managed.clone().unwrap().store).unwrap(),
            );
            let command = built["spec"]["template"]["spec"]["containers"][0]["command"][2]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(command.contains(flag), "{command}");
        }
    }

    /// The start command as the image's shell runs it: it starts redis-server
    /// with half the memory limit as maxmemory and the password on stdin
    /// only (a stand-in `redis-server` on PATH prints what it got).
    #[test]
    fn the_start_command_derives_maxmemory_and_keeps_the_password_off_the_command_line() {
        let dir = std::env::temp_dir().join(format!("multivac-redis-start-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("redis-server");
        std::fs::write(&fake, "#!/bin/sh\necho \"ARGS $*\"\ncat\n").unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&fake)
            .status()
            .unwrap();
        let output = std::process::Command::new("sh")
            .args(["-c", &start(AppendFsync::Everysec)])
            .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
            .env("MEMORY_LIMIT", "536870912")
            .env("REDIS_PASSWORD", "pw-on-stdin")
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let out = String::from_utf8(output.stdout).unwrap();
        let args = out.lines().next().unwrap();
        assert!(args.contains("--maxmemory 268435456 "), "{out}");
        assert!(args.contains("--maxmemory-policy noeviction"), "{out}");
        assert!(args.contains("--appendfsync everysec"), "{out}");
        assert!(!args.contains("pw-on-stdin"), "{out}");
        assert!(out.contains("requirepass pw-on-stdin"), "{out}");
    }
}

//! What a container definition may ask of Docker, checked at registration.
//! Every member either reaches the container (the agent maps it, see
//! `wharf-agent`'s `spec.rs`) or is refused here, naming the member: a
//! definition is never stored with a setting that nothing applies.

use crate::error::{client, CoreError};
use std::net::IpAddr;
use wharf_model::ecs::{self, NetworkMode};

/// The Linux capabilities ECS accepts in `linuxParameters.capabilities`.
pub const CAPABILITIES: &[&str] = &[
    "ALL",
    "AUDIT_CONTROL",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// tmpfs mount options ECS accepts.
pub const TMPFS_OPTIONS: &[&str] = &[
    "defaults",
    "ro",
    "rw",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "sync",
    "async",
    "dirsync",
    "remount",
    "mand",
    "nomand",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "bind",
    "rbind",
    "unbindable",
    "runbindable",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "mode",
    "uid",
    "gid",
    "nr_inodes",
    "nr_blocks",
    "mpol",
];

/// Log drivers Docker has that the agent passes on as they are; `awslogs`
/// is the agent's own (it ships the container's output to Wharf's Logs).
pub const DOCKER_LOG_DRIVERS: &[&str] = &[
    "json-file",
    "syslog",
    "journald",
    "fluentd",
    "gelf",
    "splunk",
    "none",
];

/// The sysctl namespaces Docker can set per container; `net.*` ones live
/// in the network namespace.
fn sysctl_allowed(name: &str) -> bool {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    IPC.contains(&name) || name.starts_with("fs.mqueue.") || name.starts_with("net.")
}

fn refuse(name: &str, member: &str, why: &str) -> CoreError {
    client(format!(
        "Container '{name}': {member} is not supported by Wharf {why}."
    ))
}

/// The checks of one container definition's Docker-facing members.
pub fn validate(
    def: &ecs::ContainerDefinition,
    name: &str,
    network_mode: &NetworkMode,
) -> Result<(), CoreError> {
    let awsvpc = *network_mode == NetworkMode::Awsvpc;
    // What Wharf has nowhere to take from yet, or no Docker equivalent for.
    for secret in def.secrets.iter().flatten() {
        if secret.name.is_empty() || secret.value_from.is_empty() {
            return Err(client(format!(
                "Container '{name}': each secret needs a name and a valueFrom."
            )));
        }
        if secret.name.contains('=') || secret.name.contains('\0') {
            return Err(client(format!(
                "Container '{name}': secret name '{}' cannot be an environment variable's name.",
                secret.name
            )));
        }
    }
    if def
        .environment_files
        .as_ref()
        .is_some_and(|f| !f.is_empty())
    {
        return Err(refuse(
            name,
            "environmentFiles",
            "yet: there is no S3 to read them from; use environment",
        ));
    }
    if let Some(rc) = &def.repository_credentials {
        if !rc
            .credentials_parameter
            .starts_with("arn:aws:secretsmanager:")
        {
            return Err(client(format!(
                "Container '{name}': repositoryCredentials.credentialsParameter must be the ARN of a Secrets Manager secret, not '{}'.",
                rc.credentials_parameter
            )));
        }
    }
    if def
        .resource_requirements
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        return Err(refuse(
            name,
            "resourceRequirements (GPUs, inference accelerators)",
            "yet",
        ));
    }
    if def.firelens_configuration.is_some() {
        return Err(refuse(name, "firelensConfiguration", "yet"));
    }
    if def.credential_specs.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(refuse(
            name,
            "credentialSpecs",
            "(they are for Windows containers and gMSA)",
        ));
    }
    if def.version_consistency == Some(ecs::VersionConsistency::Enabled) {
        return Err(refuse(
            name,
            "versionConsistency 'enabled' (pinning the image digest of a deployment)",
            "yet; tasks resolve the image tag when they start, as with 'disabled'",
        ));
    }
    for u in def.ulimits.iter().flatten() {
        if !u.name.is_known() {
            return Err(client(format!(
                "Invalid ulimit name '{}' for container '{name}'.",
                u.name.as_str()
            )));
        }
        if u.soft_limit < 0 || u.hard_limit < 0 || u.soft_limit > u.hard_limit {
            return Err(client(format!(
                "Invalid ulimit '{}' for container '{name}': softLimit must be at least 0 and at most hardLimit.",
                u.name.as_str()
            )));
        }
    }
    if let Some(lp) = &def.linux_parameters {
        linux_parameters(lp, def, name)?;
    }
    for ip in def.dns_servers.iter().flatten() {
        if ip.parse::<IpAddr>().is_err() {
            return Err(client(format!(
                "Invalid dnsServers entry '{ip}' for container '{name}': an IP address is expected."
            )));
        }
    }
    for (member, given) in [
        ("dnsServers", def.dns_servers.as_ref()),
        ("dnsSearchDomains", def.dns_search_domains.as_ref()),
    ] {
        if awsvpc && given.is_some_and(|g| !g.is_empty()) {
            return Err(client(format!(
                "{member} is not supported when networkMode=awsvpc (container '{name}')."
            )));
        }
    }
    if def.disable_networking == Some(true)
        && def.port_mappings.as_ref().is_some_and(|p| !p.is_empty())
    {
        return Err(client(format!(
            "Container '{name}' has portMappings and disableNetworking: a container without networking has no ports."
        )));
    }
    if def.disable_networking == Some(true) && awsvpc {
        return Err(client(format!(
            "disableNetworking is not supported when networkMode=awsvpc (container '{name}')."
        )));
    }
    for opt in def.docker_security_options.iter().flatten() {
        let kind = opt.split([':', '=']).next().unwrap_or_default();
        match kind {
            "no-new-privileges" | "apparmor" | "label" | "seccomp" => {}
            "credentialspec" => {
                return Err(refuse(
                    name,
                    "dockerSecurityOptions 'credentialspec'",
                    "(it is for Windows containers)",
                ))
            }
            _ => {
                return Err(client(format!(
                    "Invalid dockerSecurityOptions entry '{opt}' for container '{name}': expected no-new-privileges, apparmor:PROFILE, label:VALUE or seccomp:PROFILE."
                )))
            }
        }
    }
    for s in def.system_controls.iter().flatten() {
        let ns = s.namespace.as_deref().unwrap_or_default();
        if s.value.is_none() || !sysctl_allowed(ns) {
            return Err(client(format!(
                "Invalid systemControls namespace '{ns}' for container '{name}': Docker sets kernel.msg*/sem/shm*, fs.mqueue.* and net.* only, each with a value."
            )));
        }
        if ns.starts_with("net.") && *network_mode == NetworkMode::Host {
            return Err(client(format!(
                "systemControls '{ns}' of container '{name}' would change the host's network namespace: net.* is not supported when networkMode=host."
            )));
        }
    }
    if let Some(lc) = &def.log_configuration {
        if !lc.log_driver.is_known() {
            return Err(client(format!(
                "Invalid logDriver '{}' for container '{name}'.",
                lc.log_driver.as_str()
            )));
        }
        let driver = lc.log_driver.as_str();
        if driver != "awslogs" && !DOCKER_LOG_DRIVERS.contains(&driver) {
            return Err(refuse(
                name,
                &format!("log driver '{driver}'"),
                "yet (awslogs and Docker's json-file, syslog, journald, fluentd, gelf, splunk and none are)",
            ));
        }
        let options = lc.options.as_ref();
        // The agent signs the container's log calls for it.
        if let Some(region) = options.and_then(|o| o.get("awslogs-region")) {
            if driver == "awslogs" && !crate::arn::valid_region(region) {
                return Err(client(format!(
                    "Invalid awslogs-region '{region}' for container '{name}': a region is lowercase letters, digits and '-'."
                )));
            }
        }
        if let Some(mode) = options.and_then(|o| o.get("mode")) {
            if mode != "blocking" && mode != "non-blocking" {
                return Err(client(format!(
                    "Invalid log delivery mode '{mode}' for container '{name}': it must be blocking or non-blocking."
                )));
            }
            if mode == "blocking" && options.is_some_and(|o| o.contains_key("max-buffer-size")) {
                return Err(client(format!(
                    "max-buffer-size of container '{name}' needs the non-blocking log delivery mode."
                )));
            }
        }
        if lc.secret_options.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(refuse(
                name,
                "logConfiguration.secretOptions",
                "yet (secrets reach a container's environment, not its log driver's options)",
            ));
        }
    }
    if let Some(rp) = &def.restart_policy {
        if let Some(p) = rp.restart_attempt_period {
            if !(60..=1800).contains(&p) {
                return Err(client(format!(
                    "Invalid restartAttemptPeriod {p} for container '{name}': it must be between 60 and 1800 seconds."
                )));
            }
        }
        if rp.ignored_exit_codes.as_ref().is_some_and(|c| c.len() > 50) {
            return Err(client(format!(
                "Container '{name}': restartPolicy.ignoredExitCodes can hold at most 50 exit codes."
            )));
        }
    }
    Ok(())
}

fn linux_parameters(
    lp: &ecs::LinuxParameters,
    def: &ecs::ContainerDefinition,
    name: &str,
) -> Result<(), CoreError> {
    if let Some(caps) = &lp.capabilities {
        for cap in caps.add.iter().chain(caps.drop.iter()).flatten() {
            if !CAPABILITIES.contains(&cap.as_str()) {
                return Err(client(format!(
                    "Invalid capability '{cap}' in linuxParameters of container '{name}'."
                )));
            }
        }
    }
    for d in lp.devices.iter().flatten() {
        for (what, path) in [
            ("hostPath", Some(d.host_path.as_str())),
            ("containerPath", d.container_path.as_deref()),
        ] {
            if path.is_some_and(|p| !p.starts_with('/')) {
                return Err(client(format!(
                    "Invalid device {what} '{}' for container '{name}': it must be an absolute path.",
                    path.unwrap_or_default()
                )));
            }
        }
        if d.permissions.iter().flatten().any(|p| !p.is_known()) {
            return Err(client(format!(
                "Invalid device permissions for container '{name}': read, write and mknod are allowed."
            )));
        }
    }
    for t in lp.tmpfs.iter().flatten() {
        if !t.container_path.starts_with('/') {
            return Err(client(format!(
                "Invalid tmpfs containerPath '{}' for container '{name}': it must be an absolute path.",
                t.container_path
            )));
        }
        if t.size <= 0 {
            return Err(client(format!(
                "Invalid tmpfs size for container '{name}': size (MiB) must be greater than 0."
            )));
        }
        for o in t.mount_options.iter().flatten() {
            let key = o.split('=').next().unwrap_or_default();
            if !TMPFS_OPTIONS.contains(&key) {
                return Err(client(format!(
                    "Invalid tmpfs mount option '{o}' for container '{name}'."
                )));
            }
        }
    }
    if lp.shared_memory_size.is_some_and(|s| s <= 0) {
        return Err(client(format!(
            "Invalid sharedMemorySize for container '{name}': it must be greater than 0 (MiB)."
        )));
    }
    if let Some(swap) = lp.max_swap {
        if swap < 0 {
            return Err(client(format!(
                "Invalid maxSwap for container '{name}': it must be 0 (no swap) or more (MiB)."
            )));
        }
        if def.memory.is_none() {
            return Err(client(format!(
                "Container '{name}': maxSwap needs the container's hard memory limit ('memory'), to which Docker adds it."
            )));
        }
    }
    if let Some(s) = lp.swappiness {
        if !(0..=100).contains(&s) {
            return Err(client(format!(
                "Invalid swappiness {s} for container '{name}': it must be between 0 and 100."
            )));
        }
        if lp.max_swap.is_none() {
            return Err(client(format!(
                "Container '{name}': swappiness only applies with maxSwap."
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(mode: NetworkMode, def: serde_json::Value) -> Result<(), String> {
        let mut d = serde_json::json!({"name": "app", "image": "busybox", "memory": 64});
        d.as_object_mut()
            .unwrap()
            .extend(def.as_object().unwrap().clone());
        let def: ecs::ContainerDefinition = serde_json::from_value(d).unwrap();
        validate(&def, "app", &mode).map_err(|e| e.to_string())
    }

    fn bridge(def: serde_json::Value) -> Result<(), String> {
        check(NetworkMode::Bridge, def)
    }

    #[test]
    fn docker_members_that_are_well_formed_pass() {
        bridge(serde_json::json!({
            "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
            "linuxParameters": {
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
                "initProcessEnabled": true, "sharedMemorySize": 64,
                "tmpfs": [{"containerPath": "/scratch", "size": 16, "mountOptions": ["noexec", "mode=1777"]}],
                "devices": [{"hostPath": "/dev/null", "containerPath": "/dev/nothing", "permissions": ["read"]}],
                "maxSwap": 0, "swappiness": 10},
            "dnsServers": ["10.0.0.2", "fd00::1"], "dnsSearchDomains": ["example.internal"],
            "dockerSecurityOptions": ["no-new-privileges", "apparmor:docker-default"],
            "systemControls": [{"namespace": "net.ipv4.tcp_keepalive_time", "value": "500"},
                               {"namespace": "kernel.shmmax", "value": "1000000"}],
            "interactive": true, "pseudoTerminal": true,
            "restartPolicy": {"enabled": true, "ignoredExitCodes": [0], "restartAttemptPeriod": 60},
            "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "1m"}},
        }))
        .unwrap();
    }

    #[test]
    fn each_rule_names_the_member() {
        let cases = [
            (
                serde_json::json!({"secrets": [{"name": "", "valueFrom": "arn:aws:secretsmanager:us-east-1:1:secret:x"}]}),
                "each secret needs a name and a valueFrom",
            ),
            (
                serde_json::json!({"environmentFiles": [{"value": "arn:aws:s3:::b/e.env", "type": "s3"}]}),
                "environmentFiles is not supported",
            ),
            (
                serde_json::json!({"repositoryCredentials": {"credentialsParameter": "arn"}}),
                "must be the ARN of a Secrets Manager secret",
            ),
            (
                serde_json::json!({"resourceRequirements": [{"type": "GPU", "value": "1"}]}),
                "resourceRequirements",
            ),
            (
                serde_json::json!({"firelensConfiguration": {"type": "fluentbit"}}),
                "firelensConfiguration",
            ),
            (
                serde_json::json!({"credentialSpecs": ["credentialspecdomainless:arn"]}),
                "credentialSpecs",
            ),
            (
                serde_json::json!({"versionConsistency": "enabled"}),
                "versionConsistency 'enabled'",
            ),
            (
                serde_json::json!({"ulimits": [{"name": "files", "softLimit": 1, "hardLimit": 2}]}),
                "Invalid ulimit name 'files'",
            ),
            (
                serde_json::json!({"ulimits": [{"name": "nofile", "softLimit": 3, "hardLimit": 2}]}),
                "softLimit must be",
            ),
            (
                serde_json::json!({"linuxParameters": {"capabilities": {"add": ["CAP_NET_ADMIN"]}}}),
                "Invalid capability 'CAP_NET_ADMIN'",
            ),
            (
                serde_json::json!({"linuxParameters": {"devices": [{"hostPath": "dev/null"}]}}),
                "device hostPath",
            ),
            (
                serde_json::json!({"linuxParameters": {"devices": [{"hostPath": "/dev/null", "permissions": ["exec"]}]}}),
                "device permissions",
            ),
            (
                serde_json::json!({"linuxParameters": {"tmpfs": [{"containerPath": "/t", "size": 0}]}}),
                "tmpfs size",
            ),
            (
                serde_json::json!({"linuxParameters": {"tmpfs": [{"containerPath": "t", "size": 1}]}}),
                "tmpfs containerPath",
            ),
            (
                serde_json::json!({"linuxParameters": {"tmpfs": [{"containerPath": "/t", "size": 1, "mountOptions": ["huge"]}]}}),
                "tmpfs mount option 'huge'",
            ),
            (
                serde_json::json!({"linuxParameters": {"sharedMemorySize": 0}}),
                "sharedMemorySize",
            ),
            (
                serde_json::json!({"linuxParameters": {"maxSwap": -1}}),
                "maxSwap",
            ),
            (
                serde_json::json!({"linuxParameters": {"swappiness": 101, "maxSwap": 1}}),
                "swappiness 101",
            ),
            (
                serde_json::json!({"linuxParameters": {"swappiness": 1}}),
                "swappiness only applies",
            ),
            (
                serde_json::json!({"dnsServers": ["dns.example"]}),
                "dnsServers entry 'dns.example'",
            ),
            (
                serde_json::json!({"dockerSecurityOptions": ["unconfined"]}),
                "dockerSecurityOptions entry 'unconfined'",
            ),
            (
                serde_json::json!({"dockerSecurityOptions": ["credentialspec:file://x.json"]}),
                "credentialspec",
            ),
            (
                serde_json::json!({"systemControls": [{"namespace": "vm.swappiness", "value": "1"}]}),
                "namespace 'vm.swappiness'",
            ),
            (
                serde_json::json!({"systemControls": [{"namespace": "net.core.somaxconn"}]}),
                "each with a value",
            ),
            (
                serde_json::json!({"logConfiguration": {"logDriver": "awsfirelens"}}),
                "log driver 'awsfirelens'",
            ),
            (
                serde_json::json!({"logConfiguration": {"logDriver": "json-file", "secretOptions": [{"name": "k", "valueFrom": "v"}]}}),
                "secretOptions",
            ),
            (
                serde_json::json!({"restartPolicy": {"enabled": true, "restartAttemptPeriod": 30}}),
                "restartAttemptPeriod 30",
            ),
        ];
        for (def, expected) in cases {
            let err = bridge(def.clone()).expect_err(&def.to_string());
            assert!(err.contains(expected), "{def}: {err}");
            assert!(err.contains("'app'"), "{def}: names the container: {err}");
        }
        let no_memory =
            serde_json::json!({"name": "app", "image": "i", "linuxParameters": {"maxSwap": 0}});
        let def: ecs::ContainerDefinition = serde_json::from_value(no_memory).unwrap();
        assert!(validate(&def, "app", &NetworkMode::Bridge)
            .unwrap_err()
            .to_string()
            .contains("maxSwap needs"));
    }

    #[test]
    fn network_mode_decides_what_dns_and_sysctls_may_do() {
        for def in [
            serde_json::json!({"dnsServers": ["10.0.0.2"]}),
            serde_json::json!({"dnsSearchDomains": ["a.internal"]}),
            serde_json::json!({"disableNetworking": true}),
        ] {
            let err = check(NetworkMode::Awsvpc, def.clone()).unwrap_err();
            assert!(err.contains("networkMode=awsvpc"), "{def}: {err}");
            bridge(def).unwrap();
        }
        let net = serde_json::json!({"systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}]});
        assert!(check(NetworkMode::Host, net.clone())
            .unwrap_err()
            .contains("networkMode=host"));
        check(NetworkMode::Awsvpc, net).unwrap();
    }
}

//! RegisterTaskDefinition's rules: what ECS refuses, and the defaults it
//! fills in. A definition that passes here is safe for the agent to run.

use crate::arn::valid_name;
use crate::error::{client, invalid, CoreError};
use std::collections::{HashMap, HashSet};
use wharf_model::ecs::{self, ContainerCondition, NetworkMode};

/// Checks a registration and returns the task definition it describes,
/// without ARN, revision or registration time (the caller assigns those).
pub fn validate(
    req: &ecs::RegisterTaskDefinitionRequest,
) -> Result<ecs::TaskDefinition, CoreError> {
    if !valid_name(&req.family) {
        return Err(client(format!(
            "Family contains invalid characters or is too long: '{}'. Up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed.",
            req.family
        )));
    }
    if req.container_definitions.is_empty() {
        return Err(client("Container list cannot be empty."));
    }
    let network_mode = match &req.network_mode {
        None => NetworkMode::Bridge,
        Some(m) if m.is_known() => m.clone(),
        Some(m) => {
            return Err(client(format!(
                "Invalid networkMode '{}'. Valid values: {}.",
                m.as_str(),
                NetworkMode::VALUES.join(", ")
            )))
        }
    };
    let fargate = req
        .requires_compatibilities
        .iter()
        .flatten()
        .any(|c| *c == ecs::Compatibility::Fargate);
    for c in req.requires_compatibilities.iter().flatten() {
        if !c.is_known() {
            return Err(client(format!(
                "Invalid requiresCompatibilities value '{}'.",
                c.as_str()
            )));
        }
    }
    if fargate && network_mode != NetworkMode::Awsvpc {
        return Err(client("Fargate only supports network mode 'awsvpc'."));
    }
    for (member, mode) in [
        (
            "pidMode",
            req.pid_mode.as_ref().map(|m| (m.as_str(), m.is_known())),
        ),
        (
            "ipcMode",
            req.ipc_mode.as_ref().map(|m| (m.as_str(), m.is_known())),
        ),
    ] {
        match mode {
            Some((m, false)) => return Err(client(format!("Invalid {member} '{m}'."))),
            Some(("task", _)) if network_mode != NetworkMode::Awsvpc => {
                return Err(client(format!(
                    "{member} 'task' is supported by Wharf with networkMode=awsvpc only: the task's pause container holds the namespace its containers share."
                )))
            }
            _ => {}
        }
    }
    refuse_task_members(req)?;
    let task_cpu = req.cpu.as_deref().map(parse_cpu).transpose()?;
    let task_memory = req.memory.as_deref().map(parse_memory).transpose()?;
    if fargate && (task_cpu.is_none() || task_memory.is_none()) {
        return Err(client(
            "Fargate requires task definition to have 'cpu' and 'memory' values.",
        ));
    }

    let volumes: HashSet<&str> = req
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_deref().unwrap_or(""))
        .collect();
    for v in req.volumes.iter().flatten() {
        let name = v.name.as_deref().unwrap_or("");
        if !valid_name(name) {
            return Err(client(format!("Invalid volume name '{name}'.")));
        }
        // Volumes Wharf has no file system for are refused, not made local.
        for (member, given) in [
            (
                "efsVolumeConfiguration",
                v.efs_volume_configuration.is_some(),
            ),
            (
                "fsxWindowsFileServerVolumeConfiguration",
                v.fsx_windows_file_server_volume_configuration.is_some(),
            ),
            (
                "s3filesVolumeConfiguration",
                v.s3files_volume_configuration.is_some(),
            ),
            ("configuredAtLaunch", v.configured_at_launch == Some(true)),
        ] {
            if given {
                return Err(client(format!(
                    "Volume '{name}': {member} is not supported by Wharf; use a host path or a Docker volume (dockerVolumeConfiguration)."
                )));
            }
        }
        if let Some(p) = v.host.as_ref().and_then(|h| h.source_path.as_deref()) {
            if !p.starts_with('/') {
                return Err(client(format!("Invalid host sourcePath '{p}' for volume '{name}': it must be an absolute path.")));
            }
        }
    }
    if volumes.len() != req.volumes.as_ref().map_or(0, |v| v.len()) {
        return Err(client(
            "Volume names must be unique within a task definition.",
        ));
    }

    // The execution role is what reads them (ECS's words).
    let execution_role = req
        .execution_role_arn
        .as_deref()
        .is_some_and(|r| !r.is_empty());
    if !execution_role {
        let defs = &req.container_definitions;
        if defs
            .iter()
            .any(|d| d.secrets.as_ref().is_some_and(|s| !s.is_empty()))
        {
            return Err(client(
                "When you are specifying container secrets, you must also specify a value for 'executionRoleArn'.",
            ));
        }
        if defs.iter().any(|d| d.repository_credentials.is_some()) {
            return Err(client(
                "When you are specifying 'repositoryCredentials', you must also specify a value for 'executionRoleArn'.",
            ));
        }
    }

    let mut names = HashSet::new();
    let mut containers = Vec::with_capacity(req.container_definitions.len());
    for def in &req.container_definitions {
        let name = def.name.as_deref().unwrap_or("");
        if name.is_empty() {
            return Err(client("Container.name should not be null or empty."));
        }
        if !valid_name(name) {
            return Err(client(format!(
                "Container name '{name}' is invalid. Up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed."
            )));
        }
        if !names.insert(name) {
            return Err(client(format!("Duplicate container name '{name}': container names must be unique within a task definition.")));
        }
        if def.image.as_deref().unwrap_or("").trim().is_empty() {
            return Err(client("Container.image should not be null or empty."));
        }
        validate_container_resources(def, name, task_memory)?;
        validate_ports(def, name, &network_mode)?;
        crate::container_rules::validate(def, name, &network_mode)?;
        if def.links.as_ref().is_some_and(|l| !l.is_empty()) && network_mode != NetworkMode::Bridge
        {
            return Err(client(format!(
                "Links are not supported when networkMode={}. Container '{name}' has links.",
                network_mode.as_str()
            )));
        }
        for m in def.mount_points.iter().flatten() {
            let src = m.source_volume.as_deref().unwrap_or("");
            if !volumes.contains(src) {
                return Err(client(format!(
                    "Invalid 'mountPoints' setting for container '{name}': sourceVolume '{src}' is not a volume of this task definition."
                )));
            }
            if !m
                .container_path
                .as_deref()
                .is_some_and(|p| p.starts_with('/'))
            {
                return Err(client(format!(
                    "Invalid 'mountPoints' setting for container '{name}': containerPath must be an absolute path."
                )));
            }
        }
        if let Some(h) = &def.health_check {
            validate_health_check(h, name)?;
        }
        let mut c = def.clone();
        c.essential = Some(def.essential.unwrap_or(true));
        containers.push(c);
    }
    if !containers.iter().any(|c| c.essential == Some(true)) {
        return Err(client(
            "Task definition must have at least one essential container.",
        ));
    }
    validate_dependencies(&containers)?;
    for c in &containers {
        for link in c.links.iter().flatten() {
            let target = link.split(':').next().unwrap_or("");
            if !names.contains(target) {
                return Err(client(format!(
                    "Container '{}' links to '{target}', which is not a container of this task definition.",
                    c.name.as_deref().unwrap_or("")
                )));
            }
        }
    }

    let mut compatibilities = vec![ecs::Compatibility::Ec2];
    if network_mode == NetworkMode::Awsvpc && task_cpu.is_some() && task_memory.is_some() {
        compatibilities.push(ecs::Compatibility::Fargate);
    }
    Ok(ecs::TaskDefinition {
        family: Some(req.family.clone()),
        container_definitions: Some(containers),
        task_role_arn: req.task_role_arn.clone(),
        execution_role_arn: req.execution_role_arn.clone(),
        network_mode: Some(network_mode),
        volumes: Some(req.volumes.clone().unwrap_or_default()),
        placement_constraints: Some(req.placement_constraints.clone().unwrap_or_default()),
        requires_compatibilities: req.requires_compatibilities.clone(),
        compatibilities: Some(compatibilities),
        cpu: req.cpu.clone(),
        memory: req.memory.clone(),
        pid_mode: req.pid_mode.clone(),
        ipc_mode: req.ipc_mode.clone(),
        proxy_configuration: req.proxy_configuration.clone(),
        runtime_platform: req.runtime_platform.clone(),
        ephemeral_storage: req.ephemeral_storage.clone(),
        status: Some(ecs::TaskDefinitionStatus::Active),
        requires_attributes: Some(vec![]),
        ..Default::default()
    })
}

/// The value of the `ecs.cpu-architecture` attribute of hosts that run
/// `arch` (as the ECS agent reports it).
pub fn ecs_architecture(arch: &ecs::CPUArchitecture) -> &'static str {
    match arch {
        ecs::CPUArchitecture::Arm64 => "arm64",
        _ => "x86_64",
    }
}

/// Task-level members Wharf has nothing to apply with, refused by name.
fn refuse_task_members(req: &ecs::RegisterTaskDefinitionRequest) -> Result<(), CoreError> {
    let refuse =
        |member: &str, why: &str| Err(client(format!("{member} is not supported by Wharf{why}.")));
    if req.proxy_configuration.is_some() {
        return refuse(
            "proxyConfiguration",
            " (App Mesh is retired; Service Connect is planned)",
        );
    }
    if req
        .inference_accelerators
        .as_ref()
        .is_some_and(|a| !a.is_empty())
    {
        return refuse("inferenceAccelerators", "");
    }
    if req.trusted_execution_configuration.is_some() {
        return refuse("trustedExecutionConfiguration", "");
    }
    if req.enable_fault_injection == Some(true) {
        return refuse("enableFaultInjection", " yet");
    }
    if req.ephemeral_storage.is_some() {
        return refuse(
            "ephemeralStorage",
            ": it sizes Fargate's task storage, and Wharf's tasks use their host's disk",
        );
    }
    if let Some(p) = &req.runtime_platform {
        if let Some(os) = &p.operating_system_family {
            if os.as_str() != "LINUX" {
                return refuse(
                    &format!("operatingSystemFamily '{}'", os.as_str()),
                    ", which runs Linux containers only",
                );
            }
        }
        if let Some(arch) = p.cpu_architecture.as_ref().filter(|a| !a.is_known()) {
            return Err(client(format!(
                "Invalid cpuArchitecture '{}'. Valid values: X86_64, ARM64.",
                arch.as_str()
            )));
        }
    }
    Ok(())
}

const MAX_CONTAINER_CPU: i32 = 10240 * 1024;
const MIN_CONTAINER_MEMORY: i32 = 6;

fn validate_container_resources(
    def: &ecs::ContainerDefinition,
    name: &str,
    task_memory: Option<i64>,
) -> Result<(), CoreError> {
    if def.memory.is_none() && def.memory_reservation.is_none() && task_memory.is_none() {
        return Err(client(format!(
            "Invalid setting for container '{name}'. At least one of 'memory' or 'memoryReservation' must be specified."
        )));
    }
    for (field, v) in [
        ("memory", def.memory),
        ("memoryReservation", def.memory_reservation),
    ] {
        if let Some(v) = v {
            if v < MIN_CONTAINER_MEMORY {
                return Err(client(format!(
                    "Invalid '{field}' setting for container '{name}'. The minimum amount of memory for a container is {MIN_CONTAINER_MEMORY} MiB; {v} was given."
                )));
            }
        }
    }
    if let (Some(hard), Some(soft)) = (def.memory, def.memory_reservation) {
        if soft > hard {
            return Err(client(format!(
                "Invalid 'memoryReservation' setting for container '{name}'. The memory reservation ({soft} MiB) must be less than or equal to the memory limit ({hard} MiB)."
            )));
        }
    }
    if def
        .cpu
        .is_some_and(|c| !(0..=MAX_CONTAINER_CPU).contains(&c))
    {
        return Err(client(format!(
            "Invalid 'cpu' setting for container '{name}'."
        )));
    }
    Ok(())
}

fn validate_ports(
    def: &ecs::ContainerDefinition,
    name: &str,
    mode: &NetworkMode,
) -> Result<(), CoreError> {
    for p in def.port_mappings.iter().flatten() {
        let Some(cp) = p.container_port else {
            if p.container_port_range.is_some() {
                return Err(client(
                    "containerPortRange is not supported by Wharf yet; use containerPort.",
                ));
            }
            return Err(client(format!(
                "Invalid 'portMappings' setting for container '{name}': containerPort is required."
            )));
        };
        if !(1..=65535).contains(&cp) {
            return Err(client(format!("Invalid containerPort {cp} for container '{name}': it must be between 1 and 65535.")));
        }
        if let Some(proto) = &p.protocol {
            if !proto.is_known() {
                return Err(client(format!(
                    "Invalid protocol '{}' in portMappings of container '{name}'.",
                    proto.as_str()
                )));
            }
        }
        match (mode, p.host_port) {
            (_, Some(hp)) if !(0..=65535).contains(&hp) => {
                return Err(client(format!(
                    "Invalid hostPort {hp} for container '{name}'."
                )));
            }
            (NetworkMode::Host | NetworkMode::Awsvpc, Some(hp)) if hp != 0 && hp != cp => {
                return Err(client(format!(
                    "When networkMode={}, containerPort and hostPort must match: container '{name}' maps {cp} to {hp}.",
                    mode.as_str()
                )));
            }
            (NetworkMode::None, _) => {
                return Err(client(format!(
                    "Port mappings are not supported when networkMode=none (container '{name}')."
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

fn validate_health_check(h: &ecs::HealthCheck, name: &str) -> Result<(), CoreError> {
    let first = h.command.first().map(String::as_str);
    if !matches!(first, Some("CMD") | Some("CMD-SHELL") | Some("NONE"))
        || (first != Some("NONE") && h.command.len() < 2)
    {
        return Err(client(format!(
            "Invalid healthCheck for container '{name}': command must start with CMD or CMD-SHELL followed by the command."
        )));
    }
    for (field, v, lo, hi) in [
        ("interval", h.interval, 5, 300),
        ("timeout", h.timeout, 2, 120),
        ("retries", h.retries, 1, 10),
        ("startPeriod", h.start_period, 0, 300),
    ] {
        if let Some(v) = v {
            if !(lo..=hi).contains(&v) {
                return Err(client(format!(
                    "Invalid healthCheck {field} {v} for container '{name}': it must be between {lo} and {hi}."
                )));
            }
        }
    }
    Ok(())
}

/// dependsOn must name containers of this definition and must not loop.
fn validate_dependencies(containers: &[ecs::ContainerDefinition]) -> Result<(), CoreError> {
    let by_name: HashMap<&str, &ecs::ContainerDefinition> = containers
        .iter()
        .map(|c| (c.name.as_deref().unwrap_or(""), c))
        .collect();
    for c in containers {
        let name = c.name.as_deref().unwrap_or("");
        for d in c.depends_on.iter().flatten() {
            if !d.condition.is_known() {
                return Err(client(format!(
                    "Invalid dependsOn condition '{}' for container '{name}'.",
                    d.condition.as_str()
                )));
            }
            let Some(target) = by_name.get(d.container_name.as_str()) else {
                return Err(client(format!(
                    "Container '{name}' depends on container '{}', which is not in the task definition.",
                    d.container_name
                )));
            };
            if d.condition == ContainerCondition::Healthy && target.health_check.is_none() {
                return Err(client(format!(
                    "Container '{name}' depends on '{}' being HEALTHY, but that container has no healthCheck.",
                    d.container_name
                )));
            }
            if matches!(
                d.condition,
                ContainerCondition::Complete | ContainerCondition::Success
            ) && target.essential == Some(true)
            {
                return Err(client(format!(
                    "Container '{name}' depends on '{}' to {}, but an essential container cannot be a {} dependency.",
                    d.container_name,
                    d.condition.as_str(),
                    d.condition.as_str()
                )));
            }
        }
    }
    start_order(containers).map(|_| ())
}

/// Containers in an order where each comes after everything it depends on
/// (stop in reverse). Errors on a dependency cycle.
pub fn start_order(containers: &[ecs::ContainerDefinition]) -> Result<Vec<String>, CoreError> {
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c.name.as_deref().unwrap_or(""))
        .collect();
    let mut done: Vec<String> = Vec::with_capacity(names.len());
    let mut remaining: Vec<&ecs::ContainerDefinition> = containers.iter().collect();
    while !remaining.is_empty() {
        let before = remaining.len();
        remaining.retain(|c| {
            let ready = c
                .depends_on
                .iter()
                .flatten()
                .all(|d| done.contains(&d.container_name));
            if ready {
                done.push(c.name.clone().unwrap_or_default());
            }
            !ready
        });
        if remaining.len() == before {
            let cycle: Vec<&str> = remaining
                .iter()
                .map(|c| c.name.as_deref().unwrap_or(""))
                .collect();
            return Err(client(format!(
                "Container dependencies form a cycle among: {}.",
                cycle.join(", ")
            )));
        }
    }
    Ok(done)
}

/// The largest task-level cpu (units) or memory (MiB): what ECS carries as
/// an integer (a container's `cpu`, an instance's CPU resource), so sums of
/// them stay far from overflow ("1e300 vcpu" parsed to i64::MAX).
pub const MAX_TASK_SIZE: i64 = i32::MAX as i64;

/// Task-level cpu: "256", "1024", "1 vCPU", "0.25 vcpu" → CPU units.
pub fn parse_cpu(s: &str) -> Result<i64, CoreError> {
    let t = s.trim().to_ascii_lowercase();
    let v = if let Some(n) = t.strip_suffix("vcpu") {
        n.trim()
            .parse::<f64>()
            .ok()
            .map(|f| (f * 1024.0).round() as i64)
    } else {
        t.parse::<i64>().ok()
    };
    v.filter(|v| (1..=MAX_TASK_SIZE).contains(v))
        .ok_or_else(|| client(format!("Invalid 'cpu' setting for task: '{s}'.")))
}

/// Task-level memory: "512", "1 GB", "0.5gb" → MiB.
pub fn parse_memory(s: &str) -> Result<i64, CoreError> {
    let t = s.trim().to_ascii_lowercase();
    let v = if let Some(n) = t.strip_suffix("gb") {
        n.trim()
            .parse::<f64>()
            .ok()
            .map(|f| (f * 1024.0).round() as i64)
    } else if let Some(n) = t.strip_suffix("mb").or_else(|| t.strip_suffix("mib")) {
        n.trim().parse::<i64>().ok()
    } else {
        t.parse::<i64>().ok()
    };
    v.filter(|v| (6..=MAX_TASK_SIZE).contains(v))
        .ok_or_else(|| client(format!("Invalid 'memory' setting for task: '{s}'.")))
}

/// Checks overrides against the definition: they may only name its containers.
pub fn validate_overrides(
    td: &ecs::TaskDefinition,
    o: &ecs::TaskOverride,
) -> Result<(), CoreError> {
    if o.inference_accelerator_overrides
        .as_ref()
        .is_some_and(|a| !a.is_empty())
    {
        return Err(invalid(
            "inferenceAcceleratorOverrides is not supported by Wharf.",
        ));
    }
    if o.ephemeral_storage.is_some() {
        return Err(invalid(
            "The ephemeralStorage override is not supported by Wharf: it sizes Fargate's task storage, and Wharf's tasks use their host's disk.",
        ));
    }
    for co in o.container_overrides.iter().flatten() {
        let name = co.name.as_deref().unwrap_or("");
        if co.environment_files.as_ref().is_some_and(|f| !f.is_empty()) {
            return Err(invalid(format!(
                "Override for container '{name}': environmentFiles is not supported by Wharf yet: there is no S3 to read them from; use environment."
            )));
        }
        if co
            .resource_requirements
            .as_ref()
            .is_some_and(|r| !r.is_empty())
        {
            return Err(invalid(format!(
                "Override for container '{name}': resourceRequirements (GPUs, inference accelerators) is not supported by Wharf yet."
            )));
        }
        // As a registration's: a negative cpu or memory would be summed
        // into what the task reserves on its host.
        if co
            .cpu
            .is_some_and(|c| !(0..=MAX_CONTAINER_CPU).contains(&c))
        {
            return Err(invalid(format!(
                "Invalid 'cpu' override for container '{name}'."
            )));
        }
        for (field, v) in [
            ("memory", co.memory),
            ("memoryReservation", co.memory_reservation),
        ] {
            if v.is_some_and(|v| v < MIN_CONTAINER_MEMORY) {
                return Err(invalid(format!(
                    "Invalid '{field}' override for container '{name}': the minimum is {MIN_CONTAINER_MEMORY} MiB."
                )));
            }
        }
        let known = td
            .container_definitions
            .iter()
            .flatten()
            .any(|c| c.name.as_deref() == Some(name));
        if !known {
            return Err(invalid(format!(
                "Override for container named {name} is not a container in the TaskDefinition."
            )));
        }
    }
    if let Some(cpu) = &o.cpu {
        parse_cpu(cpu).map_err(|e| invalid(e.to_string()))?;
    }
    if let Some(m) = &o.memory {
        parse_memory(m).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(())
}

/// The task role a task runs with: its override's, else its definition's.
pub fn task_role<'a>(td: &'a ecs::TaskDefinition, o: &'a ecs::TaskOverride) -> Option<&'a str> {
    o.task_role_arn
        .as_deref()
        .or(td.task_role_arn.as_deref())
        .filter(|r| !r.is_empty())
}

/// The task's execution role: the override's, else the definition's.
pub fn execution_role<'a>(
    td: &'a ecs::TaskDefinition,
    o: &'a ecs::TaskOverride,
) -> Option<&'a str> {
    o.execution_role_arn
        .as_deref()
        .or(td.execution_role_arn.as_deref())
        .filter(|r| !r.is_empty())
}

/// The definition's containers with the task's overrides applied.
pub fn effective_containers(
    td: &ecs::TaskDefinition,
    o: &ecs::TaskOverride,
) -> Vec<ecs::ContainerDefinition> {
    let mut out = td.container_definitions.clone().unwrap_or_default();
    for co in o.container_overrides.iter().flatten() {
        let Some(c) = out.iter_mut().find(|c| c.name == co.name) else {
            continue;
        };
        if co.command.is_some() {
            c.command = co.command.clone();
        }
        if let Some(env) = &co.environment {
            let mut merged = c.environment.clone().unwrap_or_default();
            for kv in env {
                merged.retain(|e| e.name != kv.name);
                merged.push(kv.clone());
            }
            c.environment = Some(merged);
        }
        if co.cpu.is_some() {
            c.cpu = co.cpu;
        }
        if co.memory.is_some() {
            c.memory = co.memory;
        }
        if co.memory_reservation.is_some() {
            c.memory_reservation = co.memory_reservation;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> ecs::RegisterTaskDefinitionRequest {
        serde_json::from_value(json).unwrap()
    }

    fn web() -> serde_json::Value {
        serde_json::json!({
            "family": "web",
            "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 64,
                "portMappings": [{"containerPort": 80, "hostPort": 0}]}]
        })
    }

    fn err(mut j: serde_json::Value, f: impl FnOnce(&mut serde_json::Value)) -> String {
        f(&mut j);
        validate(&req(j)).unwrap_err().to_string()
    }

    #[test]
    fn fills_defaults() {
        let td = validate(&req(web())).unwrap();
        assert_eq!(td.network_mode, Some(NetworkMode::Bridge));
        assert_eq!(
            td.container_definitions.as_ref().unwrap()[0].essential,
            Some(true)
        );
        assert_eq!(td.compatibilities, Some(vec![ecs::Compatibility::Ec2]));
        assert_eq!(td.status, Some(ecs::TaskDefinitionStatus::Active));
    }

    #[test]
    fn refuses_bad_definitions() {
        assert!(err(web(), |j| j["containerDefinitions"][0]
            .as_object_mut()
            .unwrap()
            .remove("image")
            .map(|_| ())
            .unwrap())
        .contains("image"));
        assert!(
            err(web(), |j| j["containerDefinitions"][0]["memory"] = 4.into()).contains("6 MiB")
        );
        assert!(err(web(), |j| j["networkMode"] = "bogus".into()).contains("networkMode"));
        assert!(err(web(), |j| {
            let c = j["containerDefinitions"][0].clone();
            j["containerDefinitions"].as_array_mut().unwrap().push(c);
        })
        .contains("Duplicate container name 'app'"));
        assert!(err(web(), |j| j["containerDefinitions"][0]["dependsOn"] =
            serde_json::json!([{"containerName": "db", "condition": "START"}]))
        .contains("'db', which is not in the task definition"));
        assert!(err(web(), |j| j["family"] = "bad name".into()).contains("Family"));
        assert!(err(web(), |j| {
            j["networkMode"] = "host".into();
            j["containerDefinitions"][0]["portMappings"][0]["hostPort"] = 8080.into();
        })
        .contains("must match"));
        assert!(err(web(), |j| j["containerDefinitions"][0]["essential"] =
            false.into())
        .contains("essential"));
        assert!(err(web(), |j| j["pidMode"] = "task".into()).contains("networkMode=awsvpc only"));
        assert!(err(web(), |j| j["volumes"] = serde_json::json!([
            {"name": "shared", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]))
        .contains("efsVolumeConfiguration is not supported"));
        for (member, value, expected) in [
            (
                "proxyConfiguration",
                serde_json::json!({"containerName": "web"}),
                "proxyConfiguration is not supported",
            ),
            (
                "inferenceAccelerators",
                serde_json::json!([{"deviceName": "a", "deviceType": "eia2.medium"}]),
                "inferenceAccelerators",
            ),
            (
                "enableFaultInjection",
                serde_json::json!(true),
                "enableFaultInjection",
            ),
            (
                "ephemeralStorage",
                serde_json::json!({"sizeInGiB": 30}),
                "ephemeralStorage",
            ),
            (
                "runtimePlatform",
                serde_json::json!({"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE"}),
                "Linux containers only",
            ),
            (
                "runtimePlatform",
                serde_json::json!({"cpuArchitecture": "RISCV"}),
                "Invalid cpuArchitecture 'RISCV'",
            ),
        ] {
            let got = err(web(), |j| j[member] = value.clone());
            assert!(got.contains(expected), "{member}: {got}");
        }
        assert!(err(web(), |j| j["ipcMode"] = "task".into()).contains("networkMode=awsvpc only"));
        assert!(err(web(), |j| j["ipcMode"] = "shared".into()).contains("Invalid ipcMode 'shared'"));
    }

    #[test]
    fn dependency_order_and_cycles() {
        let mut j = web();
        j["containerDefinitions"] = serde_json::json!([
            {"name": "app", "image": "x", "memory": 8, "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]},
            {"name": "init", "image": "x", "memory": 8, "essential": false}
        ]);
        let td = validate(&req(j.clone())).unwrap();
        assert_eq!(
            start_order(td.container_definitions.as_ref().unwrap()).unwrap(),
            vec!["init", "app"]
        );
        j["containerDefinitions"][1]["dependsOn"] =
            serde_json::json!([{"containerName": "app", "condition": "START"}]);
        assert!(validate(&req(j)).unwrap_err().to_string().contains("cycle"));
    }

    #[test]
    fn parses_task_sizes() {
        assert_eq!(parse_cpu("256").unwrap(), 256);
        assert_eq!(parse_cpu("0.5 vCPU").unwrap(), 512);
        assert_eq!(parse_memory("1 GB").unwrap(), 1024);
        assert_eq!(parse_memory("512").unwrap(), 512);
        assert!(parse_memory("lots").is_err());
    }

    #[test]
    fn absurd_sizes_are_refused_not_saturated() {
        // These parsed to i64::MAX (a saturating float cast) and were summed.
        for cpu in [
            "1e300 vcpu",
            "inf vcpu",
            "9223372036854775807",
            "2147483648",
        ] {
            assert!(parse_cpu(cpu).is_err(), "{cpu}");
        }
        for memory in ["1e30 GB", "9223372036854775807 MiB", "2147483648"] {
            assert!(parse_memory(memory).is_err(), "{memory}");
        }
        assert_eq!(parse_cpu("2147483647").unwrap(), MAX_TASK_SIZE);
        let td = validate(&req(web())).unwrap();
        let overrides = |o: serde_json::Value| -> ecs::TaskOverride {
            serde_json::from_value(serde_json::json!({"containerOverrides": [o]})).unwrap()
        };
        for o in [
            serde_json::json!({"name": "app", "cpu": -1}),
            serde_json::json!({"name": "app", "cpu": i32::MAX}),
            serde_json::json!({"name": "app", "memory": i32::MIN}),
            serde_json::json!({"name": "app", "memoryReservation": 0}),
        ] {
            let e = validate_overrides(&td, &overrides(o.clone())).unwrap_err();
            assert_eq!(e.code(), "InvalidParameterException", "{o}");
        }
        let ok = overrides(serde_json::json!({"name": "app", "cpu": 0, "memory": 6}));
        assert!(validate_overrides(&td, &ok).is_ok());
    }

    #[test]
    fn overrides_nothing_applies_are_refused_by_name() {
        let td = validate(&req(web())).unwrap();
        for (o, expected) in [
            (
                serde_json::json!({"containerOverrides": [{"name": "app", "environmentFiles": [{"value": "arn:aws:s3:::b/e", "type": "s3"}]}]}),
                "environmentFiles",
            ),
            (
                serde_json::json!({"containerOverrides": [{"name": "app", "resourceRequirements": [{"type": "GPU", "value": "1"}]}]}),
                "resourceRequirements",
            ),
            (
                serde_json::json!({"inferenceAcceleratorOverrides": [{"deviceName": "d", "deviceType": "t"}]}),
                "inferenceAcceleratorOverrides",
            ),
            (
                serde_json::json!({"ephemeralStorage": {"sizeInGiB": 40}}),
                "ephemeralStorage",
            ),
        ] {
            let o: ecs::TaskOverride = serde_json::from_value(o).unwrap();
            let e = validate_overrides(&td, &o).unwrap_err();
            assert!(e.to_string().contains(expected), "{e}");
            assert_eq!(e.code(), "InvalidParameterException");
        }
    }
}

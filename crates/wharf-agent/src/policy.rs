//! What a host lets its tasks do: the operator's switches that keep API
//! users from becoming root on the host, as the ECS agent's
//! `ECS_DISABLE_PRIVILEGED`. The agent checks a task against them before it
//! creates anything for it; a refused task fails to start and says why.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use wharf_model::ecs;

/// The switch names a refusal cites (the agent's environment variables).
const PRIVILEGED_SWITCH: &str = "ECS_DISABLE_PRIVILEGED";
const ALLOWLIST_SWITCH: &str = "WHARF_HOST_VOLUME_ALLOWLIST";

/// Filesystem types the local volume driver mounts from memory or the
/// network: their `device` option names no host path (unless `o` binds).
const NOT_HOST_FILESYSTEMS: [&str; 5] = ["tmpfs", "nfs", "nfs4", "cifs", "smb3"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPolicy {
    /// Refuse tasks with a privileged container.
    pub disable_privileged: bool,
    /// The host directories a task volume may bind-mount (each, or any path
    /// beneath it). `None`: any path, `Some(vec![])`: none.
    pub host_volume_allowlist: Option<Vec<PathBuf>>,
}

/// The capabilities Docker gives every container: adding one is a no-op.
const DOCKER_DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// What in `d` (of task `td`) would give it a privileged container's reach.
fn escalation(td: &ecs::TaskDefinition, d: &ecs::ContainerDefinition) -> Option<String> {
    let lp = d.linux_parameters.as_ref();
    let added = lp
        .and_then(|l| l.capabilities.as_ref())
        .and_then(|c| c.add.as_ref())
        .into_iter()
        .flatten()
        .find(|c| !DOCKER_DEFAULT_CAPABILITIES.contains(&c.trim_start_matches("CAP_")));
    if let Some(cap) = added {
        return Some(format!("the capability {cap}"));
    }
    if lp
        .and_then(|l| l.devices.as_ref())
        .is_some_and(|d| !d.is_empty())
    {
        return Some("a host device".into());
    }
    if td.pid_mode == Some(ecs::PidMode::Host) {
        return Some("the host's PID namespace (pidMode host)".into());
    }
    if td.ipc_mode == Some(ecs::IpcMode::Host) {
        return Some("the host's IPC namespace (ipcMode host)".into());
    }
    d.docker_security_options
        .iter()
        .flatten()
        .find(|o| o.as_str() != "no-new-privileges")
        .map(|o| format!("the security option {o}"))
}

/// Why the host refuses a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("container {container} is privileged, and this host refuses privileged containers ({PRIVILEGED_SWITCH})")]
    Privileged { container: String },
    /// A setting that gives a container what `privileged` would (a
    /// capability beyond Docker's defaults, a host device, the host's PID
    /// or IPC namespace, confinement turned off).
    #[error("container {container} asks for {what}, which this host refuses as it refuses privileged containers ({PRIVILEGED_SWITCH})")]
    Escalates { container: String, what: String },
    #[error("volume {volume}: {origin} {path} {problem} ({ALLOWLIST_SWITCH})")]
    HostPath {
        volume: String,
        /// What names the path: a host sourcePath or a driver option.
        origin: HostPathSource,
        path: String,
        problem: PathProblem,
    },
}

/// Where a volume names a host path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPathSource {
    /// `host.sourcePath`.
    SourcePath,
    /// The local driver's `device` option (`type=none,o=bind,device=PATH`).
    DriverDevice,
}

impl std::fmt::Display for HostPathSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostPathSource::SourcePath => "host path",
            HostPathSource::DriverDevice => "local driver device",
        })
    }
}

/// What is wrong with a host path under the allow-list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    #[error("is not an absolute path without '..', which this host requires")]
    NotNormal,
    #[error("is outside the directories this host allows")]
    Outside,
    #[error("resolves to {0}, outside the directories this host allows")]
    ResolvesOutside(String),
    #[error("cannot be resolved on this host")]
    Unresolvable,
}

/// An allow-list entry that is not an absolute path without `..`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host volume allow-list entry '{0}' must be an absolute path without '..'")]
pub struct BadAllowListEntry(pub String);

/// Parses `PATH[,PATH]`; empty entries are skipped, so an empty value
/// allows no host path at all.
pub fn parse_allowlist(s: &str) -> Result<Vec<PathBuf>, BadAllowListEntry> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| normalise(e).ok_or_else(|| BadAllowListEntry(e.to_string())))
        .collect()
}

/// The path written without `.`, repeated or trailing slashes, lexically
/// (no symlink is read). `None` if it is relative or has a `..`: what `..`
/// means depends on the symlinks before it, so it cannot be judged from the
/// text.
pub fn normalise(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether normalised `path` is `dir` or beneath it, component by
/// component (`/data-evil` is not beneath `/data`).
pub fn is_within(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

/// The normalised path as the host's kernel will follow it: its longest
/// existing ancestor with symlinks resolved, then the rest as written.
/// `None` if a component cannot be read, or is a dangling symlink.
fn resolve(path: &Path) -> Option<PathBuf> {
    let mut existing = path;
    let mut rest = vec![];
    loop {
        match std::fs::canonicalize(existing) {
            Ok(mut real) => {
                real.extend(rest.iter().rev());
                return Some(real);
            }
            // A missing component: a dangling symlink (present to lstat) would be
            // followed where Docker creates the path, so it is refused.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if std::fs::symlink_metadata(existing).is_ok() {
                    return None;
                }
                rest.push(existing.file_name()?);
                existing = existing.parent()?;
            }
            Err(_) => return None,
        }
    }
}

impl HostPolicy {
    /// Whether the host runs a task of `td` with these (effective)
    /// containers; the first container or volume refused says why.
    pub fn check(
        &self,
        td: &ecs::TaskDefinition,
        containers: &[ecs::ContainerDefinition],
    ) -> Result<(), Refusal> {
        if self.disable_privileged {
            if let Some(d) = containers.iter().find(|d| d.privileged == Some(true)) {
                return Err(Refusal::Privileged {
                    container: d.name.clone().unwrap_or_default(),
                });
            }
            for d in containers {
                if let Some(what) = escalation(td, d) {
                    return Err(Refusal::Escalates {
                        container: d.name.clone().unwrap_or_default(),
                        what,
                    });
                }
            }
        }
        for v in td.volumes.iter().flatten() {
            let sourced = [
                v.host
                    .as_ref()
                    .and_then(|h| h.source_path.as_deref())
                    .map(|p| (HostPathSource::SourcePath, p)),
                v.docker_volume_configuration
                    .as_ref()
                    .and_then(driver_host_path)
                    .map(|p| (HostPathSource::DriverDevice, p)),
            ];
            for (origin, path) in sourced.into_iter().flatten() {
                self.allows(path).map_err(|problem| Refusal::HostPath {
                    volume: v.name.clone().unwrap_or_default(),
                    origin,
                    path: path.to_string(),
                    problem,
                })?;
            }
        }
        Ok(())
    }

    /// Whether a task may bind-mount host `path`: written beneath an
    /// allowed directory, and still beneath one with symlinks resolved.
    pub fn allows(&self, path: &str) -> Result<(), PathProblem> {
        let Some(allowed) = &self.host_volume_allowlist else {
            return Ok(());
        };
        let path = normalise(path).ok_or(PathProblem::NotNormal)?;
        let dirs: Vec<PathBuf> = allowed
            .iter()
            .filter_map(|d| normalise(d.to_str()?))
            .collect();
        if !dirs.iter().any(|d| is_within(&path, d)) {
            return Err(PathProblem::Outside);
        }
        let real = resolve(&path).ok_or(PathProblem::Unresolvable)?;
        if dirs
            .iter()
            .filter_map(|d| resolve(d))
            .any(|d| is_within(&real, &d))
        {
            Ok(())
        } else {
            Err(PathProblem::ResolvesOutside(real.display().to_string()))
        }
    }
}

/// The host path a Docker volume of the local driver would mount: its
/// `device` option, unless the type is a memory or network filesystem and
/// `o` does not bind (a bind mount ignores the type). Wharf does not pass
/// driver options to Docker today; this keeps the allow-list whole if it
/// ever does.
fn driver_host_path(cfg: &ecs::DockerVolumeConfiguration) -> Option<&str> {
    if cfg.driver.as_deref().is_some_and(|d| d != "local") {
        return None;
    }
    let opts = cfg.driver_opts.as_ref()?;
    let device = opts.get("device")?;
    let binds = opts
        .get("o")
        .is_some_and(|o| o.split(',').any(|f| matches!(f.trim(), "bind" | "rbind")));
    let kind = opts.get("type").map(String::as_str).unwrap_or_default();
    (binds || !NOT_HOST_FILESYSTEMS.contains(&kind)).then_some(device.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowing(dirs: &[&str]) -> HostPolicy {
        HostPolicy {
            disable_privileged: false,
            host_volume_allowlist: Some(dirs.iter().map(PathBuf::from).collect()),
        }
    }

    fn task(td: serde_json::Value) -> (ecs::TaskDefinition, Vec<ecs::ContainerDefinition>) {
        let td: ecs::TaskDefinition = serde_json::from_value(td).expect("task definition");
        let defs = td.container_definitions.clone().unwrap_or_default();
        (td, defs)
    }

    #[test]
    fn normalises_lexically() {
        let n = |p: &str| normalise(p).map(|p| p.display().to_string());
        assert_eq!(n("/data/"), Some("/data".into()));
        assert_eq!(n("//data//x/./y/"), Some("/data/x/y".into()));
        assert_eq!(n("/"), Some("/".into()));
        assert_eq!(n("/data/../etc"), None);
        assert_eq!(n("/data/x/.."), None);
        assert_eq!(n("data/x"), None);
        assert_eq!(n("./data"), None);
        assert_eq!(n(""), None);
    }

    #[test]
    fn a_prefix_is_not_a_parent() {
        let p = allowing(&["/data"]);
        assert_eq!(p.allows("/data-evil"), Err(PathProblem::Outside));
        assert_eq!(p.allows("/dat"), Err(PathProblem::Outside));
        assert_eq!(p.allows("/"), Err(PathProblem::Outside));
        assert!(is_within(Path::new("/data/x"), Path::new("/data")));
        assert!(!is_within(Path::new("/data-evil/x"), Path::new("/data")));
    }

    #[test]
    fn allows_the_directory_and_beneath_it_however_written() {
        // Nothing here exists on the test host, so resolving changes nothing.
        let p = allowing(&["/wharf-test-none/data/", "/wharf-test-none/b"]);
        for ok in [
            "/wharf-test-none/data",
            "/wharf-test-none/data/",
            "/wharf-test-none//data/./x/y/",
            "/wharf-test-none/b/c",
        ] {
            assert_eq!(p.allows(ok), Ok(()), "{ok}");
        }
        assert_eq!(p.allows("/wharf-test-none"), Err(PathProblem::Outside));
    }

    #[test]
    fn dot_dot_and_relative_paths_are_refused() {
        let p = allowing(&["/data"]);
        for bad in [
            "/data/../etc",
            "/data/..",
            "/data/x/../../etc",
            "data",
            "./data/x",
            "",
        ] {
            assert_eq!(p.allows(bad), Err(PathProblem::NotNormal), "{bad}");
        }
    }

    #[test]
    fn no_list_allows_anything_and_an_empty_one_nothing() {
        let any = HostPolicy::default();
        assert_eq!(any.allows("/etc"), Ok(()));
        assert_eq!(any.allows("relative/../x"), Ok(()));
        let none = allowing(&[]);
        assert_eq!(none.allows("/etc"), Err(PathProblem::Outside));
        assert_eq!(none.allows("/"), Err(PathProblem::Outside));
    }

    #[test]
    fn a_symlink_out_of_an_allowed_directory_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let allowed = root.path().join("allowed");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(allowed.join("real")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, allowed.join("escape")).expect("symlink");
        std::os::unix::fs::symlink(allowed.join("real"), allowed.join("inside")).expect("symlink");
        std::os::unix::fs::symlink(root.path().join("gone"), allowed.join("dangling"))
            .expect("symlink");
        let p = allowing(&[allowed.to_str().expect("utf-8")]);
        let under = |rest: &str| format!("{}/{rest}", allowed.display());
        assert_eq!(p.allows(&under("real")), Ok(()));
        assert_eq!(p.allows(&under("inside/new/dir")), Ok(()));
        assert_eq!(p.allows(&under("not-yet/made")), Ok(()));
        let real_outside = std::fs::canonicalize(&outside).expect("canonical");
        assert_eq!(
            p.allows(&under("escape")),
            Err(PathProblem::ResolvesOutside(
                real_outside.display().to_string()
            ))
        );
        assert!(matches!(
            p.allows(&under("escape/deeper")),
            Err(PathProblem::ResolvesOutside(_))
        ));
        assert_eq!(p.allows(&under("dangling")), Err(PathProblem::Unresolvable));
    }

    #[test]
    fn parses_the_list() {
        assert_eq!(
            parse_allowlist("/data/, /srv//x ,"),
            Ok(vec![PathBuf::from("/data"), PathBuf::from("/srv/x")])
        );
        assert_eq!(parse_allowlist(""), Ok(vec![]));
        assert_eq!(
            parse_allowlist("/data,rel"),
            Err(BadAllowListEntry("rel".into()))
        );
        assert_eq!(
            parse_allowlist("/data/../etc"),
            Err(BadAllowListEntry("/data/../etc".into()))
        );
    }

    #[test]
    fn refuses_privileged_containers_when_switched_on() {
        let (td, defs) = task(serde_json::json!({
            "containerDefinitions": [
                {"name": "app", "image": "x"},
                {"name": "root", "image": "x", "privileged": true},
            ]
        }));
        assert_eq!(HostPolicy::default().check(&td, &defs), Ok(()));
        let refusal = HostPolicy {
            disable_privileged: true,
            host_volume_allowlist: None,
        }
        .check(&td, &defs)
        .expect_err("refused");
        assert_eq!(
            refusal.to_string(),
            "container root is privileged, and this host refuses privileged containers (ECS_DISABLE_PRIVILEGED)"
        );
    }

    #[test]
    fn refuses_what_privileged_would_give_when_switched_on() {
        let strict = HostPolicy {
            disable_privileged: true,
            host_volume_allowlist: None,
        };
        let container = |extra: serde_json::Value| {
            let mut d = serde_json::json!({"name": "app", "image": "x"});
            d.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            d
        };
        for (td, what) in [
            (
                serde_json::json!({"containerDefinitions": [container(serde_json::json!(
                {"linuxParameters": {"capabilities": {"add": ["SYS_ADMIN"]}}}))]}),
                "the capability SYS_ADMIN",
            ),
            (
                serde_json::json!({"containerDefinitions": [container(serde_json::json!(
                {"linuxParameters": {"capabilities": {"add": ["ALL"]}}}))]}),
                "the capability ALL",
            ),
            (
                serde_json::json!({"containerDefinitions": [container(serde_json::json!(
                {"linuxParameters": {"devices": [{"hostPath": "/dev/sda"}]}}))]}),
                "a host device",
            ),
            (
                serde_json::json!({"pidMode": "host", "containerDefinitions": [container(serde_json::json!({}))]}),
                "the host's PID namespace (pidMode host)",
            ),
            (
                serde_json::json!({"ipcMode": "host", "containerDefinitions": [container(serde_json::json!({}))]}),
                "the host's IPC namespace (ipcMode host)",
            ),
            (
                serde_json::json!({"containerDefinitions": [container(serde_json::json!(
                {"dockerSecurityOptions": ["no-new-privileges", "seccomp:unconfined"]}))]}),
                "the security option seccomp:unconfined",
            ),
        ] {
            let (td, defs) = task(td);
            assert_eq!(HostPolicy::default().check(&td, &defs), Ok(()), "{what}");
            assert_eq!(
                strict.check(&td, &defs).expect_err(what).to_string(),
                format!("container app asks for {what}, which this host refuses as it refuses privileged containers (ECS_DISABLE_PRIVILEGED)")
            );
        }
        // Docker's defaults, dropping, and no-new-privileges are no escalation.
        let (td, defs) = task(
            serde_json::json!({"containerDefinitions": [container(serde_json::json!({
            "linuxParameters": {"capabilities": {"add": ["NET_BIND_SERVICE", "CAP_CHOWN"], "drop": ["ALL"]}},
            "dockerSecurityOptions": ["no-new-privileges"]}))]}),
        );
        assert_eq!(strict.check(&td, &defs), Ok(()));
    }

    #[test]
    fn refuses_host_volumes_outside_the_list() {
        let (td, defs) = task(serde_json::json!({
            "volumes": [
                {"name": "ok", "host": {"sourcePath": "/wharf-test-none/data/x"}},
                {"name": "scratch"},
                {"name": "etc", "host": {"sourcePath": "/etc"}},
            ],
            "containerDefinitions": [{"name": "app", "image": "x"}]
        }));
        let refusal = allowing(&["/wharf-test-none/data"])
            .check(&td, &defs)
            .expect_err("refused");
        assert_eq!(
            refusal.to_string(),
            "volume etc: host path /etc is outside the directories this host allows (WHARF_HOST_VOLUME_ALLOWLIST)"
        );
        assert_eq!(
            allowing(&["/wharf-test-none/data", "/etc"]).check(&td, &defs),
            Ok(())
        );
    }

    #[test]
    fn refuses_local_driver_bind_mounts_outside_the_list() {
        let volume = |driver: Option<&str>, opts: serde_json::Value| {
            let mut cfg = serde_json::json!({"driverOpts": opts});
            if let Some(d) = driver {
                cfg["driver"] = d.into();
            }
            task(serde_json::json!({
                "volumes": [{"name": "v", "dockerVolumeConfiguration": cfg}],
                "containerDefinitions": [{"name": "app", "image": "x"}]
            }))
        };
        let p = allowing(&["/wharf-test-none/data"]);
        let bind = serde_json::json!({"type": "none", "o": "bind", "device": "/etc"});
        for driver in [None, Some("local")] {
            let (td, defs) = volume(driver, bind.clone());
            assert_eq!(
                p.check(&td, &defs).expect_err("refused").to_string(),
                "volume v: local driver device /etc is outside the directories this host allows (WHARF_HOST_VOLUME_ALLOWLIST)"
            );
        }
        // A bind ignores the type; a block device is a host path too.
        for opts in [
            serde_json::json!({"type": "tmpfs", "o": "size=1m,rbind", "device": "/"}),
            serde_json::json!({"type": "ext4", "device": "/dev/sda1"}),
        ] {
            let (td, defs) = volume(None, opts);
            assert!(p.check(&td, &defs).is_err());
        }
        // Memory, the network, another driver, or a device within the list.
        for (driver, opts) in [
            (
                None,
                serde_json::json!({"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}),
            ),
            (
                None,
                serde_json::json!({"type": "nfs", "o": "addr=10.0.0.1", "device": ":/export"}),
            ),
            (Some("rexray"), bind.clone()),
            (
                None,
                serde_json::json!({"type": "none", "o": "bind", "device": "/wharf-test-none/data/v"}),
            ),
        ] {
            let (td, defs) = volume(driver, opts);
            assert_eq!(p.check(&td, &defs), Ok(()));
        }
        let (td, defs) = volume(None, bind);
        assert_eq!(HostPolicy::default().check(&td, &defs), Ok(()));
    }
}

//! `wharf`: the command-line entry point. `up` runs everything for one
//! machine; `server` runs the control plane alone.

mod exec_cmd;
mod keys;
mod logs_cmd;
mod token_cmd;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wharf_agent::agent::{Agent, AgentConfig, PullBehavior};
use wharf_agent::client::ControlClient;
use wharf_agent::policy::{parse_allowlist, HostPolicy};
use wharf_agent::runtime::{DockerRuntime, Runtime};
use wharf_agent::sim::{SimConfig, Simulator};
use wharf_control::tls;
use wharf_control::{Control, ControlConfig};
use wharf_core::clock::SystemClock;
use wharf_core::records::MANAGED_CLUSTER;
use wharf_logs::LogStore;
use wharf_protocol::sigv4::Credentials;
use wharf_store::{DynStore, MemStore, RedbStore};

/// The control plane allocates and frees many small objects per request
/// (records, events, wire shapes) from several threads; mimalloc does that
/// with less time and less fragmentation than glibc's malloc (measured in
/// docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The development key pair `wharf up` accepts when none is configured.
const DEV_ACCESS_KEY_ID: &str = "AKIAWHARFDEVELOPMENT";
const DEV_SECRET_ACCESS_KEY: &str = "wharf-development-secret-key-do-not-use-in-production";

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "A self-hosted orchestrator that speaks the Amazon ECS API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Wharf on this machine: the API, its embedded store, and an agent
    /// that runs tasks on the local Docker Engine as cluster `default`.
    Up(ServerArgs),
    /// Run the control plane (API server) only.
    Server(ServerArgs),
    /// Run a host agent that joins a cluster of a remote control plane.
    Agent(AgentArgs),
    /// Print a task's output (containers using the awslogs log driver).
    Logs(LogsArgs),
    /// Create, list and revoke the join tokens agents register with.
    #[command(subcommand)]
    Token(token_cmd::TokenCommand),
    /// Interrupt FARGATE_SPOT tasks as Spot does: stopCode SpotInterruption,
    /// SIGTERM, and two minutes before SIGKILL; a service replaces them.
    Interrupt(InterruptArgs),
    /// Run a command in a running task's container (ECS Exec), as `docker
    /// exec` does: `wharf exec TASK [--container NAME] [-i] [-t] -- CMD...`.
    Exec(ExecArgs),
}

#[derive(Args, Clone)]
struct ExecArgs {
    /// The task's ID or ARN (run with enableExecuteCommand).
    task: String,
    /// The container to run in (needed when the task has several).
    #[arg(long)]
    container: Option<String>,
    /// Keep the command's stdin open and pass this terminal's input to it.
    #[arg(short, long)]
    interactive: bool,
    /// Give the command a TTY (this terminal in raw mode while it runs).
    #[arg(short, long)]
    tty: bool,
    #[arg(long, env = "WHARF_CLUSTER", default_value = "default")]
    cluster: String,
    #[command(flatten)]
    sign: SignArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Args, Clone)]
struct InterruptArgs {
    /// IDs or ARNs of the tasks to interrupt.
    tasks: Vec<String>,
    /// Interrupt every FARGATE_SPOT task of this service instead.
    #[arg(long, conflicts_with = "tasks")]
    service: Option<String>,
    #[arg(long, env = "WHARF_CLUSTER", default_value = "default")]
    cluster: String,
    #[command(flatten)]
    sign: SignArgs,
}

#[derive(Args, Clone)]
struct LogsArgs {
    /// The task's ID or ARN.
    task: String,
    /// Only this container's output.
    #[arg(long)]
    container: Option<String>,
    /// Keep printing new lines until the task has stopped.
    #[arg(short, long)]
    follow: bool,
    /// The task's cluster.
    #[arg(long, env = "WHARF_CLUSTER", default_value = "default")]
    cluster: String,
    #[command(flatten)]
    sign: SignArgs,
}

/// How a client of the control plane reaches it and signs its calls.
#[derive(Args, Clone)]
pub struct SignArgs {
    /// URL of the control plane.
    #[arg(
        long,
        alias = "endpoint-url",
        env = "WHARF_SERVER",
        default_value = "http://127.0.0.1:9070"
    )]
    server: String,
    /// CA certificates (PEM) to trust for an https:// server besides the
    /// system's, e.g. the one `--tls self-signed` prints.
    #[arg(long, env = "AWS_CA_BUNDLE")]
    ca_bundle: Option<PathBuf>,
    /// Access key ID to sign with.
    #[arg(long, env = "WHARF_ACCESS_KEY_ID", default_value = DEV_ACCESS_KEY_ID)]
    access_key_id: String,
    /// Secret access key to sign with.
    #[arg(long, env = "WHARF_SECRET_ACCESS_KEY", hide_env_values = true, default_value = DEV_SECRET_ACCESS_KEY)]
    secret_access_key: String,
    /// Region to sign for.
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    region: String,
}

impl SignArgs {
    fn credentials(&self) -> Credentials {
        Credentials {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
        }
    }

    pub fn client(&self) -> anyhow::Result<ControlClient> {
        Ok(ControlClient::with_ca(
            &self.server,
            self.credentials(),
            &self.region,
            self.ca_bundle.as_deref(),
        )?)
    }
}

#[derive(Args, Clone)]
struct AgentArgs {
    /// URL of the control plane.
    #[arg(long, env = "WHARF_SERVER")]
    server: String,
    /// A join token from `wharf token create` (needed the first time; the
    /// credentials it buys are kept in --data-dir). It names the cluster.
    #[arg(long, env = "WHARF_JOIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificates (PEM) to trust for an https:// server besides the
    /// system's.
    #[arg(long, env = "WHARF_CA_BUNDLE")]
    ca_bundle: Option<PathBuf>,
    /// Region to sign for.
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    region: String,
    /// Where the agent keeps its identity.
    #[arg(long, env = "WHARF_AGENT_DATA_DIR", default_value = ".wharf/agent")]
    data_dir: PathBuf,
    /// When the agent pulls images: default (pull, fall back to a cached
    /// image), always, once, prefer-cached; as the ECS agent's setting.
    #[arg(long, env = "ECS_IMAGE_PULL_BEHAVIOR", default_value = "default")]
    image_pull_behavior: PullBehavior,
    /// (agent, `up`) Where tasks' role credentials and metadata are served:
    /// the ECS agent's 169.254.170.2:80, where the SDKs look (the address is
    /// put on the loopback interface); elsewhere, tasks are given
    /// AWS_CONTAINER_CREDENTIALS_FULL_URI instead; `off` serves none, and
    /// tasks with a task role then fail to start.
    #[arg(long, env = "WHARF_TASK_CREDENTIALS_ENDPOINT", default_value = wharf_agent::endpoint::DEFAULT_ADDRESS)]
    task_credentials_endpoint: String,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Join this custom capacity provider (made with `aws ecs
    /// create-capacity-provider`): tasks placed by a capacity provider
    /// strategy that names it run on the instances that joined it.
    #[arg(long, env = "WHARF_CAPACITY_PROVIDER")]
    capacity_provider: Option<String>,
    /// Simulate this many hosts instead of running Docker: each registers
    /// as a container instance and reports its tasks RUNNING/STOPPED.
    #[arg(long, value_name = "N")]
    simulate: Option<usize>,
    /// (--simulate) vCPUs of each simulated host.
    #[arg(long, default_value_t = 4, requires = "simulate")]
    sim_cpu: i64,
    /// (--simulate) Memory of each simulated host, MiB.
    #[arg(long, default_value_t = 16_384, requires = "simulate")]
    sim_memory: i64,
}

#[derive(Args, Clone)]
struct ServerArgs {
    /// Address the ECS API listens on.
    #[arg(long, env = "WHARF_LISTEN", default_value = "127.0.0.1:9070")]
    listen: String,
    /// Where state is kept.
    #[arg(long, env = "WHARF_DATA_DIR", default_value = ".wharf")]
    data_dir: PathBuf,
    /// Keep state in memory only (lost at exit); for tests.
    #[arg(long)]
    ephemeral: bool,
    /// The key secrets and parameters are sealed with at rest (64 hex
    /// digits; give every server of one store the same file). Default:
    /// `secrets.key` in the data directory, made at first start.
    #[arg(long, env = "WHARF_SECRETS_KEY_FILE")]
    secrets_key_file: Option<PathBuf>,
    /// Access key ID clients sign with (default: a development pair, printed
    /// at start, served on loopback addresses only).
    #[arg(long, env = "WHARF_ACCESS_KEY_ID", requires = "secret_access_key")]
    access_key_id: Option<String>,
    /// Secret access key for --access-key-id.
    #[arg(
        long,
        env = "WHARF_SECRET_ACCESS_KEY",
        hide_env_values = true,
        requires = "access_key_id"
    )]
    secret_access_key: Option<String>,
    /// Access keys from a file: TOML (`[[credentials]]` tables with
    /// `access_key_id` and `secret_access_key`) or one `KEY SECRET` per line.
    #[arg(long, env = "WHARF_CREDENTIALS_FILE")]
    credentials_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(
        long,
        env = "WHARF_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "tls"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "WHARF_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// `self-signed`: serve HTTPS with a certificate signed by a local CA
    /// generated into the data directory (its path is printed).
    #[arg(long, env = "WHARF_TLS", value_parser = ["self-signed"])]
    tls: Option<String>,
    /// (`up` with --tls-cert) CA certificates the local agents trust for it
    /// (refused otherwise).
    #[arg(long)]
    ca_bundle: Option<PathBuf>,
    /// Account ID shown in ARNs.
    #[arg(long, env = "WHARF_ACCOUNT_ID", default_value = "000000000000")]
    account_id: String,
    /// The region `wharf up`'s host joins as a container instance of its
    /// `default` cluster (ECS is regional: clients signing for another
    /// region see other clusters), the one the banner names, and the one a
    /// store written before regions were kept apart moves into.
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    region: String,
    /// How long STOPPED tasks stay visible, in seconds.
    #[arg(long, default_value_t = 3600)]
    stopped_task_retention: u64,
    /// The host address load balancer listeners bind (loopback unless
    /// given; `0.0.0.0` serves every interface).
    #[arg(long, env = "WHARF_LB_BIND", default_value = "127.0.0.1")]
    lb_bind: std::net::IpAddr,
    /// (`up` only) When the local agent pulls images: default (pull, fall
    /// back to a cached image), always, once, prefer-cached.
    #[arg(long, env = "ECS_IMAGE_PULL_BEHAVIOR", default_value = "default")]
    image_pull_behavior: PullBehavior,
    /// (agent, `up`) Where tasks' role credentials and metadata are served:
    /// the ECS agent's 169.254.170.2:80, where the SDKs look (the address is
    /// put on the loopback interface); elsewhere, tasks are given
    /// AWS_CONTAINER_CREDENTIALS_FULL_URI instead; `off` serves none, and
    /// tasks with a task role then fail to start.
    #[arg(long, env = "WHARF_TASK_CREDENTIALS_ENDPOINT", default_value = wharf_agent::endpoint::DEFAULT_ADDRESS)]
    task_credentials_endpoint: String,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// What the agent refuses to run, so API users cannot become root on the
/// host; a refused task stops with TaskFailedToStart and the reason.
#[derive(Args, Clone)]
struct PolicyArgs {
    /// (agent, `up`) Refuse tasks with a privileged container, as the ECS
    /// agent's setting (true/false, 1/0, yes/no).
    #[arg(long, env = "ECS_DISABLE_PRIVILEGED", value_parser = clap::builder::BoolishValueParser::new())]
    disable_privileged: bool,
    /// (agent, `up`) The host directories task volumes may bind-mount (or
    /// paths beneath them), comma-separated; empty: none. Unset: any.
    #[arg(long, env = "WHARF_HOST_VOLUME_ALLOWLIST", value_name = "PATH[,PATH]", value_parser = parse_allowlist)]
    host_volume_allowlist: Option<::std::vec::Vec<PathBuf>>,
}

impl PolicyArgs {
    /// Whether either switch was given.
    fn is_set(&self) -> bool {
        self.disable_privileged || self.host_volume_allowlist.is_some()
    }

    fn host_policy(&self) -> HostPolicy {
        HostPolicy {
            disable_privileged: self.disable_privileged,
            host_volume_allowlist: self.host_volume_allowlist.clone(),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => serve(args, false).await,
        Command::Up(args) => serve(args, true).await,
        Command::Logs(args) => {
            let client = args.sign.client()?;
            logs_cmd::run(
                &client,
                &args.cluster,
                &args.task,
                args.container.as_deref(),
                args.follow,
            )
            .await
        }
        Command::Token(cmd) => token_cmd::run(cmd).await,
        Command::Exec(args) => {
            let client = args.sign.client()?;
            let code = exec_cmd::run(
                &client,
                exec_cmd::Exec {
                    cluster: &args.cluster,
                    task: &args.task,
                    container: args.container.as_deref(),
                    interactive: args.interactive,
                    tty: args.tty,
                    command: &args.command,
                },
            )
            .await?;
            std::process::exit(code);
        }
        Command::Interrupt(args) => {
            use wharf_core::admin_protocol::*;
            let resp: InterruptSpotTasksResponse = args
                .sign
                .client()?
                .call(
                    &format!("{TARGET_PREFIX}.{INTERRUPT_SPOT_TASKS}"),
                    &InterruptSpotTasksRequest {
                        cluster: Some(args.cluster),
                        tasks: args.tasks,
                        service: args.service,
                    },
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&resp)?);
            anyhow::ensure!(
                resp.failures.is_empty(),
                "{} task(s) could not be interrupted",
                resp.failures.len()
            );
            Ok(())
        }
        Command::Agent(args) => {
            let client = ControlClient::for_agent(
                &args.server,
                args.token.clone(),
                &args.data_dir.join("credentials.json"),
                &args.region,
                args.ca_bundle.as_deref(),
            )
            .await
            .context("the agent cannot authenticate to the control plane")?;
            let cluster = client
                .agent_cluster()
                .context("agent credentials name no cluster")?;
            if let Some(hosts) = args.simulate {
                if args.policy.is_set() {
                    anyhow::bail!(
                        "simulated hosts run no containers: --disable-privileged and --host-volume-allowlist do not apply"
                    );
                }
                let config = SimConfig {
                    cluster,
                    hosts,
                    cpu: args.sim_cpu * 1024,
                    memory: args.sim_memory,
                };
                Simulator::new(client, config).run().await?;
                return Ok(());
            }
            let runtime = connect_docker().await?;
            let endpoint = credentials_endpoint(&args.task_credentials_endpoint, &runtime).await;
            let agent = Agent::new(
                client,
                runtime,
                AgentConfig {
                    cluster,
                    state_dir: args.data_dir,
                    pull_behavior: args.image_pull_behavior,
                    managed: false,
                    policy: args.policy.host_policy(),
                    capacity_provider: args.capacity_provider,
                },
            )
            .with_endpoint(endpoint);
            Arc::new(agent).run().await;
            Ok(())
        }
    }
}

/// The task credentials and metadata endpoint the agents of this process share.
async fn credentials_endpoint(
    address: &str,
    runtime: &Arc<dyn Runtime>,
) -> Arc<wharf_agent::endpoint::Endpoint> {
    match address {
        "off" => wharf_agent::endpoint::Endpoint::disabled(
            "the task credentials endpoint is off (--task-credentials-endpoint off)",
        ),
        address => wharf_agent::endpoint::Endpoint::serve(address, runtime.clone()).await,
    }
}

async fn connect_docker() -> anyhow::Result<Arc<dyn Runtime>> {
    let docker = DockerRuntime::connect()
        .await
        .context("the agent needs the Docker Engine")?;
    Ok(Arc::new(docker))
}

/// Creates `dir` readable by its owner only: it holds the store, with
/// agents' credentials, and TLS keys.
fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// Says so when this host is still a container instance of another
/// region's `default` (`wharf up` ran for another region before): that
/// instance and its tasks stay there until it is deregistered.
async fn warn_of_instances_elsewhere(control: &Control, agent: &str, region: &str) {
    let Ok((all, _)) = wharf_control::records::list::<wharf_core::records::InstanceRecord>(
        control.store.as_ref(),
        wharf_core::records::keys::INSTANCES,
    )
    .await
    else {
        return;
    };
    for i in all.into_iter().map(|v| v.value) {
        let elsewhere = i.cluster_key().region().is_some_and(|r| r != region);
        if elsewhere && i.status != "INACTIVE" && i.agent.as_deref() == Some(agent) {
            tracing::warn!(
                instance = %i.arn,
                "this host is still a container instance of {} in {}: it joins {region} now; deregister the old one (aws ecs deregister-container-instance --region {} --cluster {} --container-instance {} --force) to stop its tasks",
                i.cluster,
                wharf_core::arn::region_of(&i.arn),
                wharf_core::arn::region_of(&i.arn),
                i.cluster,
                i.id
            );
        }
    }
}

async fn serve(args: ServerArgs, with_agent: bool) -> anyhow::Result<()> {
    // Flags that only the local agents or their TLS use are refused where
    // nothing would act on them.
    if !with_agent && args.policy.is_set() {
        anyhow::bail!("--disable-privileged and --host-volume-allowlist apply to agents: give them to `wharf up` or `wharf agent`");
    }
    if args.ca_bundle.is_some() && !(with_agent && args.tls_cert.is_some()) {
        anyhow::bail!("--ca-bundle is what `wharf up --tls-cert` gives its local agents to trust; it has no use here");
    }
    if !wharf_core::arn::valid_region(&args.region) {
        anyhow::bail!(
            "--region {} is not a region name (lowercase letters, digits and '-')",
            args.region
        );
    }
    let listen = keys::resolve_listen(&args.listen)?;
    let (root_keys, dev) = keys::root_keys(
        args.access_key_id.clone(),
        args.secret_access_key.clone(),
        args.credentials_file.as_deref(),
        DEV_ACCESS_KEY_ID,
        DEV_SECRET_ACCESS_KEY,
    )?;
    if dev {
        keys::refuse_dev_keys_off_loopback(&args.listen, &listen)?;
    }
    // Docker first: `up` without Docker fails at once, before serving anything.
    let runtime = if with_agent {
        Some(connect_docker().await?)
    } else {
        None
    };
    let sealer = match (&args.secrets_key_file, args.ephemeral) {
        (Some(path), _) => wharf_seal::Sealer::load(path)?,
        (None, true) => wharf_seal::Sealer::ephemeral(),
        (None, false) => {
            private_dir(&args.data_dir)?;
            wharf_seal::Sealer::load_or_create(&args.data_dir.join("secrets.key"))?
        }
    };
    let (store, logs): (DynStore, LogStore) = if args.ephemeral {
        (Arc::new(MemStore::new()), LogStore::in_memory()?)
    } else {
        private_dir(&args.data_dir)?;
        let path = args.data_dir.join("store.redb");
        let store = RedbStore::open(&path)
            .with_context(|| format!("cannot open store {}", path.display()))?;
        // Logs live in their own file: append-heavy and disposable, unlike cluster state.
        let logs_path = args.data_dir.join("logs.redb");
        let logs = LogStore::open_for(&logs_path, &args.region)
            .with_context(|| format!("cannot open log store {}", logs_path.display()))?;
        (Arc::new(store), logs)
    };
    let listener = tokio::net::TcpListener::bind(&listen[..])
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // TLS: the operator's certificate, or one from a local CA.
    let mut agent_ca = args.ca_bundle.clone();
    let (tls_config, self_signed_ca) = match (&args.tls_cert, &args.tls_key, args.tls.as_deref()) {
        (Some(cert), Some(key), _) => (Some(tls::server_config(cert, key)?), None),
        (_, _, Some("self-signed")) => {
            private_dir(&args.data_dir)?;
            let files = tls::self_signed(&args.data_dir.join("tls"), addr)?;
            agent_ca = Some(files.ca.clone());
            (
                Some(tls::server_config(&files.cert, &files.key)?),
                Some(files.ca),
            )
        }
        _ => (None, None),
    };
    let scheme = if tls_config.is_some() {
        "https"
    } else {
        "http"
    };
    let config = ControlConfig {
        account_id: args.account_id,
        credentials: root_keys.clone(),
        stopped_task_retention: Duration::from_secs(args.stopped_task_retention),
        tls: tls_config.is_some(),
        ..Default::default()
    };
    let lb_config = wharf_lb::LbConfig {
        bind: args.lb_bind,
        ..Default::default()
    };
    // Before anything reads the store: an older layout is moved first.
    wharf_control::migrate::run(store.as_ref(), &args.region)
        .await
        .context("cannot upgrade the store's key layout")?;
    wharf_control::check_seal_key(store.as_ref(), &sealer)
        .await
        .map_err(anyhow::Error::msg)?;
    let control = Control::new(store, Arc::new(SystemClock), config)
        .with_sealer(Arc::new(sealer))
        .with_logs(logs.clone())
        .with_lb_config(lb_config.clone());
    let data_plane = wharf_lb::dataplane::DataPlane::new(control.store.clone(), lb_config)
        .context("cannot start the load balancer's worker threads")?;
    tokio::spawn(data_plane.run());
    let clock = control.clock.clone();
    tokio::spawn(wharf_logs::retention::run(
        logs,
        Duration::from_secs(60),
        move || clock.now(),
    ));
    tokio::spawn(wharf_control::reaper::run(
        control.clone(),
        Duration::from_secs(60),
    ));
    tokio::spawn(wharf_control::task_credentials::revoke_stopped(
        control.clone(),
    ));
    tokio::spawn(wharf_control::controller::run(
        control.clone(),
        Default::default(),
    ));
    // The one place the binary talks to a person rather than a log.
    eprintln!("Wharf is serving the ECS API on {scheme}://{addr}");
    if let Some(ca) = &self_signed_ca {
        eprintln!(
            "  TLS certificate signed by the local CA {} (aws --ca-bundle {})",
            ca.display(),
            ca.display()
        );
    }
    let ca_flag = self_signed_ca
        .as_ref()
        .map(|ca| format!(" --ca-bundle {}", ca.display()))
        .unwrap_or_default();
    if dev {
        eprintln!("  development credentials, for loopback only (set WHARF_ACCESS_KEY_ID/WHARF_SECRET_ACCESS_KEY or --credentials-file to change):");
        eprintln!(
            "    export AWS_ACCESS_KEY_ID={}",
            root_keys[0].access_key_id
        );
        eprintln!(
            "    export AWS_SECRET_ACCESS_KEY={}",
            root_keys[0].secret_access_key
        );
        eprintln!("    export AWS_DEFAULT_REGION={}", args.region);
    }
    eprintln!("  aws --endpoint-url {scheme}://{addr}{ca_flag} ecs list-clusters");
    if let Some(runtime) = runtime {
        // Local agents dial the loopback address the certificate names.
        let host = match addr.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let url = format!("{scheme}://{host}:{}", addr.port());
        let endpoint = credentials_endpoint(&args.task_credentials_endpoint, &runtime).await;
        // The local host serves twice: as an EC2 container instance of
        // `default`, and as the managed capacity FARGATE tasks run on. Each
        // signs with agent credentials of its own, made here, not API keys.
        for managed in [false, true] {
            let cluster = if managed { MANAGED_CLUSTER } else { "default" };
            let creds = wharf_control::tokens::local_agent_credentials(
                &control,
                &args.region,
                cluster,
                control.clock.now(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot make the local agents' credentials: {e}"))?;
            if !managed {
                warn_of_instances_elsewhere(&control, &creds.access_key_id, &args.region).await;
            }
            let client = ControlClient::with_ca(&url, creds, &args.region, agent_ca.as_deref())?;
            let local = Agent::new(
                client,
                runtime.clone(),
                AgentConfig {
                    cluster: "default".into(),
                    state_dir: args.data_dir.join("agent"),
                    pull_behavior: args.image_pull_behavior,
                    managed,
                    policy: args.policy.host_policy(),
                    capacity_provider: None,
                },
            )
            .with_endpoint(endpoint.clone());
            tokio::spawn(Arc::new(local).run());
        }
    }
    wharf_control::serve::serve(
        listener,
        wharf_control::http::router(control),
        tls_config,
        Default::default(),
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await?;
    Ok(())
}

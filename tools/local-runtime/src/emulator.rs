//! The emulators a local stack runs against: moto server for AWS's APIs and localstripe
//! for Stripe's, from the project's venv, each started as a child process on a free
//! loopback port and stopped with it, and the SDK configuration that talks to moto.

use crate::http_client::HttpClient;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The emulator could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Creating the venv or installing moto failed.
    #[error("setting up moto server failed: {0}")]
    Setup(String),
    /// The server did not come up.
    #[error("moto server did not start: {0}")]
    Start(String),
}

/// A running (or attached) emulator.
pub struct Emulator {
    /// Base URL for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    /// Where the emulator writes its log, when we started it.
    pub log: Option<PathBuf>,
    child: Option<Child>,
}

/// The pinned requirement of `package` in scripts/requirements.txt.
fn requirement(root: &Path, package: &str) -> String {
    std::fs::read_to_string(root.join("scripts/requirements.txt"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(package))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| package.to_owned())
}

async fn run(command: &mut Command, what: &str) -> Result<(), EmulatorError> {
    let status = command
        .status()
        .await
        .map_err(|e| EmulatorError::Setup(format!("{what}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(EmulatorError::Setup(format!("{what} exited with {status}")))
    }
}

/// Creates `.venv` with moto server and localstripe if they are missing, showing
/// pip's progress; returns the venv's python.
pub async fn ensure_installed(root: &Path) -> Result<PathBuf, EmulatorError> {
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    let missing: Vec<String> = [("moto_server", "moto"), ("localstripe", "localstripe")]
        .into_iter()
        .filter(|(bin, _)| !venv.join("bin").join(bin).exists())
        .map(|(_, package)| requirement(root, package))
        .collect();
    if missing.is_empty() {
        return Ok(python);
    }
    eprintln!(
        "shop: installing {} into {} (first run only, about 30 s)",
        missing.join(", "),
        venv.display()
    );
    if !python.exists() {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv",
        )
        .await?;
    }
    run(
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--disable-pip-version-check",
                "--progress-bar",
                "on",
            ])
            .args(&missing),
        "pip install",
    )
    .await?;
    Ok(python)
}

/// Switches on state machine execution in an emulator started elsewhere. moto requires
/// this before any state machine is created; it is global and survives resets, so
/// sending it twice is harmless.
pub async fn enable_step_functions(endpoint: &str) -> Result<(), EmulatorError> {
    let body = br#"{"stepfunctions":{"execute_state_machine":true}}"#.to_vec();
    let (status, _, text) = HttpClient::default()
        .send("POST", &format!("{endpoint}/moto-api/config"), body)
        .await
        .map_err(EmulatorError::Start)?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(EmulatorError::Start(format!(
            "enabling Step Functions execution answered {status}: {}",
            String::from_utf8_lossy(&text)
        )))
    }
}

/// How long a moto server may take to answer after it is started.
const START_WITHIN: Duration = Duration::from_secs(120);

/// Starts `script` with the venv's python and `--ready-file`, its output in
/// `<state_dir>/<name>.log`, and waits until it says where it listens.
async fn spawn_ready(
    python: &Path,
    script: &Path,
    args: &[&str],
    state_dir: &Path,
    name: &str,
) -> Result<(Child, String, PathBuf), EmulatorError> {
    std::fs::create_dir_all(state_dir).map_err(|e| EmulatorError::Start(e.to_string()))?;
    let log = state_dir.join(format!("{name}.log"));
    let ready = state_dir.join(format!("{name}.endpoint"));
    let _ = std::fs::remove_file(&ready);
    let log_file = std::fs::File::create(&log).map_err(|e| EmulatorError::Start(e.to_string()))?;
    let err_file = log_file
        .try_clone()
        .map_err(|e| EmulatorError::Start(e.to_string()))?;
    let mut child = Command::new(python)
        .arg(script)
        .args(args)
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| EmulatorError::Start(e.to_string()))?;
    // Idle, moto answers in about 2 s (its imports); eight starting at once on two
    // cores beside the chaos run took over 30 s in CI. A slow start is not a failure.
    let deadline = Instant::now() + START_WITHIN;
    loop {
        if let Ok(endpoint) = std::fs::read_to_string(&ready) {
            return Ok((child, endpoint.trim().to_owned(), log));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(EmulatorError::Start(format!(
                "{} exited with {status}; see {}",
                script.display(),
                log.display()
            )));
        }
        if Instant::now() > deadline {
            return Err(EmulatorError::Start(format!(
                "{} did not answer within {} s; see {}",
                script.display(),
                START_WITHIN.as_secs(),
                log.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Emulator {
    /// Starts moto server (`local/moto_server.py`, which picks a free loopback port,
    /// switches on state machine execution and says where it listens once it answers),
    /// writing its log under `state_dir`.
    pub async fn start(root: &Path, state_dir: &Path, name: &str) -> Result<Self, EmulatorError> {
        let python = ensure_installed(root).await?;
        let (child, endpoint, log) = spawn_ready(
            &python,
            &root.join("local/moto_server.py"),
            &["-H", "127.0.0.1", "-p", "0"],
            state_dir,
            &format!("{name}-moto"),
        )
        .await?;
        Ok(Self {
            endpoint,
            log: Some(log),
            child: Some(child),
        })
    }

    /// Starts localstripe wrapped as Stripe answers (`local/stripe_server.py`) on a free
    /// loopback port, answering after `latency_ms` (P50, P99) when given.
    pub async fn start_stripe(
        root: &Path,
        state_dir: &Path,
        name: &str,
        latency_ms: Option<(u64, u64)>,
    ) -> Result<Self, EmulatorError> {
        let python = ensure_installed(root).await?;
        let latency = latency_ms.map(|(p50, p99)| format!("{p50},{p99}"));
        let mut args = vec!["-p", "0"];
        if let Some(latency) = &latency {
            args.extend(["--latency-ms", latency]);
        }
        let (child, endpoint, log) = spawn_ready(
            &python,
            &root.join("local/stripe_server.py"),
            &args,
            state_dir,
            &format!("{name}-stripe"),
        )
        .await?;
        Ok(Self {
            endpoint,
            log: Some(log),
            child: Some(child),
        })
    }

    /// Uses an emulator that is already running.
    pub async fn attach(endpoint: &str) -> Result<Self, EmulatorError> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        if let Err(e) = enable_step_functions(&endpoint).await {
            eprintln!(
                "shop: {e} (fine if the emulator is not moto and already executes state machines)"
            );
        }
        Ok(Self {
            endpoint,
            log: None,
            child: None,
        })
    }

    /// Stops the emulator if we started it.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
    }
}

/// SDK configuration for the emulator: fixed test credentials, so no credential
/// provider probes the network.
pub async fn emulator_sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "shop-local",
        ))
        .load()
        .await
}

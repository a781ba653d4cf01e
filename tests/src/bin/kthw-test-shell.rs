//! Test-only: what `kthw ssh NAME NODE` does without a command (a shell through `Session::interactive`), for a
//! server given on the command line instead of a cluster, so the ssh tier can drive it under a real terminal.
//!
//! Usage: kthw-test-shell PORT USER HOST_PUBLIC_KEY_FILE CLIENT_PRIVATE_KEY_FILE

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kthw::ssh::{keys, Session, Target};

fn main() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, user, host_key, client_key] = args.as_slice() else {
        anyhow::bail!("usage: kthw-test-shell PORT USER HOST_PUBLIC_KEY_FILE CLIENT_PRIVATE_KEY_FILE");
    };
    let target = Target {
        node: format!("sshd-{port}"),
        addr: ([127, 0, 0, 1], port.parse().context("PORT")?).into(),
        user: user.clone(),
        host_key: std::fs::read_to_string(host_key).context("HOST_PUBLIC_KEY_FILE")?,
        client_key: Arc::new(keys::read_private(client_key.as_ref())?),
        log: None,
    };
    // Like `kthw ssh`: the runtime is dropped before the process exits, so a reader it cannot stop would hang here.
    let status = tokio::runtime::Runtime::new()?.block_on(async {
        let session = Session::connect(&target, Duration::from_secs(10)).await?;
        anyhow::Ok(session.interactive().await?)
    })?;
    Ok(ExitCode::from(u8::try_from(status).unwrap_or(255)))
}

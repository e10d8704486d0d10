//! Helpers of the tests that talk to the PostgreSQL endpoint: the real `psql` client, a free
//! port, and a server process that is killed if the test fails before stopping it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic is a test failure"
)]

use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

/// `psql` as `user`, with `password` if given (never prompting), each command its own `-c`:
/// (success, stdout, stderr).
pub(crate) fn psql_as(
    port: u16,
    user: &str,
    password: Option<&str>,
    commands: &[&str],
) -> (bool, String, String) {
    let mut cmd = Command::new("psql");
    let port = port.to_string();
    cmd.args(["-h", "127.0.0.1", "-p", &port, "-U", user, "-w", "-At"]);
    cmd.args(["-v", "ON_ERROR_STOP=1"]);
    match password {
        Some(p) => cmd.env("PGPASSWORD", p),
        None => cmd.env_remove("PGPASSWORD"),
    };
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = cmd
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (postgresql-client) is installed: scripts/prereqs.sh installs it");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A port nobody listens on (yet).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `ask` until `done` holds for its answer, every 100 ms, at most `seconds`; the last
/// answer.
pub(crate) fn poll<T>(seconds: u64, mut ask: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let until = std::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let answer = ask();
        if done(&answer) || std::time::Instant::now() > until {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A spawned server: SIGKILLed when dropped, so a failed assertion leaves nothing serving.
pub(crate) struct Server(pub(crate) Option<Child>);

impl Server {
    /// Stops it with SIGTERM (a clean stop) and waits.
    pub(crate) fn terminate(mut self) -> ExitStatus {
        let mut child = self.0.take().unwrap();
        // SAFETY: kill(2) on the child's pid, which is still ours to signal (not yet waited).
        assert_eq!(
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
            0
        );
        child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

//! A throwaway Postgres cluster for `cargo xtask`: `initdb` and `pg_ctl` from the installed
//! PostgreSQL, a fresh data directory under the temp dir, a free port on 127.0.0.1, trust
//! authentication, and durability switched off (it is deleted afterwards anyway). Stopped and
//! removed when dropped. Synchronous: usable without a Tokio runtime.
//!
//! Postgres refuses to run as root, so when the caller is root every command runs as `nobody`
//! (through `runuser`, else `setpriv`), and the directory is handed to that user.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

/// The unprivileged account used when running as root.
const UNPRIVILEGED_USER: &str = "nobody";

/// How many free ports to try when another process grabs the one picked.
const START_ATTEMPTS: usize = 3;

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Throwaway {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as: Option<Account>,
    stopped: bool,
}

#[derive(Clone, Debug)]
struct Account {
    name: String,
    uid: u32,
    gid: u32,
}

impl Throwaway {
    /// Creates and starts a cluster; fails with a message saying what is missing or what the
    /// failing command printed.
    pub fn start() -> io::Result<Self> {
        let bin = find_bin_dir()?;
        let run_as = if running_as_root()? {
            Some(lookup_account(UNPRIVILEGED_USER)?)
        } else {
            None
        };
        let dir = std::env::temp_dir().join(format!(
            "daef-pg-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        fs::create_dir(&dir)?;
        let mut cluster = Self {
            dir,
            bin,
            port: 0,
            run_as,
            stopped: true,
        };
        // From here on, Drop removes the directory whatever fails.
        if let Some(account) = &cluster.run_as {
            std::os::unix::fs::chown(&cluster.dir, Some(account.uid), Some(account.gid))?;
        }
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D".into(),
                data.into(),
                "-U".into(),
                "postgres".into(),
                "-A".into(),
                "trust".into(),
                "-E".into(),
                "UTF8".into(),
                "--no-locale".into(),
                "--no-sync".into(),
            ],
        )?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            match cluster.start_on(port) {
                Ok(()) => {
                    cluster.port = port;
                    cluster.stopped = false;
                    return Ok(cluster);
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("postgres did not start")))
    }

    /// The DSN to connect as the superuser `postgres` to database `postgres`.
    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The port it listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the data directory, sockets and log; removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stops the server the way an operator's restart does (`pg_ctl restart -m fast`: open
    /// transactions are aborted and connections dropped, committed work is kept) and waits until
    /// it accepts connections again on the same port.
    pub fn restart(&self) -> io::Result<()> {
        self.pg_ctl(&["-m".into(), "fast".into(), "restart".into()])
    }

    fn start_on(&self, port: u16) -> io::Result<()> {
        let server_options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=300",
            self.dir.display()
        );
        self.pg_ctl(&["-o".into(), server_options.into(), "start".into()])
    }

    /// `pg_ctl` on this cluster's data directory and log, waiting up to a minute for `action`;
    /// a failure carries the server's log.
    fn pg_ctl(&self, action: &[OsString]) -> io::Result<()> {
        let mut args: Vec<OsString> = vec![
            "-D".into(),
            self.data_dir().into(),
            "-l".into(),
            self.dir.join("postgres.log").into(),
            "-w".into(),
            "-t".into(),
            "60".into(),
        ];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args).map(drop).map_err(|err| {
            let log = fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
            io::Error::other(format!("{err}\n--- postgres.log ---\n{log}"))
        })
    }

    /// Runs one of the PostgreSQL programs, as the unprivileged account when needed.
    fn run(&self, program: &str, args: &[OsString]) -> io::Result<Output> {
        let exe = self.bin.join(program);
        let mut command = match &self.run_as {
            None => Command::new(&exe),
            Some(account) => {
                let mut c = if let Some(runuser) = which("runuser") {
                    let mut c = Command::new(runuser);
                    c.args(["-u", &account.name, "--"]);
                    c
                } else if let Some(setpriv) = which("setpriv") {
                    let mut c = Command::new(setpriv);
                    c.arg(format!("--reuid={}", account.uid))
                        .arg(format!("--regid={}", account.gid))
                        .arg("--clear-groups");
                    c
                } else {
                    return Err(io::Error::other(
                        "running as root, and neither runuser nor setpriv is installed to drop \
                         privileges for postgres",
                    ));
                };
                c.arg(&exe);
                c
            }
        };
        command.args(args).current_dir(&self.dir);
        let output = command
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", exe.display())))?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "{program} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(output)
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if !self.stopped {
            let stopped = self.run(
                "pg_ctl",
                &[
                    "-D".into(),
                    self.data_dir().into(),
                    "-m".into(),
                    "immediate".into(),
                    "-w".into(),
                    "stop".into(),
                ],
            );
            if let Err(err) = stopped {
                eprintln!(
                    "could not stop the throwaway postgres in {}: {err}",
                    self.dir.display()
                );
            }
            self.stopped = true;
        }
        if let Err(err) = fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {err}", self.dir.display());
        }
    }
}

/// The directory holding `initdb` and `pg_ctl`: from `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off `PATH`).
fn find_bin_dir() -> io::Result<PathBuf> {
    if let Some(initdb) = which("initdb")
        && let Some(dir) = initdb.parent().filter(|d| d.join("pg_ctl").is_file())
    {
        return Ok(dir.to_path_buf());
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no PostgreSQL server binaries: initdb and pg_ctl are neither on PATH nor in \
             /usr/lib/postgresql/*/bin (install the postgresql package)",
        )
    })
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// `/proc/self` belongs to the process's effective user.
fn running_as_root() -> io::Result<bool> {
    Ok(fs::metadata("/proc/self")?.uid() == 0)
}

fn lookup_account(name: &str) -> io::Result<Account> {
    let passwd = fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let user = fields.next()?;
            let _password = fields.next()?;
            let uid = fields.next()?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            (user == name).then(|| Account {
                name: user.to_owned(),
                uid,
                gid,
            })
        })
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("running as root, but there is no user {name:?} to run postgres as"),
            )
        })
}

/// A port nothing listens on right now (another process may take it before postgres does;
/// [`Throwaway::start`] then tries another).
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_accounts_in_passwd() {
        let root = lookup_account("root").expect("every Unix has root");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(lookup_account("no-such-user-daef").is_err());
    }

    #[test]
    fn throwaway_cluster_starts_answers_and_is_removed() {
        let cluster = match Throwaway::start() {
            Ok(cluster) => cluster,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                crate::unavailable("postgres", &err.to_string());
                return;
            }
            Err(err) => panic!("throwaway cluster failed to start: {err}"),
        };
        let dir = cluster.dir().to_path_buf();
        let port = cluster.port();
        assert!(dir.join("data/PG_VERSION").is_file());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let client = super::super::connect(&cluster.dsn())
                .await
                .expect("connects");
            let row = client.query_one("SELECT 1 + 1", &[]).await.expect("query");
            assert_eq!(row.get::<_, i32>(0), 2);
        });
        drop(cluster);
        assert!(!dir.exists(), "{} is removed", dir.display());
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "nothing listens on {port} any more"
        );
    }
}

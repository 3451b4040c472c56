//! `keeld`'s D-Bus service: the object [`OBJECT_PATH`] with the interface [`INTERFACE`] on the
//! bus name [`BUS_NAME`].
//!
//! - `Status() -> s`: JSON, the same object as `keel status --json` with three more members:
//!   `agent` (state, last and next check, next window, lock, last error), `transaction` (the
//!   running one, with its caller) and `agent_config_error`.
//! - `Check()`, `Download()`, `Stage()`, `Reboot()`, `Rollback() -> t`: start a transaction and
//!   return its id at once. One at a time: while one runs, the call fails with
//!   `org.keel.Host1.Error.Busy` naming the running transaction, the caller's unique bus name
//!   and uid. Only uid 0 may call them (the bus policy says so too).
//! - `Cancel() -> t`: cancels the running transaction, returns its id.
//! - Signals: `Progress(t transaction, s phase, t bytes_done, t bytes_total, t items_done,
//!   t items_total)` (totals 0 when unknown), `Message(t transaction, s level, s text)`, and
//!   `Finished(t transaction, s kind, b ok, s result)` where `result` is the operation's JSON
//!   report or its error.
//!
//! The automatic agent's ticks are transactions too (kind `automatic`, caller `keeld`), so a
//! manual call and the agent never change the host at the same time.

use crate::fleetlock::{self, FleetLockClient};
use crate::machine::{Agent, Lock, LockError, NoLock};
use crate::system::{SystemClock, SystemHost};
use crate::transaction::{Caller, Kind, Running, Slot};
use keel_common::cancel::Cancel;
use keel_common::fleetlock::ClientParams;
use keel_common::progress::{Event, Progress};
use keel_host::upgrade::{self, Mode, Request};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use zbus::message::Header;

pub const BUS_NAME: &str = "org.keel.Host1";
pub const OBJECT_PATH: &str = "/org/keel/Host1";
pub const INTERFACE: &str = "org.keel.Host1";

/// The errors callers see, as `org.keel.Host1.Error.*`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.keel.Host1.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// Another transaction runs.
    Busy(String),
    /// The caller may not change the host.
    AccessDenied(String),
    /// Nothing to cancel.
    NoTransaction(String),
    Failed(String),
}

/// What the daemon serves.
pub struct Daemon {
    pub sysroot: Option<PathBuf>,
    slot: Slot,
    agent: Mutex<Agent>,
    agent_config_error: Option<String>,
    connection: OnceLock<zbus::blocking::Connection>,
}

#[derive(Serialize)]
struct Status<'a> {
    #[serde(flatten)]
    host: keel_host::status::HostStatus,
    agent: Agent,
    transaction: Option<Running>,
    agent_config_error: Option<&'a str>,
}

impl Daemon {
    /// The daemon for `sysroot` (`None`: the booted host), its agent configured from the host's
    /// drop-ins; a broken configuration disables the agent and shows in status.
    pub fn new(sysroot: Option<PathBuf>) -> anyhow::Result<Arc<Daemon>> {
        let host = keel_host::Host::open(sysroot.as_deref())?;
        let (settings, agent_config_error) = match crate::config::load(&host.config_root()) {
            Ok(settings) => (settings, None),
            Err(e) => (
                crate::config::Settings {
                    enabled: false,
                    ..Default::default()
                },
                Some(e.to_string()),
            ),
        };
        Ok(Arc::new(Daemon {
            sysroot,
            slot: Slot::default(),
            agent: Mutex::new(Agent::new(settings)),
            agent_config_error,
            connection: OnceLock::new(),
        }))
    }

    /// Sets the connection signals go out on (once, after the bus connection is built).
    pub fn attach(&self, connection: zbus::blocking::Connection) {
        let _ = self.connection.set(connection);
    }

    fn agent(&self) -> Agent {
        self.agent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn status_json(&self) -> anyhow::Result<String> {
        let host = keel_host::Host::open(self.sysroot.as_deref())?;
        let status = Status {
            host: keel_host::status::collect(&host)?,
            agent: self.agent(),
            transaction: self.slot.running(),
            agent_config_error: self.agent_config_error.as_deref(),
        };
        Ok(serde_json::to_string_pretty(&status)?)
    }

    fn emit<B: Serialize + zbus::zvariant::DynamicType>(&self, name: &str, body: &B) {
        if let Some(connection) = self.connection.get() {
            // A signal nobody could receive is not the transaction's failure.
            let _ = connection.emit_signal(
                None::<zbus::names::BusName<'_>>,
                OBJECT_PATH,
                INTERFACE,
                name,
                body,
            );
        }
    }

    /// Starts transaction `kind` for `caller` on a thread of its own.
    pub fn start(self: &Arc<Self>, kind: Kind, caller: Caller) -> Result<u64, Error> {
        let (id, cancel) = self
            .slot
            .begin(kind, caller)
            .map_err(|busy| Error::Busy(busy.to_string()))?;
        let daemon = self.clone();
        std::thread::spawn(move || {
            let sink = SignalSink::new(&daemon, id);
            let result = daemon.run(kind, &cancel, &sink);
            daemon.slot.end(id);
            let (ok, text) = match result {
                Ok(json) => (true, json),
                Err(e) => (false, format!("{e:#}")),
            };
            daemon.emit("Finished", &(id, kind.name(), ok, text));
        });
        Ok(id)
    }

    fn run(&self, kind: Kind, cancel: &Cancel, progress: &dyn Progress) -> anyhow::Result<String> {
        let host = keel_host::Host::open(self.sysroot.as_deref())?;
        let upgrade = |mode| -> anyhow::Result<String> {
            let report = upgrade::run(&host, &Request::upgrade(mode), cancel, progress)?;
            Ok(serde_json::to_string(&report)?)
        };
        match kind {
            Kind::Check => upgrade(Mode::Check),
            Kind::Download => upgrade(Mode::DownloadOnly),
            Kind::Stage => upgrade(Mode::Deploy),
            Kind::Rollback => {
                let what = keel_host::rollback::rollback(&host)?;
                Ok(serde_json::to_string(&what)?)
            }
            Kind::Reboot => {
                keel_host::host::reboot(&host, "the default deployment")?;
                Ok("\"rebooting\"".into())
            }
            Kind::Automatic => {
                drop(host);
                self.tick(cancel, progress);
                Ok(serde_json::to_string(&self.agent())?)
            }
        }
    }

    /// Steps the agent until it settles (at most a few steps), outside the agent's mutex so
    /// that Status answers while it works.
    fn tick(&self, cancel: &Cancel, progress: &dyn Progress) {
        let mut agent = self.agent();
        let mut host = SystemHost {
            sysroot: self.sysroot.clone(),
            cancel: cancel.clone(),
            progress,
        };
        let mut lock = self.lock(&agent, cancel);
        for _ in 0..8 {
            if !agent.tick(&mut host, lock.as_mut(), &SystemClock) {
                break;
            }
            *self.agent.lock().unwrap_or_else(|p| p.into_inner()) = agent.clone();
        }
        *self.agent.lock().unwrap_or_else(|p| p.into_inner()) = agent;
    }

    fn lock(&self, agent: &Agent, cancel: &Cancel) -> Box<dyn Lock> {
        let Some(settings) = &agent.settings().fleet_lock else {
            return Box::new(NoLock);
        };
        let root = keel_host::Host::open(self.sysroot.as_deref())
            .map(|h| h.config_root())
            .unwrap_or_else(|_| PathBuf::from("/"));
        let http = keel_io::http::Client::from_env();
        match (fleetlock::node_id(&root), http) {
            (Ok(id), Ok(http)) => Box::new(FleetLockClient::new(
                http,
                &settings.base_url,
                ClientParams {
                    id,
                    group: settings.group.clone(),
                },
                cancel.clone(),
            )),
            (Err(e), _) => Box::new(Broken(e.to_string())),
            (_, Err(e)) => Box::new(Broken(e.to_string())),
        }
    }

    /// Runs the automatic agent every `every` on this thread, forever.
    pub fn run_agent(self: &Arc<Self>, every: Duration) {
        loop {
            if let Ok((id, cancel)) = self.slot.begin(
                Kind::Automatic,
                Caller {
                    bus_name: "keeld".into(),
                    uid: None,
                },
            ) {
                let sink = SignalSink::new(self, id);
                self.tick(&cancel, &sink);
                self.slot.end(id);
            }
            std::thread::sleep(every);
        }
    }
}

/// A lock that cannot be used (no node id, no HTTP client): every call says why.
struct Broken(String);

impl Lock for Broken {
    fn pre_reboot(&mut self) -> Result<(), LockError> {
        Err(LockError {
            kind: None,
            message: self.0.clone(),
        })
    }
    fn steady_state(&mut self) -> Result<(), LockError> {
        self.pre_reboot()
    }
}

/// Progress events of transaction `id` as signals; byte and item counts at most every 100 ms.
struct SignalSink<'a> {
    daemon: &'a Daemon,
    id: u64,
    state: Mutex<SinkState>,
}

#[derive(Default)]
struct SinkState {
    phase: String,
    bytes: (u64, u64),
    items: (u64, u64),
    last: Option<Instant>,
}

impl<'a> SignalSink<'a> {
    fn new(daemon: &'a Daemon, id: u64) -> Self {
        SignalSink {
            daemon,
            id,
            state: Mutex::new(SinkState::default()),
        }
    }
}

impl Progress for SignalSink<'_> {
    fn report(&self, event: Event) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let force = match event {
            Event::Phase { name } => {
                s.phase = name;
                s.bytes = (0, 0);
                s.items = (0, 0);
                true
            }
            Event::Bytes { done, total } => {
                s.bytes = (done, total.unwrap_or(0));
                total == Some(done)
            }
            Event::Items { done, total } => {
                s.items = (done, total.unwrap_or(0));
                total == Some(done)
            }
            Event::Message { text } => {
                self.daemon.emit("Message", &(self.id, "message", text));
                return;
            }
            Event::Warning { text } => {
                self.daemon.emit("Message", &(self.id, "warning", text));
                return;
            }
        };
        let due = s
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if force || due {
            s.last = Some(Instant::now());
            let body = (
                self.id,
                s.phase.clone(),
                s.bytes.0,
                s.bytes.1,
                s.items.0,
                s.items.1,
            );
            self.daemon.emit("Progress", &body);
        }
    }
}

/// The object served at [`OBJECT_PATH`].
pub struct Service(pub Arc<Daemon>);

impl Service {
    async fn caller(header: &Header<'_>, connection: &zbus::Connection) -> Result<Caller, Error> {
        let sender = header
            .sender()
            .ok_or_else(|| Error::AccessDenied("the call has no sender".into()))?
            .to_owned();
        let proxy = zbus::fdo::DBusProxy::new(connection).await?;
        let uid = proxy
            .get_connection_unix_user(sender.clone().into())
            .await
            .map_err(|e| Error::Failed(format!("asking the bus who {sender} is: {e}")))?;
        Ok(Caller {
            bus_name: sender.to_string(),
            uid: Some(uid),
        })
    }

    async fn mutate(
        &self,
        kind: Kind,
        header: &Header<'_>,
        connection: &zbus::Connection,
    ) -> Result<u64, Error> {
        let caller = Self::caller(header, connection).await?;
        if caller.uid != Some(0) {
            return Err(Error::AccessDenied(format!(
                "{caller} may not {}: only root changes the host",
                kind.name()
            )));
        }
        self.0.start(kind, caller)
    }
}

#[zbus::interface(name = "org.keel.Host1")]
impl Service {
    /// The host's status as JSON (`keel status --json` plus the agent and the transaction).
    async fn status(&self) -> Result<String, Error> {
        self.0
            .status_json()
            .map_err(|e| Error::Failed(format!("{e:#}")))
    }

    async fn check(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<u64, Error> {
        self.mutate(Kind::Check, &header, connection).await
    }

    async fn download(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<u64, Error> {
        self.mutate(Kind::Download, &header, connection).await
    }

    async fn stage(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<u64, Error> {
        self.mutate(Kind::Stage, &header, connection).await
    }

    async fn reboot(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<u64, Error> {
        self.mutate(Kind::Reboot, &header, connection).await
    }

    async fn rollback(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<u64, Error> {
        self.mutate(Kind::Rollback, &header, connection).await
    }

    async fn cancel(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<u64, Error> {
        let caller = Self::caller(&header, connection).await?;
        if caller.uid != Some(0) {
            return Err(Error::AccessDenied(format!(
                "{caller} may not cancel: only root changes the host"
            )));
        }
        self.0
            .slot
            .cancel()
            .map(|r| r.id)
            .ok_or_else(|| Error::NoTransaction("no transaction is running".into()))
    }
}

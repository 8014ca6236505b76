//! Waiting until every component is ready, with Kubernetes watches.
//!
//! One [`kube::runtime::watcher`] per kind and namespace feeds a board of components.
//! The watcher re-lists after a dropped or expired watch by itself; a kind whose CRD is
//! not installed yet (Strimzi's `Kafka` before the operator's Application synced) fails
//! its list with 404 and is retried with backoff, shown as "waiting for CRD …".
//!
//! Two timeouts apply. A component gets `component` from the moment its controller
//! started on it (an Argo CD sync began, the object appeared, or it reported a failure):
//! Applications of a later sync wave are not counted against while they wait for their
//! turn. Everything together gets `total`. When either runs out the wait ends with
//! [`Stuck`], which names what is not ready and why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::time::Instant;

use super::progress::{Progress, elapsed};
use super::status::{ComponentId, Kind, Phase, State, evaluate};

/// What the wait waits for: components, and for some Applications the git revision they
/// must be synced at (the snapshot `up` just pushed).
#[derive(Debug, Clone, Default)]
pub struct Goal {
    /// Every component that must be ready.
    pub components: Vec<ComponentId>,
    /// Applications that must report this `status.sync.revision` to be ready.
    pub revisions: BTreeMap<ComponentId, String>,
}

impl Goal {
    /// Just these components, at any revision.
    pub fn components(components: Vec<ComponentId>) -> Self {
        Self {
            components,
            revisions: BTreeMap::new(),
        }
    }
}

/// How long to wait.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For one component, from the moment its controller started on it.
    pub component: Duration,
    /// For everything.
    pub total: Duration,
}

/// Why the wait gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// This component was not ready within the per-component timeout.
    Component(ComponentId),
    /// The total timeout ran out.
    Total,
}

/// A component that was not ready when the wait ended.
#[derive(Debug, Clone)]
pub struct NotReady {
    /// Which.
    pub id: ComponentId,
    /// Its last known state.
    pub state: State,
    /// For an Application, the namespace it deploys into.
    pub destination: Option<String>,
}

/// The wait ended before everything was ready.
#[derive(Debug, Clone)]
pub struct Stuck {
    /// Which timeout ran out.
    pub cause: Cause,
    /// Its length.
    pub timeout: Duration,
    /// Every component not ready, the cause first.
    pub not_ready: Vec<NotReady>,
}

impl Stuck {
    /// The namespaces worth collecting forensics from: those of the components that are
    /// not ready, and the namespaces their Applications deploy into.
    pub fn namespaces(&self) -> BTreeSet<String> {
        self.not_ready
            .iter()
            .flat_map(|n| std::iter::once(n.id.namespace.clone()).chain(n.destination.clone()))
            .collect()
    }
}

impl fmt::Display for Stuck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = elapsed(self.timeout);
        match &self.cause {
            Cause::Component(id) => {
                writeln!(f, "{id} is stuck: not ready {limit} after it started")?
            }
            Cause::Total => writeln!(f, "not everything was ready within {limit}")?,
        }
        for n in &self.not_ready {
            writeln!(f, "  {}: {:?}, {}", n.id, n.state.phase, n.state.summary)?;
            for condition in &n.state.conditions {
                writeln!(f, "      {condition}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Stuck {}

struct Entry {
    state: State,
    started: Option<Instant>,
    destination: Option<String>,
    listed: bool,
}

/// What the watches have said so far.
struct Board {
    entries: BTreeMap<ComponentId, Entry>,
    revisions: BTreeMap<ComponentId, String>,
    start: Instant,
}

impl Board {
    fn waiting(&self) -> Vec<&ComponentId> {
        self.entries
            .iter()
            .filter(|(_, e)| e.state.phase != Phase::Ready)
            .map(|(id, _)| id)
            .collect()
    }

    fn set(&mut self, id: &ComponentId, state: State, progress: &mut dyn Progress) {
        let now = Instant::now();
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        if entry.started.is_none() && (state.started || state.phase == Phase::Failing) {
            entry.started = Some(now);
        }
        if entry.state != state {
            progress.changed(id, &state, now - self.start);
            entry.state = state;
        }
    }

    fn apply(
        &mut self,
        kind: Kind,
        namespace: &str,
        event: Result<watcher::Event<DynamicObject>, watcher::Error>,
        progress: &mut dyn Progress,
    ) {
        let in_group = |id: &ComponentId| id.kind == kind && id.namespace == namespace;
        match event {
            Ok(watcher::Event::Init) => {
                for (_, entry) in self.entries.iter_mut().filter(|(id, _)| in_group(id)) {
                    entry.listed = false;
                }
            }
            Ok(watcher::Event::InitApply(object) | watcher::Event::Apply(object)) => {
                let id = ComponentId::new(kind, namespace, &object.name_any());
                // Every Application must be healthy, also one added after this list was made.
                if kind == Kind::Application && !self.entries.contains_key(&id) {
                    self.entries
                        .insert(id.clone(), entry(State::missing("new")));
                }
                if let Some(entry) = self.entries.get_mut(&id) {
                    entry.listed = true;
                    entry.destination = object.data["spec"]["destination"]["namespace"]
                        .as_str()
                        .map(str::to_owned);
                }
                let mut state = evaluate(kind, &object);
                if let Some(wanted) = self.revisions.get(&id) {
                    state = at_revision(state, &object, wanted);
                }
                self.set(&id, state, progress);
            }
            Ok(watcher::Event::InitDone) => {
                let unlisted: Vec<ComponentId> = self
                    .entries
                    .iter()
                    .filter(|(id, e)| in_group(id) && !e.listed)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in unlisted {
                    self.set(&id, State::missing("not created yet"), progress);
                }
            }
            Ok(watcher::Event::Delete(object)) => {
                let id = ComponentId::new(kind, namespace, &object.name_any());
                self.set(&id, State::missing("deleted"), progress);
            }
            Err(error) => {
                let summary = match &error {
                    watcher::Error::InitialListFailed(kube::Error::Api(status))
                        if status.is_not_found() =>
                    {
                        match kind.crd() {
                            Some(crd) => format!("waiting for CRD {crd}"),
                            None => format!("namespace {namespace} not found"),
                        }
                    }
                    other => format!("watch failed, retrying: {other}"),
                };
                // Only what has not been seen yet: a dropped watch says nothing about
                // objects the last list showed.
                let missing: Vec<ComponentId> = self
                    .entries
                    .iter()
                    .filter(|(id, e)| in_group(id) && e.state.phase == Phase::Missing)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in missing {
                    self.set(&id, State::missing(summary.clone()), progress);
                }
            }
        }
    }

    /// The earliest moment a timeout can run out.
    fn next_deadline(&self, timeouts: Timeouts) -> Instant {
        self.entries
            .values()
            .filter(|e| e.state.phase != Phase::Ready)
            .filter_map(|e| e.started.map(|s| s + timeouts.component))
            .fold(self.start + timeouts.total, Instant::min)
    }

    /// [`Stuck`] when a timeout has run out at `now`.
    fn timed_out(&self, timeouts: Timeouts, now: Instant) -> Option<Stuck> {
        let first_stuck = self.entries.iter().find(|(_, e)| {
            e.state.phase != Phase::Ready
                && e.started.is_some_and(|s| s + timeouts.component <= now)
        });
        let (cause, timeout) = match first_stuck {
            Some((id, _)) => (Cause::Component(id.clone()), timeouts.component),
            None if now >= self.start + timeouts.total => (Cause::Total, timeouts.total),
            None => return None,
        };
        let mut not_ready: Vec<NotReady> = self
            .entries
            .iter()
            .filter(|(_, e)| e.state.phase != Phase::Ready)
            .map(|(id, e)| NotReady {
                id: id.clone(),
                state: e.state.clone(),
                destination: e.destination.clone(),
            })
            .collect();
        not_ready.sort_by_key(|n| {
            (
                Cause::Component(n.id.clone()) != cause,
                n.state.phase != Phase::Failing,
            )
        });
        Some(Stuck {
            cause,
            timeout,
            not_ready,
        })
    }
}

/// `state` of an Application that is only ready once it reports `wanted` as its synced
/// revision: Argo CD may still report the previous one, Synced and Healthy.
fn at_revision(mut state: State, object: &DynamicObject, wanted: &str) -> State {
    let have = object.data["status"]["sync"]["revision"]
        .as_str()
        .unwrap_or_default();
    if have != wanted && state.phase == Phase::Ready {
        let short = |id: &str| id.chars().take(12).collect::<String>();
        state.phase = Phase::Progressing;
        state.summary = if have.is_empty() {
            format!("{}, waiting for revision {}", state.summary, short(wanted))
        } else {
            format!(
                "{} at {}, waiting for revision {}",
                state.summary,
                short(have),
                short(wanted)
            )
        };
        state.started = true;
    }
    state
}

fn entry(state: State) -> Entry {
    Entry {
        state,
        started: None,
        destination: None,
        listed: false,
    }
}

/// Waits until every component of `goal` (and every other Application in their
/// namespaces) is ready; returns how long it took.
pub async fn wait_ready(
    client: &Client,
    goal: &Goal,
    timeouts: Timeouts,
    progress: &mut dyn Progress,
) -> Result<Duration, Stuck> {
    let expected = &goal.components;
    let mut board = Board {
        entries: expected
            .iter()
            .map(|id| (id.clone(), entry(State::missing("not seen yet"))))
            .collect(),
        revisions: goal.revisions.clone(),
        start: Instant::now(),
    };
    for (id, entry) in &board.entries {
        progress.changed(id, &entry.state, Duration::ZERO);
    }
    let groups: BTreeSet<(Kind, String)> = expected
        .iter()
        .map(|id| (id.kind, id.namespace.clone()))
        .collect();
    let mut events = futures::stream::select_all(groups.into_iter().map(|(kind, namespace)| {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &namespace, &kind.api_resource());
        watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |event| (kind, namespace.clone(), event))
            .boxed()
    }));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        if board.waiting().is_empty() {
            let took = board.start.elapsed();
            progress.finish(&format!("every component is ready after {}", elapsed(took)));
            return Ok(took);
        }
        let deadline = board.next_deadline(timeouts);
        tokio::select! {
            Some((kind, namespace, event)) = events.next() => {
                board.apply(kind, &namespace, event, progress);
            }
            _ = tick.tick() => {
                progress.tick(&board.waiting(), board.start.elapsed());
            }
            () = tokio::time::sleep_until(deadline) => {
                if let Some(stuck) = board.timed_out(timeouts, Instant::now()) {
                    progress.finish(&format!("gave up after {}", elapsed(board.start.elapsed())));
                    return Err(stuck);
                }
            }
        }
    }
}

//! A group of backends at run time (a route's or a `tls` listener's), and
//! every group of one listener as the snapshot holds them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::pick::{Candidate, SmoothRoundRobin, client_hash, least_conn};
use super::state::{BackendKey, BackendState, Health, Session};
use crate::config::{BackendTls, Backends, Balance, ListenerConfig, Member, RouteAction};

/// Groups larger than this build their candidate list on the heap.
const STACK_MEMBERS: usize = 16;

/// One member of a group: its state (shared with every group of the
/// listener that names the same backend) and its configured share.
#[derive(Debug)]
pub struct GroupMember {
    /// Its run-time state.
    pub state: Arc<BackendState>,
    /// Its weight in this group.
    pub weight: u32,
    /// `drain: true` in the configuration.
    pub drain: bool,
}

/// A group of backends and how one is chosen.
#[derive(Debug)]
pub struct Group {
    members: Vec<GroupMember>,
    balance: Balance,
    round_robin: Mutex<SmoothRoundRobin>,
}

/// A choice: the member's position in its group and the session opened on
/// it.
#[derive(Debug)]
pub struct Chosen {
    /// The member's position in the group.
    pub index: usize,
    /// The session, counted on the member until dropped.
    pub session: Session,
}

impl Group {
    /// The group for `config`, reusing the states in `known` (by key) and
    /// adding what it makes to it.
    pub fn build<M: Member>(
        listener: &str,
        config: &Backends<M>,
        tls: impl Fn(&M) -> Option<String>,
        proxy_protocol: bool,
        known: &mut HashMap<BackendKey, Arc<BackendState>>,
    ) -> Self {
        let members = config
            .members
            .iter()
            .map(|member| {
                let key = BackendKey {
                    address: member.address().to_string(),
                    tls: tls(member),
                    proxy_protocol,
                };
                let state = known
                    .entry(key.clone())
                    .or_insert_with(|| {
                        Arc::new(BackendState::new(listener, key, config.health.clone()))
                    })
                    .clone();
                // A kept backend takes its group's checks as they are now
                // (the configuration allows one `health:` per backend).
                state.set_check(config.health.clone());
                GroupMember {
                    state,
                    weight: member.weight(),
                    drain: member.drain(),
                }
            })
            .collect();
        Group {
            members,
            balance: config.balance,
            round_robin: Mutex::new(SmoothRoundRobin::default()),
        }
    }

    /// Its members, in configuration order.
    pub fn members(&self) -> &[GroupMember] {
        &self.members
    }

    /// Whether a failure may take a member out: not when it is the only
    /// one and nothing checks it actively (it would only turn errors into
    /// 503s; nginx ignores `max_fails` for a single server too).
    pub fn can_go_down(&self) -> bool {
        self.members.len() > 1 || self.members.iter().any(|m| m.state.is_checked())
    }

    /// Chooses the member for a new request or tunnel from `client`,
    /// skipping `exclude` (the member a retry failed on). Members that are
    /// up come first; pending ones (not checked yet) only when none is up.
    /// `None`: every member is down, draining or excluded.
    pub fn choose(&self, client: IpAddr, exclude: Option<usize>) -> Option<Chosen> {
        if let [only] = self.members.as_slice() {
            // A group of one has no choice to make.
            if exclude == Some(0) || !self.takes_sessions(only, false) {
                return None;
            }
            return Some(Chosen {
                index: 0,
                session: Session::open(&only.state),
            });
        }
        let index = self
            .choose_among(client, exclude, false)
            .or_else(|| self.choose_among(client, exclude, true))?;
        Some(Chosen {
            index,
            session: Session::open(&self.members[index].state),
        })
    }

    fn choose_among(&self, client: IpAddr, exclude: Option<usize>, pending: bool) -> Option<usize> {
        let mut stack = [Candidate {
            weight: 1,
            in_flight: 0,
            eligible: false,
        }; STACK_MEMBERS];
        let mut heap = Vec::new();
        let candidates: &mut [Candidate] = if self.members.len() <= STACK_MEMBERS {
            &mut stack[..self.members.len()]
        } else {
            heap.resize(self.members.len(), stack[0]);
            &mut heap
        };
        let mut any = false;
        for (index, (member, candidate)) in
            self.members.iter().zip(candidates.iter_mut()).enumerate()
        {
            candidate.weight = member.weight;
            candidate.in_flight = member.state.in_flight();
            candidate.eligible = exclude != Some(index) && self.takes_sessions(member, pending);
            any |= candidate.eligible;
        }
        if !any {
            return None;
        }
        match self.balance {
            Balance::RoundRobin => self.round_robin(candidates),
            Balance::LeastConn => {
                // The fewest sessions for the weight; among equals (an idle
                // group, or requests one at a time) weighted round robin,
                // as nginx does, so that weights hold there too.
                let best = least_conn(candidates, 0)?;
                let (load, weight) = (
                    candidates[best].in_flight as u128,
                    u128::from(candidates[best].weight.max(1)),
                );
                for candidate in candidates.iter_mut() {
                    candidate.eligible &= candidate.in_flight as u128 * weight
                        == load * u128::from(candidate.weight.max(1));
                }
                self.round_robin(candidates)
            }
            Balance::ClientIp => {
                // The addresses, read in place: no list is built per choice.
                let ids = self.members.iter().map(|m| m.state.address());
                match client {
                    IpAddr::V4(v4) => client_hash(candidates, ids, &v4.octets()),
                    IpAddr::V6(v6) => client_hash(candidates, ids, &v6.octets()),
                }
            }
        }
    }

    /// Smooth weighted round robin over the eligible candidates.
    fn round_robin(&self, candidates: &[Candidate]) -> Option<usize> {
        match self.round_robin.lock() {
            Ok(mut round_robin) => round_robin.pick(candidates),
            Err(poisoned) => poisoned.into_inner().pick(candidates),
        }
    }

    /// Whether `member` may take a new session: not drained, and up (or
    /// pending, when `pending` allows it, or down past its cooldown).
    fn takes_sessions(&self, member: &GroupMember, pending: bool) -> bool {
        if member.drain || member.state.admin_drained() {
            return false;
        }
        match member.state.health() {
            Health::Up => true,
            Health::Pending => pending || self.members.len() == 1,
            Health::Down => !self.can_go_down() || member.state.cooled_down(),
        }
    }
}

/// Every group of one listener: the snapshot holds one per listener, and
/// a reload that keeps a backend keeps its state.
#[derive(Debug, Default)]
pub struct ListenerBackends {
    /// The group of each route, by the route's position (`None` for routes
    /// without backends).
    pub routes: Vec<Option<Group>>,
    /// The group of a `tls` listener.
    pub tcp: Option<Group>,
    /// Every state in the groups, once each.
    pub states: Vec<Arc<BackendState>>,
    /// Backends a reload removed that still carry sessions: they drain
    /// (README: Redundant backends) and show in `/status` until they end.
    pub retired: Vec<Arc<BackendState>>,
}

impl ListenerBackends {
    /// The groups of `listener`, reusing the states of `previous` (the
    /// same listener's groups in the snapshot before) for backends it
    /// keeps.
    pub fn build(listener: &ListenerConfig, previous: Option<&ListenerBackends>) -> Self {
        // Removed backends still carrying sessions too: one that comes back
        // keeps counting them.
        let mut known: HashMap<BackendKey, Arc<BackendState>> = previous
            .map(|p| {
                p.states
                    .iter()
                    .chain(p.retired.iter())
                    .map(|s| (s.key.clone(), s.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let before = known.clone();
        let name = &listener.name;
        let routes = listener
            .routes
            .iter()
            .map(|route| match &route.action {
                RouteAction::Backend(group) => Some(Group::build(
                    name,
                    group,
                    |m| tls_name(&m.tls),
                    false,
                    &mut known,
                )),
                _ => None,
            })
            .collect::<Vec<_>>();
        let tcp = listener.backends.as_ref().map(|group| {
            Group::build(
                name,
                group,
                |m| tls_name(&m.tls),
                listener.proxy_protocol,
                &mut known,
            )
        });
        let mut states: Vec<Arc<BackendState>> = Vec::new();
        for group in routes.iter().flatten().chain(tcp.iter()) {
            for member in group.members() {
                if !states.iter().any(|s| Arc::ptr_eq(s, &member.state)) {
                    states.push(member.state.clone());
                }
            }
        }
        let kept = |s: &Arc<BackendState>| states.iter().any(|k| Arc::ptr_eq(k, s));
        let retired = before
            .into_values()
            .chain(previous.into_iter().flat_map(|p| p.retired.iter().cloned()))
            .filter(|s| !kept(s) && s.in_flight() > 0)
            .collect();
        ListenerBackends {
            routes,
            tcp,
            states,
            retired,
        }
    }

    /// The group of route number `index`.
    pub fn route(&self, index: usize) -> Option<&Group> {
        self.routes.get(index).and_then(Option::as_ref)
    }

    /// Whether `drain: true` in the configuration drains `state` (in any
    /// group that has it).
    pub fn drained_by_config(&self, state: &Arc<BackendState>) -> bool {
        self.routes
            .iter()
            .flatten()
            .chain(self.tcp.iter())
            .flat_map(Group::members)
            .any(|m| m.drain && Arc::ptr_eq(&m.state, state))
    }

    /// What `/status` and the metrics show of every backend of the
    /// listener named `listener`, removed ones still carrying sessions
    /// last.
    pub fn views(&self, listener: &str) -> Vec<BackendView> {
        let current = self.states.iter().map(|state| {
            let drain = if state.admin_drained() {
                Some(DrainedBy::Admin)
            } else if self.drained_by_config(state) {
                Some(DrainedBy::Config)
            } else {
                None
            };
            BackendView::of(listener, state, drain)
        });
        let removed = self
            .retired
            .iter()
            .filter(|s| s.in_flight() > 0)
            .map(|state| BackendView::of(listener, state, Some(DrainedBy::Removed)));
        current.chain(removed).collect()
    }
}

/// Why a backend takes no new sessions although it may be up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DrainedBy {
    /// `drain: true` in the configuration.
    Config,
    /// `POST /backends/{listener}/{address}/drain` on the admin API.
    Admin,
    /// A reload removed it; its open sessions run to their end.
    Removed,
}

/// One backend as `/status` and the metrics show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendView {
    /// The listener.
    pub listener: String,
    /// `HOST:PORT`.
    pub backend: String,
    /// `up`, `down` or `pending`.
    pub health: &'static str,
    /// Why it drains, if it does.
    pub drain: Option<DrainedBy>,
    /// Requests and tunnels open on it now.
    pub open_sessions: usize,
    /// Requests and tunnels it was given since it was first seen.
    pub sessions: u64,
    /// Failures counted against it (refused, timed out, 5xx).
    pub failures: u64,
}

impl BackendView {
    fn of(listener: &str, state: &BackendState, drain: Option<DrainedBy>) -> Self {
        BackendView {
            listener: listener.to_string(),
            backend: state.address().to_string(),
            health: state.health().as_str(),
            drain,
            open_sessions: state.in_flight(),
            sessions: state.sessions(),
            failures: state.failures(),
        }
    }
}

/// The name a member's TLS client has in the snapshot.
fn tls_name(tls: &Option<BackendTls>) -> Option<String> {
    tls.as_ref().map(|t| t.backend.clone())
}

#[cfg(test)]
mod tests;

//! The node registry: who registered, where to reach them, their last
//! channel and load reports, and whether they are live.
//!
//! A node is live while its heartbeats arrive within the liveness timeout,
//! and until a dispatch finds it unreachable. A dropped node stays listed
//! (not live) and is accepted back when it registers again; a heartbeat
//! from a node the registry does not consider live answers `known = false`
//! so the node re-registers with fresh info.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use netmoe_proto::v1;
use tonic::transport::{Channel, Endpoint};

/// Default heartbeat period asked of nodes.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1000);
/// Default silence after which a node is dropped (three missed beats).
pub const DEFAULT_LIVENESS_TIMEOUT: Duration = Duration::from_millis(3000);
/// Most nodes the registry holds; registration beyond it is refused.
pub const MAX_NODES: usize = 1024;
/// A node silent this long is forgotten (its entry removed), so the
/// registry does not fill with dead nodes.
pub const DEAD_NODE_TTL: Duration = Duration::from_secs(600);
/// Longest endpoint URI a node may register.
pub const MAX_ENDPOINT_BYTES: usize = 256;

/// A registration the registry refuses.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request lacked node info or an id.
    #[error("registration needs node info with a non-empty node_id")]
    MissingId,
    /// The endpoint is not a usable URI.
    #[error("endpoint {endpoint:?} is not a valid http(s) URI: {reason}")]
    BadEndpoint {
        /// As given.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The registry is full.
    #[error("registry is full ({0} nodes)")]
    Full(usize),
    /// The report failed a plausibility check (counted on the node).
    #[error("rejected: {0}")]
    Violation(#[from] crate::checks::Violation),
    /// The node is quarantined.
    #[error("node {id:?} is quarantined: {reason}")]
    Quarantined {
        /// The node.
        id: String,
        /// Why.
        reason: String,
    },
}

/// Weight of the newest answer in a node's bytes-per-word mean (about the
/// last ten answers count).
const WIRE_MEAN_WEIGHT: f64 = 0.1;
/// Fewest words an answer needs to count in that mean.
pub const MIN_WIRE_WORDS: u32 = 8;

/// What the coordinator knows of one node.
#[derive(Debug, Clone)]
pub struct NodeEntry {
    /// The node's self-description at registration.
    pub info: v1::NodeInfo,
    /// Where to dial it.
    pub endpoint: String,
    /// A lazily connected channel to it (reconnects by itself).
    pub channel: Channel,
    /// Last heartbeat or registration.
    pub last_seen: Instant,
    /// Latest SNR report.
    pub snr: v1::SnrReport,
    /// Latest load.
    pub load: v1::Load,
    /// Latest speed.
    pub tokens_per_second: f64,
    /// Bytes on the wire (both ways) per word of its answers: a moving
    /// mean of what the coordinator measured on this node's link, from
    /// [`crate::policy::DEFAULT_WIRE_BYTES_PER_WORD`] until it answers.
    pub wire_bytes_per_word: f64,
    /// Believed reachable.
    pub live: bool,
    /// The latest probe of its QUIC link, and when it finished.
    pub link: Option<(v1::LinkProbe, Instant)>,
    /// Reports that failed a check.
    pub violations: u32,
    /// The last of them.
    pub last_violation: String,
    /// Why it is not routed to, once over the violation threshold.
    pub quarantined: Option<String>,
}

impl NodeEntry {
    /// The node id.
    pub fn id(&self) -> &str {
        &self.info.node_id
    }

    /// The expert's name.
    pub fn expert(&self) -> &str {
        self.info.profile.as_ref().map_or("", |p| p.name.as_str())
    }

    /// The latest successful link probe.
    pub fn measured_link(&self) -> Option<&v1::LinkProbe> {
        self.link.as_ref().map(|(p, _)| p).filter(|p| p.ok)
    }

    /// The expert's domain description.
    pub fn domain(&self) -> &str {
        self.info.profile.as_ref().map_or("", |p| p.domain.as_str())
    }

    /// What the gate matches segments against for this node's expert.
    pub fn gate_domain(&self) -> crate::gate::Domain {
        self.info
            .profile
            .as_ref()
            .map_or_else(Default::default, crate::gate::Domain::of)
    }
}

/// The registry; share it behind an `Arc`.
#[derive(Debug)]
pub struct Registry {
    nodes: RwLock<HashMap<String, NodeEntry>>,
    /// The coordinator's identity for dialling nodes over mTLS (None:
    /// plaintext, `--insecure`).
    tls: Option<netmoe_common::pki::TlsDir>,
    /// Violations after which a node is quarantined.
    quarantine_after: u32,
    /// Heartbeat period asked of nodes.
    pub heartbeat_interval: Duration,
    /// Silence after which a node is dropped.
    pub liveness_timeout: Duration,
}

impl Registry {
    /// An empty registry.
    pub fn new(heartbeat_interval: Duration, liveness_timeout: Duration) -> Self {
        Self {
            nodes: RwLock::new(HashMap::new()),
            tls: None,
            quarantine_after: crate::checks::DEFAULT_QUARANTINE_AFTER,
            heartbeat_interval,
            liveness_timeout,
        }
    }

    /// Dials nodes over mTLS with `tls`: only `https://` endpoints are
    /// accepted, and a node must present a certificate for its own id.
    pub fn with_tls(mut self, tls: Option<netmoe_common::pki::TlsDir>) -> Self {
        self.tls = tls;
        self
    }

    /// Quarantines a node after `n` violations (at least 1).
    pub fn with_quarantine_after(mut self, n: u32) -> Self {
        self.quarantine_after = n.max(1);
        self
    }

    /// Counts a violation on node `id`; quarantines it at the threshold.
    pub fn violation(&self, id: &str, v: &crate::checks::Violation) {
        let mut nodes = self.nodes.write().expect("registry lock");
        if let Some(n) = nodes.get_mut(id) {
            Self::count(n, v, self.quarantine_after);
        }
    }

    fn count(n: &mut NodeEntry, v: &crate::checks::Violation, threshold: u32) {
        n.violations += 1;
        n.last_violation = v.0.clone();
        tracing::warn!(node = %n.info.node_id, violations = n.violations, violation = %v, "node report rejected");
        if n.violations >= threshold && n.quarantined.is_none() {
            let reason = format!("{} rejected reports; last: {v}", n.violations);
            tracing::warn!(node = %n.info.node_id, %reason, "node quarantined: no longer routed to");
            n.quarantined = Some(reason);
        }
    }

    /// True when nodes are dialled over mTLS.
    pub fn secure(&self) -> bool {
        self.tls.is_some()
    }

    /// Adds or refreshes a node; it is live from now.
    pub fn register(
        &self,
        info: Option<v1::NodeInfo>,
        endpoint: &str,
    ) -> Result<(), RegistryError> {
        let info = info
            .filter(|i| !i.node_id.is_empty())
            .ok_or(RegistryError::MissingId)?;
        let bad = |reason: String| RegistryError::BadEndpoint {
            endpoint: endpoint.to_owned(),
            reason,
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(bad("must start with http:// or https://".into()));
        }
        if self.tls.is_some() && !endpoint.starts_with("https://") {
            return Err(bad(
                "this coordinator dials nodes over mTLS: use https://".into()
            ));
        }
        if endpoint.len() > MAX_ENDPOINT_BYTES {
            return Err(bad(format!("longer than {MAX_ENDPOINT_BYTES} bytes")));
        }
        let mut ep = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            ep = ep
                .tls_config(tls.client(&netmoe_common::pki::node_server_name(&info.node_id)))
                .map_err(|e| bad(e.to_string()))?;
        }
        let channel = ep.connect_lazy();
        let mut nodes = self.nodes.write().expect("registry lock");
        let previous = nodes.get_mut(&info.node_id);
        if let Some(old) = &previous
            && let Some(reason) = &old.quarantined
        {
            return Err(RegistryError::Quarantined {
                id: info.node_id.clone(),
                reason: reason.clone(),
            });
        }
        let (violations, last_violation) = match previous {
            Some(old) => {
                if let Err(v) = crate::checks::info(&info) {
                    Self::count(old, &v, self.quarantine_after);
                    return Err(v.into());
                }
                (old.violations, old.last_violation.clone())
            }
            None => {
                crate::checks::info(&info)?;
                (0, String::new())
            }
        };
        if nodes.len() >= MAX_NODES && !nodes.contains_key(&info.node_id) {
            return Err(RegistryError::Full(MAX_NODES));
        }
        let entry = NodeEntry {
            violations,
            last_violation,
            quarantined: None,
            snr: info.snr.clone().unwrap_or_default(),
            load: info.load.unwrap_or_default(),
            tokens_per_second: info.tokens_per_second,
            wire_bytes_per_word: crate::policy::DEFAULT_WIRE_BYTES_PER_WORD,
            endpoint: endpoint.to_owned(),
            channel,
            last_seen: Instant::now(),
            live: true,
            link: None,
            info,
        };
        tracing::info!(node = %entry.id(), expert = %entry.expert(), endpoint, "node registered");
        nodes.insert(entry.info.node_id.clone(), entry);
        Ok(())
    }

    /// Records a heartbeat; false when the node must register (again). A
    /// heartbeat that fails a check is rejected and counted.
    pub fn heartbeat(&self, hb: &v1::HeartbeatRequest) -> Result<bool, RegistryError> {
        let mut nodes = self.nodes.write().expect("registry lock");
        let Some(n) = nodes.get_mut(&hb.node_id) else {
            return Ok(false);
        };
        if let Some(reason) = &n.quarantined {
            return Err(RegistryError::Quarantined {
                id: hb.node_id.clone(),
                reason: reason.clone(),
            });
        }
        if let Err(v) = crate::checks::heartbeat(hb) {
            Self::count(n, &v, self.quarantine_after);
            return Err(v.into());
        }
        if !n.live {
            return Ok(false);
        }
        n.last_seen = Instant::now();
        if let Some(snr) = &hb.snr {
            n.snr = snr.clone();
        }
        if let Some(load) = hb.load {
            n.load = load;
        }
        n.tokens_per_second = hb.tokens_per_second;
        Ok(true)
    }

    /// Folds one answer's measured wire bytes (both ways) and words into
    /// the node's bytes-per-word mean. Answers of fewer than
    /// [`MIN_WIRE_WORDS`] words say more about the request's fixed share
    /// than about the text, so they are not counted.
    pub fn observe_wire(&self, id: &str, bytes: u64, words: u32) {
        if words < MIN_WIRE_WORDS {
            return;
        }
        let mut nodes = self.nodes.write().expect("registry lock");
        if let Some(n) = nodes.get_mut(id) {
            let x = bytes as f64 / f64::from(words);
            n.wire_bytes_per_word += WIRE_MEAN_WEIGHT * (x - n.wire_bytes_per_word);
        }
    }

    /// Drops nodes silent for longer than the liveness timeout; returns
    /// their ids.
    pub fn sweep(&self, now: Instant) -> Vec<String> {
        let mut dropped = Vec::new();
        let mut nodes = self.nodes.write().expect("registry lock");
        for n in nodes.values_mut() {
            if n.live && now.saturating_duration_since(n.last_seen) > self.liveness_timeout {
                n.live = false;
                dropped.push(n.info.node_id.clone());
            }
        }
        for id in &dropped {
            tracing::warn!(node = %id, "node missed its heartbeats; dropped");
        }
        // Forget nodes dead for long (quarantined ones stay, so a
        // misbehaving node cannot wash its record by going quiet).
        nodes.retain(|id, n| {
            let keep = n.live
                || n.quarantined.is_some()
                || now.saturating_duration_since(n.last_seen) <= DEAD_NODE_TTL;
            if !keep {
                tracing::info!(node = %id, "dead node forgotten");
            }
            keep
        });
        dropped
    }

    /// Records a link probe of a node (failed probes too: the node list
    /// shows why).
    pub fn set_link(&self, probe: v1::LinkProbe) {
        if let Some(n) = self
            .nodes
            .write()
            .expect("registry lock")
            .get_mut(&probe.node_id)
        {
            n.link = Some((probe, Instant::now()));
        }
    }

    /// A node by id, live or not.
    pub fn get(&self, id: &str) -> Option<NodeEntry> {
        self.nodes.read().expect("registry lock").get(id).cloned()
    }

    /// Marks a node down after a dispatch could not reach it.
    pub fn mark_down(&self, id: &str) {
        if let Some(n) = self.nodes.write().expect("registry lock").get_mut(id) {
            if n.live {
                tracing::warn!(node = %id, "node unreachable; dropped until it registers again");
            }
            n.live = false;
        }
    }

    /// Live nodes, sorted by id (a stable order for policies).
    pub fn live(&self) -> Vec<NodeEntry> {
        let mut v: Vec<_> = self
            .nodes
            .read()
            .expect("registry lock")
            .values()
            .filter(|n| n.live && n.quarantined.is_none())
            .cloned()
            .collect();
        v.sort_by(|a, b| a.info.node_id.cmp(&b.info.node_id));
        v
    }

    /// Every known node, as the contract lists them.
    pub fn list(&self) -> Vec<v1::NodeStatus> {
        let now = Instant::now();
        let mut v: Vec<_> = self
            .nodes
            .read()
            .expect("registry lock")
            .values()
            .map(|n| v1::NodeStatus {
                info: Some(n.info.clone()),
                endpoint: n.endpoint.clone(),
                live: n.live,
                last_seen_ms: now.saturating_duration_since(n.last_seen).as_millis() as u64,
                snr: Some(n.snr.clone()),
                load: Some(n.load),
                tokens_per_second: n.tokens_per_second,
                link: n.link.as_ref().map(|(p, at)| v1::LinkProbe {
                    age_ms: now.saturating_duration_since(*at).as_millis() as u64,
                    ..p.clone()
                }),
                violations: n.violations,
                quarantined: n.quarantined.clone().unwrap_or_default(),
                last_violation: n.last_violation.clone(),
            })
            .collect();
        v.sort_by(|a, b| {
            let id = |s: &v1::NodeStatus| s.info.as_ref().map(|i| i.node_id.clone());
            id(a).cmp(&id(b))
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> Option<v1::NodeInfo> {
        Some(v1::NodeInfo {
            node_id: id.into(),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn heartbeats_keep_nodes_live_and_silence_drops_them() {
        let r = Registry::new(Duration::from_millis(100), Duration::from_millis(300));
        r.register(info("a"), "http://127.0.0.1:1").unwrap();
        r.register(info("b"), "http://127.0.0.1:2").unwrap();
        let hb = |id: &str| v1::HeartbeatRequest {
            node_id: id.into(),
            snr: Some(v1::SnrReport {
                snr_db: 3.0,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(r.heartbeat(&hb("a")).unwrap());
        assert!(
            !r.heartbeat(&hb("zzz")).unwrap(),
            "unknown node must register"
        );
        assert_eq!(r.live()[0].snr.snr_db, 3.0);

        let later = Instant::now() + Duration::from_millis(400);
        let dropped = r.sweep(later);
        assert_eq!(dropped.len(), 2);
        assert!(r.live().is_empty());
        assert!(
            !r.heartbeat(&hb("a")).unwrap(),
            "a dropped node re-registers"
        );
        r.register(info("a"), "http://127.0.0.1:1").unwrap();
        assert_eq!(r.live().len(), 1);
        assert_eq!(r.list().len(), 2);
        r.mark_down("a");
        assert!(r.live().is_empty());
    }

    #[tokio::test]
    async fn implausible_reports_quarantine_a_node() {
        let r = Registry::new(DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_LIVENESS_TIMEOUT)
            .with_quarantine_after(2);
        r.register(info("a"), "http://127.0.0.1:1").unwrap();
        r.register(info("b"), "http://127.0.0.1:2").unwrap();
        let liar = v1::HeartbeatRequest {
            node_id: "a".into(),
            snr: Some(v1::SnrReport {
                snr_db: 400.0,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            r.heartbeat(&liar),
            Err(RegistryError::Violation(_))
        ));
        assert_eq!(r.live().len(), 2, "one violation is not yet a quarantine");
        assert!(r.heartbeat(&liar).is_err());
        let live: Vec<_> = r.live().iter().map(|n| n.id().to_owned()).collect();
        assert_eq!(live, ["b"]);
        let listed = r.list();
        assert!(listed[0].quarantined.contains("400"), "{:?}", listed[0]);
        assert_eq!(listed[0].violations, 2);
        assert!(matches!(
            r.register(info("a"), "http://127.0.0.1:1"),
            Err(RegistryError::Quarantined { .. })
        ));
        // Dead entries expire; quarantined ones stay.
        let later = Instant::now() + DEAD_NODE_TTL + Duration::from_secs(10);
        r.sweep(later);
        r.sweep(later);
        assert_eq!(r.list().len(), 1);
    }

    #[tokio::test]
    async fn bad_registrations_are_refused() {
        let r = Registry::new(DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_LIVENESS_TIMEOUT);
        assert!(matches!(
            r.register(None, "http://x:1"),
            Err(RegistryError::MissingId)
        ));
        assert!(matches!(
            r.register(info(""), "http://x:1"),
            Err(RegistryError::MissingId)
        ));
        assert!(matches!(
            r.register(info("a"), "ftp://x"),
            Err(RegistryError::BadEndpoint { .. })
        ));
    }
}

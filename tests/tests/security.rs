//! A secured cluster against everything an outsider, a stolen token or a
//! misbehaving node can try: real processes, real certificates from the
//! cluster's CA (and from other CAs), real TLS handshakes. Each attempt
//! must be refused with the right code, and the cluster must still answer
//! a legitimate request afterwards.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use netmoe_common::pki::ca::{Validity, now_s};
use netmoe_common::pki::{COORDINATOR_SERVER_NAME, Ca, Role, TlsDir, node_server_name};
use netmoe_coordinator::admin::issue_into;
use netmoe_coordinator::auth::{keys::Keys, tokens::Tokens};
use netmoe_coordinator::cluster::{Cluster, NodeSpec};
use netmoe_edge_node::join::{JoinError, join};
use netmoe_proto::v1::{
    self, coordinator_client::CoordinatorClient, edge_node_client::EdgeNodeClient,
};
use netmoe_tests::start_cluster;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

fn two_nodes() -> Vec<NodeSpec> {
    netmoe_coordinator::cluster::demo_nodes()
        .into_iter()
        .skip(1)
        .collect()
}

/// A PEM identity: certificate chain and key.
struct Pem {
    cert: String,
    key: String,
}

impl Pem {
    fn of(dir: &Path, role: Role) -> Self {
        let stem = TlsDir::stem(role);
        Self {
            cert: std::fs::read_to_string(dir.join(format!("{stem}.pem"))).unwrap(),
            key: std::fs::read_to_string(dir.join(format!("{stem}.key"))).unwrap(),
        }
    }
}

/// A TLS channel to `addr` trusting `ca_pem` for `server_name`, presenting
/// `id` if given. A refused handshake is UNAVAILABLE with its reason.
async fn tls_channel(
    addr: &str,
    ca_pem: &str,
    server_name: &str,
    id: Option<&Pem>,
) -> Result<Channel, Status> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(server_name);
    if let Some(p) = id {
        tls = tls.identity(Identity::from_pem(&p.cert, &p.key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| Status::internal(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| Status::internal(e.to_string()))?
        .connect()
        .await
        .map_err(|e| Status::unavailable(format!("connect: {e:?}")))
}

fn with_key<T>(msg: T, key: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(k) = key {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    r
}

/// `ListNodes` as `id` with `key`.
async fn list_as(
    cluster: &Cluster,
    id: Option<&Pem>,
    key: Option<&str>,
) -> Result<Vec<v1::NodeStatus>, Status> {
    let creds = cluster.credentials.as_ref().unwrap();
    let ch = tls_channel(
        &cluster.coordinator.addr.to_string(),
        &creds.client.ca_pem,
        COORDINATOR_SERVER_NAME,
        id,
    )
    .await?;
    Ok(CoordinatorClient::new(ch)
        .list_nodes(with_key(v1::ListNodesRequest {}, key))
        .await?
        .into_inner()
        .nodes)
}

/// A coordinator client presenting `id`.
async fn coordinator_as(
    cluster: &Cluster,
    id: Option<&Pem>,
) -> Result<CoordinatorClient<Channel>, Status> {
    let creds = cluster.credentials.as_ref().unwrap();
    Ok(CoordinatorClient::new(
        tls_channel(
            &cluster.coordinator.addr.to_string(),
            &creds.client.ca_pem,
            COORDINATOR_SERVER_NAME,
            id,
        )
        .await?,
    ))
}

/// Refused in the TLS handshake: no gRPC status of our services, the
/// connection itself fails.
fn assert_handshake_refused<T: std::fmt::Debug>(what: &str, r: Result<T, Status>) {
    let e = r.expect_err(what);
    assert!(
        matches!(
            e.code(),
            Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
        ),
        "{what}: expected a refused handshake, got {:?}: {}",
        e.code(),
        e.message()
    );
    assert_ne!(e.code(), Code::Ok);
}

fn assert_code<T: std::fmt::Debug>(what: &str, r: Result<T, Status>, code: Code) {
    match r {
        Ok(v) => panic!("{what}: accepted ({v:?}), expected {code:?}"),
        Err(e) => assert_eq!(e.code(), code, "{what}: {}", e.message()),
    }
}

fn join_code(r: Result<TlsDir, JoinError>) -> Code {
    match r {
        Err(JoinError::Refused(s)) => s.code(),
        other => panic!("expected a refused join, got {other:?}"),
    }
}

fn node_info(id: &str, snr_db: f64) -> v1::NodeInfo {
    v1::NodeInfo {
        node_id: id.into(),
        profile: Some(v1::ExpertProfile {
            name: "liar".into(),
            domain: "knights, dragons, robots, starships, otters and storms".into(),
            default_max_tokens: 64,
            ..Default::default()
        }),
        tokens_per_second: 20.0,
        snr: Some(v1::SnrReport {
            snr_db,
            ..Default::default()
        }),
        load: Some(v1::Load {
            active: 0,
            queued: 0,
            slots: 1,
            queue_capacity: 1,
        }),
        ..Default::default()
    }
}

fn heartbeat(id: &str, snr_db: f64, tokens_per_second: f64) -> v1::HeartbeatRequest {
    v1::HeartbeatRequest {
        node_id: id.into(),
        snr: Some(v1::SnrReport {
            snr_db,
            ..Default::default()
        }),
        load: Some(v1::Load {
            active: 0,
            queued: 0,
            slots: 1,
            queue_capacity: 1,
        }),
        tokens_per_second,
    }
}

#[tokio::test]
async fn outsiders_stolen_tokens_and_wrong_certificates_are_refused() -> anyhow::Result<()> {
    let cluster = start_cluster(Some(two_nodes()), &["--local-candidate", "false"]).await?;
    let creds = cluster.credentials.as_ref().expect("secured cluster");
    let state = creds.state.clone();
    let ca = Ca::load(&state)?;
    let coord_uri = cluster.coordinator.endpoint();
    let work = tempfile::tempdir()?;
    let client = Pem::of(&creds.client.dir, Role::Client);
    let key = creds.api_key.clone();

    // The legitimate client works.
    let before = list_as(&cluster, Some(&client), Some(&key)).await?;
    assert_eq!(before.iter().filter(|n| n.live).count(), 2);
    let real = before[0].info.clone().unwrap();
    let real_endpoint = before[0].endpoint.clone();

    // Plaintext to the secured port.
    let plain = netmoe_coordinator::client::connect(&coord_uri, None, None).await;
    match plain {
        Err(_) => {}
        Ok(mut c) => assert!(
            c.list_nodes(v1::ListNodesRequest {}).await.is_err(),
            "plaintext answered"
        ),
    }

    // No client certificate: the handshake allows it (joins need it), the call does not.
    assert_code(
        "no client certificate",
        list_as(&cluster, None, Some(&key)).await,
        Code::Unauthenticated,
    );

    // A self-signed certificate naming itself a client.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = vec![rcgen::SanType::URI("netmoe://client/mallory".try_into()?)];
    let k = rcgen::KeyPair::generate()?;
    let selfsigned = Pem {
        cert: params.self_signed(&k)?.pem(),
        key: k.serialize_pem(),
    };
    assert_handshake_refused(
        "self-signed certificate",
        list_as(&cluster, Some(&selfsigned), Some(&key)).await,
    );

    // A certificate from another CA.
    let other_ca = Ca::init(&work.path().join("other-ca"), &[])?;
    issue_into(
        &other_ca,
        Role::Client,
        "mallory",
        &work.path().join("other"),
        1,
    )?;
    let foreign = Pem::of(&work.path().join("other"), Role::Client);
    assert_handshake_refused(
        "another CA's certificate",
        list_as(&cluster, Some(&foreign), Some(&key)).await,
    );

    // An expired certificate from the right CA.
    let now = now_s();
    let expired = ca.issue(
        Role::Client,
        "old-laptop",
        Validity {
            from: now - 2 * 86_400,
            until: now - 86_400,
        },
    )?;
    let expired = Pem {
        cert: expired.chain_pem,
        key: expired.key_pem.unwrap(),
    };
    assert_handshake_refused(
        "expired certificate",
        list_as(&cluster, Some(&expired), Some(&key)).await,
    );

    // API keys: missing, wrong, revoked.
    assert_code(
        "missing API key",
        list_as(&cluster, Some(&client), None).await,
        Code::Unauthenticated,
    );
    assert_code(
        "wrong API key",
        list_as(
            &cluster,
            Some(&client),
            Some("nmk_aaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
        )
        .await,
        Code::Unauthenticated,
    );
    let keys = Keys::new(&state);
    let (_, doomed) = keys.create("doomed")?;
    list_as(&cluster, Some(&client), Some(&doomed)).await?;
    keys.revoke("doomed")?;
    assert_code(
        "revoked API key",
        list_as(&cluster, Some(&client), Some(&doomed)).await,
        Code::Unauthenticated,
    );

    // Join tokens: one use, expiry, revocation, and the CA pin.
    let tokens = Tokens::new(&state);
    let token = creds_token(&cluster)?;
    let joined = join(&coord_uri, &token, "joiner-1", &work.path().join("joiner")).await?;
    assert_eq!(joined.me.name, "joiner-1");
    assert_eq!(
        join_code(join(&coord_uri, &token, "joiner-2", &work.path().join("j2")).await),
        Code::Unauthenticated,
        "a reused token"
    );
    let expiring = creds_token(&cluster)?;
    tokens.expire_now(expiring.split('.').next().unwrap())?;
    assert_eq!(
        join_code(join(&coord_uri, &expiring, "joiner-3", &work.path().join("j3")).await),
        Code::Unauthenticated,
        "an expired token"
    );
    let revoked = creds_token(&cluster)?;
    tokens.revoke(revoked.split('.').next().unwrap())?;
    assert_eq!(
        join_code(join(&coord_uri, &revoked, "joiner-4", &work.path().join("j4")).await),
        Code::Unauthenticated,
        "a revoked token"
    );
    let good = creds_token(&cluster)?;
    let (head, _) = good.rsplit_once('.').unwrap();
    let wrong_pin = format!("{head}.{}", other_ca.fingerprint());
    assert!(
        matches!(
            join(&coord_uri, &wrong_pin, "joiner-5", &work.path().join("j5")).await,
            Err(JoinError::Connect { .. })
        ),
        "a token pinning another CA must not reach this coordinator"
    );
    assert!(!work.path().join("j5").join("node.key").exists());

    // A node certificate calling the client API.
    let joiner = Pem::of(&work.path().join("joiner"), Role::Node);
    let mut as_node = coordinator_as(&cluster, Some(&joiner)).await?;
    assert_code(
        "a node certificate calling Ask",
        as_node
            .ask(with_key(
                v1::AskRequest {
                    prompt: "a story".into(),
                    ..Default::default()
                },
                Some(&key),
            ))
            .await,
        Code::PermissionDenied,
    );

    // Hijack 1 replayed: a made-up node with a fake endpoint and the best channel.
    let ghost = v1::RegisterRequest {
        info: Some(node_info("ghost-1", 40.0)),
        endpoint: "http://127.0.0.1:59999".into(),
    };
    let mut anon = coordinator_as(&cluster, None).await?;
    assert_code(
        "anonymous Register",
        anon.register(ghost.clone()).await,
        Code::Unauthenticated,
    );
    assert_code(
        "anonymous Heartbeat",
        anon.heartbeat(heartbeat("ghost-1", 40.0, 20.0)).await,
        Code::Unauthenticated,
    );
    let mut as_client = coordinator_as(&cluster, Some(&client)).await?;
    assert_code(
        "a client registering a node",
        as_client.register(ghost).await,
        Code::PermissionDenied,
    );

    // Hijack 2 replayed: a running node's id with another endpoint, from a
    // node certificate of the cluster (the joiner's).
    let hijack = v1::RegisterRequest {
        info: Some(v1::NodeInfo {
            node_id: real.node_id.clone(),
            ..node_info(&real.node_id, 40.0)
        }),
        endpoint: "https://127.0.0.1:59999".into(),
    };
    assert_code(
        "another node's id",
        as_node.register(hijack).await,
        Code::PermissionDenied,
    );
    assert_code(
        "another node's heartbeat",
        as_node
            .heartbeat(heartbeat(&real.node_id, 40.0, 20.0))
            .await,
        Code::PermissionDenied,
    );

    // A revoked node certificate.
    assert!(!ca.revoke("joiner-1")?.is_empty());
    let mut revoked_node = coordinator_as(&cluster, Some(&joiner)).await?;
    assert_code(
        "a revoked node certificate",
        revoked_node
            .register(v1::RegisterRequest {
                info: Some(node_info("joiner-1", 10.0)),
                endpoint: "https://127.0.0.1:59998".into(),
            })
            .await,
        Code::Unauthenticated,
    );

    // An edge node serves only the coordinator.
    let node_addr = cluster.nodes[0].addr.to_string();
    let node_id = {
        let all = list_as(&cluster, Some(&client), Some(&key)).await?;
        all.iter()
            .map(|s| s.info.clone().unwrap())
            .find(|i| i.profile.as_ref().is_some_and(|p| p.name == "scifi"))
            .unwrap()
            .node_id
    };
    let ch = tls_channel(
        &node_addr,
        &creds.client.ca_pem,
        &node_server_name(&node_id),
        Some(&client),
    )
    .await?;
    assert_code(
        "a client certificate calling an edge node",
        EdgeNodeClient::new(ch).info(v1::InfoRequest {}).await,
        Code::PermissionDenied,
    );
    let anon_node = async {
        let ch = tls_channel(
            &node_addr,
            &creds.client.ca_pem,
            &node_server_name(&node_id),
            None,
        )
        .await?;
        EdgeNodeClient::new(ch).info(v1::InfoRequest {}).await
    }
    .await;
    assert_handshake_refused("no certificate at an edge node", anon_node);

    // Nothing of the above got in, the real node is untouched, and the
    // cluster answers.
    let after = list_as(&cluster, Some(&client), Some(&key)).await?;
    let ids: Vec<_> = after
        .iter()
        .map(|s| s.info.clone().unwrap().node_id)
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        !ids.iter()
            .any(|i| i.starts_with("ghost") || i.starts_with("joiner"))
    );
    let still = after
        .iter()
        .find(|s| s.info.as_ref().unwrap().node_id == real.node_id)
        .unwrap();
    assert!(still.live);
    assert_eq!(
        still.endpoint, real_endpoint,
        "the real node's endpoint was replaced"
    );
    let mut c = cluster.client().await?;
    let r = c
        .ask(v1::AskRequest {
            prompt:
                "A robot scientist repairs a starship, and a family of otters survives a storm."
                    .into(),
            max_tokens: Some(16),
            seed: Some(1),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(!r.partial, "{r:?}");
    assert!(!r.story.trim().is_empty());
    cluster.shutdown().await?;
    Ok(())
}

fn creds_token(cluster: &Cluster) -> anyhow::Result<String> {
    Ok(cluster.credentials.as_ref().unwrap().token(600, "test")?)
}

/// An edge node that lies about its work: every result is far longer than
/// the tokens it was allowed.
struct Liar {
    id: String,
}

type Events<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl v1::edge_node_server::EdgeNode for Liar {
    async fn info(
        &self,
        _: Request<v1::InfoRequest>,
    ) -> Result<tonic::Response<v1::NodeInfo>, Status> {
        Ok(tonic::Response::new(node_info(&self.id, 59.0)))
    }

    type GenerateStream = Events<v1::GenerateEvent>;

    async fn generate(
        &self,
        request: Request<v1::GenerateRequest>,
    ) -> Result<tonic::Response<Self::GenerateStream>, Status> {
        let text = "lie ".repeat(25_000);
        let fin = v1::GenerateFinal {
            request_id: request.into_inner().request_id,
            node_id: self.id.clone(),
            words: 25_000,
            generated_tokens: 16,
            text,
            ..Default::default()
        };
        let ev = v1::GenerateEvent {
            event: Some(v1::generate_event::Event::Final(fin)),
        };
        Ok(tonic::Response::new(Box::pin(futures::stream::once(
            async move { Ok(ev) },
        ))))
    }

    type DownloadStream = Events<v1::ProbeEvent>;

    async fn download(
        &self,
        _: Request<v1::DownloadRequest>,
    ) -> Result<tonic::Response<Self::DownloadStream>, Status> {
        Err(Status::unimplemented("no probes"))
    }
}

#[tokio::test]
async fn a_node_reporting_the_impossible_is_quarantined_and_the_request_completes_elsewhere()
-> anyhow::Result<()> {
    let nodes = vec![two_nodes().remove(0)];
    let cluster = start_cluster(
        Some(nodes),
        &["--local-candidate", "false", "--quarantine-after", "1"],
    )
    .await?;
    let creds = cluster.credentials.as_ref().unwrap();
    let state = creds.state.clone();
    let ca = Ca::load(&state)?;
    let work = tempfile::tempdir()?;
    let client = Pem::of(&creds.client.dir, Role::Client);
    let key = creds.api_key.clone();

    // Two liars by heartbeat: an SNR of 400 dB, 10^9 tokens/s.
    for (id, snr, tps) in [("liar-snr", 400.0, 20.0), ("liar-speed", 20.0, 1e9)] {
        issue_into(&ca, Role::Node, id, &work.path().join(id), 1)?;
        let pem = Pem::of(&work.path().join(id), Role::Node);
        let mut c = coordinator_as(&cluster, Some(&pem)).await?;
        c.register(v1::RegisterRequest {
            info: Some(node_info(id, 20.0)),
            endpoint: "https://127.0.0.1:59997".into(),
        })
        .await?;
        assert_code(
            id,
            c.heartbeat(heartbeat(id, snr, tps)).await,
            Code::InvalidArgument,
        );
    }

    // A liar by its results: a real mTLS server with a node certificate,
    // the best channel (so the snr policy picks it), and too much text.
    let id = "liar-text";
    let dir = work.path().join(id);
    let tls = issue_into(&ca, Role::Node, id, &dir, 1)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tonic::transport::Server::builder()
        .tls_config(tls.server(false))?
        .add_service(v1::edge_node_server::EdgeNodeServer::new(Liar {
            id: id.into(),
        }))
        .serve_with_incoming(tokio_stream_incoming(listener));
    let server = tokio::spawn(server);
    let pem = Pem::of(&dir, Role::Node);
    let mut c = coordinator_as(&cluster, Some(&pem)).await?;
    c.register(v1::RegisterRequest {
        info: Some(node_info(id, 59.0)),
        endpoint: format!("https://{addr}"),
    })
    .await?;
    let beats = tokio::spawn(async move {
        loop {
            let _ = c.heartbeat(heartbeat(id, 59.0, 20.0)).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let listed = list_as(&cluster, Some(&client), Some(&key)).await?;
    let by_id = |l: &[v1::NodeStatus], id: &str| {
        l.iter()
            .find(|s| s.info.as_ref().unwrap().node_id == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not listed"))
    };
    let snr_liar = by_id(&listed, "liar-snr");
    assert!(snr_liar.quarantined.contains("400"), "{snr_liar:?}");
    let speed_liar = by_id(&listed, "liar-speed");
    assert!(
        speed_liar.quarantined.contains("tokens/s"),
        "{speed_liar:?}"
    );
    assert!(by_id(&listed, id).quarantined.is_empty(), "not yet");

    let mut client_c = cluster.client().await?;
    let r = client_c
        .ask(v1::AskRequest {
            prompt: "A family of otters survives the first winter storm.".into(),
            max_segments: Some(1),
            max_tokens: Some(16),
            policy: "snr".into(),
            seed: Some(2),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(!r.partial, "{r:?}");
    let seg = &r.segments[0];
    assert_eq!(
        seg.attempts, 2,
        "tried the liar first, then a real node: {seg:?}"
    );
    assert_ne!(seg.target, id);
    assert!(seg.text.len() < 16 * 64, "the liar's text was used");
    let listed = list_as(&cluster, Some(&client), Some(&key)).await?;
    let text_liar = by_id(&listed, id);
    assert!(
        text_liar.quarantined.contains("bytes of text"),
        "{text_liar:?}"
    );
    assert!(text_liar.violations >= 1);
    beats.abort();
    server.abort();
    cluster.shutdown().await?;
    Ok(())
}

fn tokio_stream_incoming(
    listener: tokio::net::TcpListener,
) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    netmoe_edge_node::server::incoming(listener)
}

//! gRPC reflection as third-party tools see it: both `grpc.reflection.v1`
//! and `v1alpha` (older grpcurl and Python's reflection client speak only
//! v1alpha) answer, and each process lists exactly the services it serves.

use std::collections::BTreeSet;

use netmoe_common::pki::COORDINATOR_SERVER_NAME;
use netmoe_tests::{start_cluster, start_edge_node};
use tonic::transport::Channel;
use tonic_reflection::pb::{v1, v1alpha};

async fn list_v1(ch: Channel) -> anyhow::Result<BTreeSet<String>> {
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut c = v1::server_reflection_client::ServerReflectionClient::new(ch);
    let mut stream = c
        .server_reflection_info(futures::stream::iter([req]))
        .await?
        .into_inner();
    let resp = stream.message().await?.expect("one answer");
    match resp.message_response {
        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(l)) => {
            Ok(l.service.into_iter().map(|s| s.name).collect())
        }
        other => anyhow::bail!("unexpected reflection answer {other:?}"),
    }
}

async fn list_v1alpha(ch: Channel) -> anyhow::Result<BTreeSet<String>> {
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut c = v1alpha::server_reflection_client::ServerReflectionClient::new(ch);
    let mut stream = c
        .server_reflection_info(futures::stream::iter([req]))
        .await?
        .into_inner();
    let resp = stream.message().await?.expect("one answer");
    match resp.message_response {
        Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(l)) => {
            Ok(l.service.into_iter().map(|s| s.name).collect())
        }
        other => anyhow::bail!("unexpected reflection answer {other:?}"),
    }
}

fn expected(service: &str) -> BTreeSet<String> {
    [
        service,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn check(listed: &BTreeSet<String>, service: &str, what: &str) {
    let want = expected(service);
    // The reflection services list themselves or not depending on the
    // protocol version; the served application services must be exact.
    let apps: BTreeSet<_> = listed
        .iter()
        .filter(|s| !s.starts_with("grpc.reflection."))
        .cloned()
        .collect();
    let want_apps: BTreeSet<_> = want
        .iter()
        .filter(|s| !s.starts_with("grpc.reflection."))
        .cloned()
        .collect();
    assert_eq!(apps, want_apps, "{what} lists {listed:?}");
}

#[tokio::test]
async fn both_reflection_versions_list_exactly_the_served_services() -> anyhow::Result<()> {
    let node = start_edge_node(&["--quic", "off"]).await?;
    let ch = Channel::from_shared(node.endpoint())?.connect().await?;
    check(
        &list_v1(ch.clone()).await?,
        "netmoe.v1.EdgeNode",
        "edge node v1",
    );
    check(
        &list_v1alpha(ch).await?,
        "netmoe.v1.EdgeNode",
        "edge node v1alpha",
    );

    let cluster = start_cluster(Some(Vec::new()), &[]).await?;
    let tls = &cluster.credentials.as_ref().unwrap().client;
    let ch = netmoe_common::pki::grpc::endpoint(
        &cluster.coordinator.endpoint(),
        Some(tls.client(COORDINATOR_SERVER_NAME)),
    )?
    .connect()
    .await?;
    let v1 = list_v1(ch.clone()).await?;
    check(&v1, "netmoe.v1.Coordinator", "coordinator v1");
    assert!(
        !v1.contains("netmoe.v1.EdgeNode"),
        "the coordinator does not serve EdgeNode"
    );
    check(
        &list_v1alpha(ch).await?,
        "netmoe.v1.Coordinator",
        "coordinator v1alpha",
    );
    cluster.shutdown().await?;
    Ok(())
}

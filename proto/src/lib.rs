//! The gRPC contract of NetMoE, generated from `proto/netmoe/v1/*.proto`.
//!
//! - [`v1`]: messages and the `EdgeNode` / `Coordinator` services (client and
//!   server stubs).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, served by gRPC
//!   reflection so `grpcurl` can list and call the services.

/// Version 1 of the contract.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("netmoe.v1");
}

/// Encoded `FileDescriptorSet` of every NetMoE proto file.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/netmoe_descriptor.bin"));

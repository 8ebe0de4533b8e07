//! QUIC link frames as a node reads a peer's stream: any bytes give a
//! frame, a clean end, or an error, within the length limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netmoe_common::link::frame::{Frame, FrameError, read_frame};
use netmoe_proto::v1::{GenerateEvent, LinkRequest};

const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut r = data;
        // Read frames until the input ends or fails, as a stream would.
        for _ in 0..64 {
            match read_frame::<_, LinkRequest>(&mut r, MAX).await {
                Ok(Some(Frame::Message(_, framed))) => assert!(framed as usize <= MAX + 5),
                Ok(Some(Frame::Status(_))) => {}
                Ok(None) => break,
                Err(FrameError::TooLarge { len, max }) => {
                    assert!(len > max);
                    break;
                }
                Err(_) => break,
            }
        }
        let mut r = data;
        let _ = read_frame::<_, GenerateEvent>(&mut r, MAX).await;
    });
});

//! The reply parser on arbitrary bytes: header check, OP_MSG decode, cursor and hello parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mongo_wire::wire::{decode_reply, DEFAULT_MAX_MESSAGE_SIZE};

fuzz_target!(|data: &[u8]| {
    // responseTo as the message says, so the fuzzer gets past that check.
    let to = data
        .get(8..12)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    if let Ok(msg) = decode_reply(data, to, DEFAULT_MAX_MESSAGE_SIZE) {
        let _ = mongo_wire::error::check_reply(msg.body.clone());
        let _ = mongo_wire::client::parse_cursor(&msg.body, "firstBatch");
        let _ = mongo_wire::HelloReply::from_document(&msg.body);
    }
});

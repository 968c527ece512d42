//! OP_MSG framing: encoding requests and decoding replies, with every length checked.
//!
//! This module does no I/O: [`encode_op_msg`] returns the bytes to send, [`parse_header`]
//! checks the 16-byte header of a reply (so the caller knows how many more bytes to read and
//! can refuse oversized replies *before* allocating), and [`decode_op_msg`] turns the rest
//! into the reply's body document. A malformed, truncated or oversized reply is an
//! [`Error::Protocol`], never a panic.
//!
//! Wire format (all integers little-endian):
//!
//! ```text
//! header:  int32 messageLength (including itself) | int32 requestID | int32 responseTo | int32 opCode
//! OP_MSG:  uint32 flagBits | sections... | [uint32 CRC-32C checksum if flagBits & 1]
//! section: kind 0: one BSON document (the body)
//!          kind 1: int32 size | cstring identifier | BSON documents... (a document sequence)
//! ```

use bson::{Bson, Document, RawDocument};

use crate::error::Error;

/// `OP_MSG`, the only opcode this client sends or accepts (MongoDB >= 3.6).
pub const OP_MSG: i32 = 2013;
/// `OP_REPLY` (legacy replies), `OP_COMPRESSED`: recognised only to name them in errors.
const OP_REPLY: i32 = 1;
const OP_COMPRESSED: i32 = 2012;

/// Size of the standard message header.
pub const HEADER_LEN: usize = 16;
/// The smallest possible OP_MSG: header + flags + kind byte + empty document (5 bytes).
pub const MIN_OP_MSG_LEN: usize = HEADER_LEN + 4 + 1 + 5;
/// The message size cap used before `hello` has reported `maxMessageSizeBytes` (MongoDB's own
/// default is 48,000,000 bytes).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 48_000_000;

/// flagBits: a CRC-32C checksum follows the sections.
pub const FLAG_CHECKSUM_PRESENT: u32 = 1 << 0;
/// flagBits: the sender will send another message without waiting for a reply.
pub const FLAG_MORE_TO_COME: u32 = 1 << 1;
/// flagBits: the client accepts exhaust replies (never set by this client).
pub const FLAG_EXHAUST_ALLOWED: u32 = 1 << 16;
/// Bits 0-15 are "required": a receiver must reject a message with an unknown one set.
const REQUIRED_BITS_MASK: u32 = 0xffff;

/// The parsed standard header of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub message_length: usize,
    pub request_id: i32,
    pub response_to: i32,
    pub op_code: i32,
}

/// Encodes `body` as an OP_MSG with a single kind-0 section and no flags.
pub fn encode_op_msg(request_id: i32, body: &Document) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    out.extend_from_slice(&0u32.to_le_bytes()); // flagBits
    out.push(0); // section kind 0
    body.to_writer(&mut out)
        .map_err(|e| Error::Encode(e.to_string()))?;
    let len =
        i32::try_from(out.len()).map_err(|_| Error::Encode("message larger than 2 GiB".into()))?;
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&request_id.to_le_bytes());
    out[8..12].copy_from_slice(&0i32.to_le_bytes());
    out[12..16].copy_from_slice(&OP_MSG.to_le_bytes());
    Ok(out)
}

fn le_i32(b: &[u8]) -> i32 {
    i32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Parses and checks a reply header: the length must be at least [`MIN_OP_MSG_LEN`] and at
/// most `max_len`, `responseTo` must equal `expected_response_to`, the opcode must be OP_MSG.
pub fn parse_header(
    bytes: &[u8; HEADER_LEN],
    expected_response_to: i32,
    max_len: usize,
) -> Result<Header, Error> {
    let raw_len = le_i32(&bytes[0..4]);
    let header = Header {
        message_length: usize::try_from(raw_len).unwrap_or(0),
        request_id: le_i32(&bytes[4..8]),
        response_to: le_i32(&bytes[8..12]),
        op_code: le_i32(&bytes[12..16]),
    };
    if raw_len < MIN_OP_MSG_LEN as i32 {
        return Err(Error::Protocol(format!(
            "reply length {raw_len} is shorter than the smallest OP_MSG ({MIN_OP_MSG_LEN})"
        )));
    }
    if header.message_length > max_len {
        return Err(Error::Protocol(format!(
            "reply length {} exceeds the limit of {max_len} bytes",
            header.message_length
        )));
    }
    if header.response_to != expected_response_to {
        return Err(Error::Protocol(format!(
            "reply answers request {} but request {expected_response_to} was sent",
            header.response_to
        )));
    }
    match header.op_code {
        OP_MSG => Ok(header),
        OP_REPLY => Err(Error::Protocol(
            "server sent a legacy OP_REPLY; this client speaks OP_MSG only (MongoDB >= 3.6)".into(),
        )),
        OP_COMPRESSED => Err(Error::Protocol(
            "server sent OP_COMPRESSED although no compression was negotiated".into(),
        )),
        other => Err(Error::Protocol(format!("unexpected reply opcode {other}"))),
    }
}

/// A decoded OP_MSG: its flags and body. Document sequences (kind-1 sections) are folded into
/// the body as arrays under their identifiers, as the drivers do.
#[derive(Debug, Clone, PartialEq)]
pub struct OpMsg {
    pub flags: u32,
    pub body: Document,
}

/// Decodes the part of an OP_MSG after the header (`payload.len()` must be
/// `messageLength - 16`). Exactly one kind-0 section is required; a checksum, if flagged, is
/// verified (CRC-32C over header and payload, so the header bytes are needed too).
pub fn decode_op_msg(header_bytes: &[u8; HEADER_LEN], payload: &[u8]) -> Result<OpMsg, Error> {
    let bad = |what: String| Err(Error::Protocol(what));
    if payload.len() < 4 {
        return bad("OP_MSG shorter than its flag bits".into());
    }
    let flags = le_u32(&payload[0..4]);
    let unknown_required =
        flags & REQUIRED_BITS_MASK & !(FLAG_CHECKSUM_PRESENT | FLAG_MORE_TO_COME);
    if unknown_required != 0 {
        return bad(format!(
            "OP_MSG has unknown required flag bits {unknown_required:#x}"
        ));
    }
    if flags & FLAG_MORE_TO_COME != 0 {
        // We never ask for exhaust cursors, so the server must not stream replies.
        return bad("OP_MSG reply sets moreToCome, which this client never requested".into());
    }
    let mut end = payload.len();
    if flags & FLAG_CHECKSUM_PRESENT != 0 {
        if payload.len() < 4 + 4 {
            return bad("OP_MSG flags a checksum but has no room for one".into());
        }
        end -= 4;
        let expected = le_u32(&payload[end..]);
        let actual = crc32c_update(crc32c_update(!0, header_bytes), &payload[..end]) ^ !0;
        if expected != actual {
            return bad(format!(
                "OP_MSG checksum mismatch: says {expected:#010x}, computed {actual:#010x}"
            ));
        }
    }
    let mut pos = 4;
    let mut body: Option<Document> = None;
    let mut sequences: Vec<(String, Vec<Bson>)> = Vec::new();
    while pos < end {
        let kind = payload[pos];
        pos += 1;
        match kind {
            0 => {
                let (doc, len) = read_document(&payload[pos..end], "body")?;
                if body.replace(doc).is_some() {
                    return bad("OP_MSG has more than one body (kind-0) section".into());
                }
                pos += len;
            }
            1 => {
                let rest = &payload[pos..end];
                if rest.len() < 4 {
                    return bad("document sequence section is truncated".into());
                }
                let size = le_i32(&rest[0..4]);
                let size = match usize::try_from(size) {
                    Ok(s) if s > 4 && s <= rest.len() => s,
                    _ => {
                        return bad(format!(
                            "document sequence size {size} does not fit the {} bytes left",
                            rest.len()
                        ))
                    }
                };
                let section = &rest[4..size];
                let nul = section.iter().position(|&b| b == 0).ok_or_else(|| {
                    Error::Protocol("document sequence identifier is not terminated".into())
                })?;
                let identifier = std::str::from_utf8(&section[..nul])
                    .map_err(|_| {
                        Error::Protocol("document sequence identifier is not UTF-8".into())
                    })?
                    .to_string();
                let mut docs = Vec::new();
                let mut at = nul + 1;
                while at < section.len() {
                    let (doc, len) = read_document(&section[at..], "document sequence")?;
                    docs.push(Bson::Document(doc));
                    at += len;
                }
                sequences.push((identifier, docs));
                pos += size;
            }
            other => return bad(format!("OP_MSG has unknown section kind {other}")),
        }
    }
    let Some(mut body) = body else {
        return bad("OP_MSG has no body (kind-0) section".into());
    };
    for (identifier, docs) in sequences {
        if body.contains_key(&identifier) {
            return bad(format!(
                "document sequence {identifier:?} duplicates a body field"
            ));
        }
        body.insert(identifier, docs);
    }
    Ok(OpMsg { flags, body })
}

/// Reads one BSON document from the start of `bytes`, checking its declared length against
/// the bytes available; returns the document and the bytes it used.
fn read_document(bytes: &[u8], what: &str) -> Result<(Document, usize), Error> {
    if bytes.len() < 5 {
        return Err(Error::Protocol(format!("{what} document is truncated")));
    }
    let declared = le_i32(&bytes[0..4]);
    let len = match usize::try_from(declared) {
        Ok(l) if l >= 5 && l <= bytes.len() => l,
        _ => {
            return Err(Error::Protocol(format!(
                "{what} document claims {declared} bytes but {} are left",
                bytes.len()
            )))
        }
    };
    let raw = RawDocument::from_bytes(&bytes[..len])
        .map_err(|e| Error::Protocol(format!("{what} document is malformed: {e}")))?;
    let doc = Document::try_from(raw)
        .map_err(|e| Error::Protocol(format!("{what} document is malformed: {e}")))?;
    Ok((doc, len))
}

/// CRC-32C (Castagnoli), bitwise: checksums are rare and small here, so no table is kept.
/// Call with `!0` first and xor the result with `!0`.
fn crc32c_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// CRC-32C of `bytes`, as OP_MSG checksums use it.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c_update(!0, bytes) ^ !0
}

/// Decodes a whole reply message (header + payload) in one go: a convenience for tests and
/// fuzzing; [`crate::Connection`] reads the header first so it can refuse oversized replies
/// before reading (or allocating) the rest.
pub fn decode_reply(
    bytes: &[u8],
    expected_response_to: i32,
    max_len: usize,
) -> Result<OpMsg, Error> {
    let header_bytes: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| {
        Error::Protocol(format!(
            "reply is shorter than the {HEADER_LEN}-byte header"
        ))
    })?;
    let header = parse_header(header_bytes, expected_response_to, max_len)?;
    if bytes.len() != header.message_length {
        return Err(Error::Protocol(format!(
            "reply says it is {} bytes but {} arrived",
            header.message_length,
            bytes.len()
        )));
    }
    decode_op_msg(header_bytes, &bytes[HEADER_LEN..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    const MAX: usize = DEFAULT_MAX_MESSAGE_SIZE;

    /// A reply as a server would send it: OP_MSG responding to `to`.
    fn reply(to: i32, body: &Document) -> Vec<u8> {
        let mut m = encode_op_msg(77, body).unwrap();
        m[8..12].copy_from_slice(&to.to_le_bytes());
        m
    }

    fn set_len(m: &mut [u8]) {
        let len = m.len() as i32;
        m[0..4].copy_from_slice(&len.to_le_bytes());
    }

    fn err_of(bytes: &[u8], to: i32) -> String {
        match decode_reply(bytes, to, MAX) {
            Err(Error::Protocol(m)) => m,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn round_trip() {
        let body = doc! { "ok": 1.0, "n": 1, "s": "x", "nested": { "a": [1, 2, 3] } };
        let m = reply(5, &body);
        assert_eq!(le_i32(&m[0..4]) as usize, m.len());
        assert_eq!(le_i32(&m[12..16]), OP_MSG);
        let got = decode_reply(&m, 5, MAX).unwrap();
        assert_eq!(got.body, body);
        assert_eq!(got.flags, 0);
    }

    #[test]
    fn encode_layout() {
        let m = encode_op_msg(42, &doc! { "ping": 1, "$db": "admin" }).unwrap();
        assert_eq!(le_i32(&m[4..8]), 42);
        assert_eq!(le_i32(&m[8..12]), 0);
        assert_eq!(le_u32(&m[16..20]), 0);
        assert_eq!(m[20], 0);
    }

    #[test]
    fn short_header() {
        let m = reply(5, &doc! {"ok": 1});
        assert!(err_of(&m[..10], 5).contains("shorter than the 16-byte header"));
        assert!(err_of(&[], 5).contains("header"));
    }

    #[test]
    fn length_below_minimum() {
        for len in [-1i32, 0, 15, 16, 25] {
            let mut m = reply(5, &doc! {"ok": 1});
            m[0..4].copy_from_slice(&len.to_le_bytes());
            assert!(err_of(&m, 5).contains("shorter than the smallest"), "{len}");
        }
    }

    #[test]
    fn length_above_cap() {
        let m = reply(5, &doc! {"ok": 1, "pad": "x".repeat(100)});
        match decode_reply(&m, 5, 64) {
            Err(Error::Protocol(msg)) => assert!(msg.contains("exceeds the limit"), "{msg}"),
            other => panic!("{other:?}"),
        }
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&i32::MAX.to_le_bytes());
        h[12..16].copy_from_slice(&OP_MSG.to_le_bytes());
        assert!(parse_header(&h, 0, MAX).is_err());
    }

    #[test]
    fn length_disagrees_with_bytes() {
        let mut m = reply(5, &doc! {"ok": 1});
        m.push(0);
        assert!(err_of(&m, 5).contains("arrived"));
        let m = reply(5, &doc! {"ok": 1});
        assert!(err_of(&m[..m.len() - 1], 5).contains("arrived"));
    }

    #[test]
    fn wrong_opcode() {
        for (op, want) in [
            (OP_REPLY, "OP_REPLY"),
            (OP_COMPRESSED, "OP_COMPRESSED"),
            (2004, "opcode 2004"),
        ] {
            let mut m = reply(5, &doc! {"ok": 1});
            m[12..16].copy_from_slice(&op.to_le_bytes());
            assert!(err_of(&m, 5).contains(want), "{op}");
        }
    }

    #[test]
    fn wrong_response_to() {
        let m = reply(6, &doc! {"ok": 1});
        assert!(err_of(&m, 5).contains("answers request 6"));
    }

    #[test]
    fn bad_section_kind() {
        let mut m = reply(5, &doc! {"ok": 1});
        m[20] = 2;
        assert!(err_of(&m, 5).contains("unknown section kind 2"));
    }

    #[test]
    fn bson_lies_about_length() {
        // Declares more bytes than the message holds.
        let mut m = reply(5, &doc! {"ok": 1});
        let declared = le_i32(&m[21..25]) + 10;
        m[21..25].copy_from_slice(&declared.to_le_bytes());
        assert!(err_of(&m, 5).contains("claims"));
        // Declares fewer: the document ends early and the leftovers are not a section.
        let mut m = reply(5, &doc! {"ok": 1, "s": "abc"});
        let declared = le_i32(&m[21..25]) - 4;
        m[21..25].copy_from_slice(&declared.to_le_bytes());
        assert!(matches!(decode_reply(&m, 5, MAX), Err(Error::Protocol(_))));
        // Negative and tiny lengths.
        for declared in [-5i32, 0, 4] {
            let mut m = reply(5, &doc! {"ok": 1});
            m[21..25].copy_from_slice(&declared.to_le_bytes());
            assert!(err_of(&m, 5).contains("claims"), "{declared}");
        }
        // A string element whose own length overruns the document.
        let mut m = reply(5, &doc! {"s": "abcdef"});
        // element: 0x02 's' 0 | int32 len | bytes
        let at = 21 + 4 + 3;
        m[at..at + 4].copy_from_slice(&1000i32.to_le_bytes());
        assert!(err_of(&m, 5).contains("malformed"));
    }

    #[test]
    fn trailing_bytes() {
        // Garbage after the body is read as a (bad) section.
        let mut m = reply(5, &doc! {"ok": 1});
        m.extend_from_slice(&[9, 9, 9]);
        set_len(&mut m);
        assert!(matches!(decode_reply(&m, 5, MAX), Err(Error::Protocol(_))));
        // A second body section.
        let mut m = reply(5, &doc! {"ok": 1});
        m.push(0);
        doc! {"ok": 2}.to_writer(&mut m).unwrap();
        set_len(&mut m);
        assert!(err_of(&m, 5).contains("more than one body"));
        // A lone kind byte.
        let mut m = reply(5, &doc! {"ok": 1});
        m.push(0);
        set_len(&mut m);
        assert!(err_of(&m, 5).contains("truncated"));
    }

    #[test]
    fn no_body() {
        // flags only, then a document sequence but no kind 0.
        let mut m = vec![0u8; 16];
        m[8..12].copy_from_slice(&5i32.to_le_bytes());
        m[12..16].copy_from_slice(&OP_MSG.to_le_bytes());
        m.extend_from_slice(&0u32.to_le_bytes());
        m.push(1);
        let mut seq = Vec::new();
        seq.extend_from_slice(b"docs\0");
        doc! {"a": 1}.to_writer(&mut seq).unwrap();
        m.extend_from_slice(&((seq.len() + 4) as i32).to_le_bytes());
        m.extend_from_slice(&seq);
        set_len(&mut m);
        assert!(err_of(&m, 5).contains("no body"));
    }

    #[test]
    fn document_sequence_is_folded_into_body() {
        let mut m = reply(5, &doc! {"ok": 1});
        m.push(1);
        let mut seq = Vec::new();
        seq.extend_from_slice(b"documents\0");
        doc! {"a": 1}.to_writer(&mut seq).unwrap();
        doc! {"a": 2}.to_writer(&mut seq).unwrap();
        m.extend_from_slice(&((seq.len() + 4) as i32).to_le_bytes());
        m.extend_from_slice(&seq);
        set_len(&mut m);
        let got = decode_reply(&m, 5, MAX).unwrap();
        assert_eq!(got.body, doc! {"ok": 1, "documents": [{"a": 1}, {"a": 2}]});
        // A sequence whose size overruns the message.
        let n = m.len();
        let at = n - seq.len() - 4;
        m[at..at + 4].copy_from_slice(&1000i32.to_le_bytes());
        assert!(err_of(&m, 5).contains("does not fit"));
    }

    #[test]
    fn flags() {
        let mut m = reply(5, &doc! {"ok": 1});
        m[16..20].copy_from_slice(&FLAG_MORE_TO_COME.to_le_bytes());
        assert!(err_of(&m, 5).contains("moreToCome"));
        let mut m = reply(5, &doc! {"ok": 1});
        m[16..20].copy_from_slice(&(1u32 << 5).to_le_bytes());
        assert!(err_of(&m, 5).contains("unknown required flag"));
        // Optional bits (16-31) are ignored.
        let mut m = reply(5, &doc! {"ok": 1});
        m[16..20].copy_from_slice(&FLAG_EXHAUST_ALLOWED.to_le_bytes());
        assert!(decode_reply(&m, 5, MAX).is_ok());
    }

    #[test]
    fn checksum() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        let mut m = reply(5, &doc! {"ok": 1});
        m[16..20].copy_from_slice(&FLAG_CHECKSUM_PRESENT.to_le_bytes());
        m.extend_from_slice(&[0; 4]);
        set_len(&mut m);
        let n = m.len();
        let sum = crc32c(&m[..n - 4]);
        m[n - 4..].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(decode_reply(&m, 5, MAX).unwrap().body, doc! {"ok": 1});
        m[n - 1] ^= 1;
        assert!(err_of(&m, 5).contains("checksum mismatch"));
        // Flagged but no room.
        let mut m = vec![0u8; 16];
        m[8..12].copy_from_slice(&5i32.to_le_bytes());
        m[12..16].copy_from_slice(&OP_MSG.to_le_bytes());
        m.extend_from_slice(&FLAG_CHECKSUM_PRESENT.to_le_bytes());
        m.extend_from_slice(&[0, 5, 0, 0, 0, 0]);
        set_len(&mut m);
        assert!(matches!(decode_reply(&m, 5, MAX), Err(Error::Protocol(_))));
    }
}

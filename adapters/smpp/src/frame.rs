//! Cutting PDUs out of the bytes a bind sends: the command_length is checked before
//! anything is allocated for it, and a PDU that does not decode is reported with its
//! command_id and sequence_number so it can be answered with generic_nack.

use bytes::{Buf, BytesMut};
use rusmpp::Command;
use rusmpp::decode::DecodeWithLength;

/// The SMPP header: command_length, command_id, command_status, sequence_number.
pub const HEADER_LEN: usize = 16;

/// A PDU that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// command_length below the header or above the limit: the stream cannot be followed
    /// any further, so the session is closed after a generic_nack.
    Length {
        /// The command_length given.
        length: u32,
        /// The sequence_number, when the header was there to read.
        sequence_number: Option<u32>,
    },
    /// The PDU was delimited but its body does not decode; the session goes on.
    Body {
        /// Its command_id.
        command_id: u32,
        /// Its sequence_number.
        sequence_number: u32,
        /// What was wrong.
        detail: String,
    },
}

/// Takes the next complete PDU off the front of `buf`: `Ok(None)` when more bytes are
/// needed. Never allocates more than `max_len` for a PDU and never panics.
pub fn next_frame(buf: &mut BytesMut, max_len: u32) -> Result<Option<Command>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let header_seq = |buf: &BytesMut| {
        (buf.len() >= HEADER_LEN).then(|| u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]))
    };
    if (length as usize) < HEADER_LEN || length > max_len {
        return Err(FrameError::Length {
            length,
            sequence_number: header_seq(buf),
        });
    }
    let length = length as usize;
    if buf.len() < length {
        // Room for the rest of this PDU only: `length` is at most `max_len`.
        buf.reserve(length - buf.len());
        return Ok(None);
    }
    let mut pdu = buf.split_to(length);
    let command_id = u32::from_be_bytes([pdu[4], pdu[5], pdu[6], pdu[7]]);
    let sequence_number = u32::from_be_bytes([pdu[12], pdu[13], pdu[14], pdu[15]]);
    pdu.advance(4);
    let body_len = pdu.len();
    match Command::decode(&mut pdu, body_len) {
        Ok((command, _)) => Ok(Some(command)),
        Err(e) => Err(FrameError::Body {
            command_id,
            sequence_number,
            detail: e.to_string(),
        }),
    }
}

/// Reads every PDU in `bytes` as one bind would send them, stopping at the first length
/// error: the entry point of the fuzz target and of the malformed-input test.
pub fn read_all(bytes: &[u8], max_len: u32) -> Vec<Result<Command, FrameError>> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match next_frame(&mut buf, max_len) {
            Ok(Some(command)) => out.push(Ok(command)),
            Ok(None) => break,
            Err(e @ FrameError::Length { .. }) => {
                out.push(Err(e));
                break;
            }
            Err(e) => out.push(Err(e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdu(command_id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(16 + body.len() as u32).to_be_bytes());
        v.extend_from_slice(&command_id.to_be_bytes());
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn enquire_link_in_two_halves() {
        let bytes = pdu(0x15, 9, &[]);
        let mut buf = BytesMut::from(&bytes[..10]);
        assert_eq!(next_frame(&mut buf, 4096), Ok(None));
        buf.extend_from_slice(&bytes[10..]);
        let command = next_frame(&mut buf, 4096).ok().flatten();
        assert_eq!(command.map(|c| c.sequence_number()), Some(9));
        assert!(buf.is_empty());
    }

    #[test]
    fn huge_length_is_refused_without_allocating() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 4][..]);
        let before = buf.capacity();
        assert!(matches!(
            next_frame(&mut buf, 65_536),
            Err(FrameError::Length {
                length: 0xffff_fff0,
                sequence_number: None
            })
        ));
        assert_eq!(buf.capacity(), before);
        let mut short = BytesMut::from(&pdu(0x15, 3, &[])[..]);
        short[3] = 8;
        assert!(matches!(
            next_frame(&mut short, 65_536),
            Err(FrameError::Length {
                length: 8,
                sequence_number: Some(3)
            })
        ));
    }

    #[test]
    fn undecodable_body_keeps_the_stream() {
        // A submit_sm whose body is three bytes of garbage, then an enquire_link.
        let mut bytes = pdu(0x04, 5, &[0xff, 0xff, 0xff]);
        bytes.extend(pdu(0x15, 6, &[]));
        let out = read_all(&bytes, 4096);
        assert!(matches!(
            out.first(),
            Some(Err(FrameError::Body {
                command_id: 4,
                sequence_number: 5,
                ..
            }))
        ));
        assert_eq!(
            out.get(1)
                .and_then(|r| r.as_ref().ok())
                .map(|c| c.sequence_number()),
            Some(6)
        );
    }

    /// Nasty inputs: none of them panics (the fuzz target checks the same property).
    #[test]
    fn nasty_inputs_never_panic() {
        let mut corpus: Vec<Vec<u8>> = vec![
            vec![],
            vec![0; 3],
            vec![0; 16],
            vec![0xff; 64],
            pdu(0x8000_0000, 1, &[]),
            pdu(0x04, 1, &[0; 40]),
            pdu(0x21, 1, &[0, 0, 0, 0, 0, 0xff, 1, 0, 0]),
            pdu(0x02, 1, b"sys\0pw\0\0\x34\0\0\0"),
            pdu(0x02, 1, b"syssyssyssyssyssyssys\0"),
            pdu(0x103, 1, &[0; 30]),
            pdu(0x04, 1, &[0xde, 0xad, 0xbe, 0xef]),
        ];
        // A submit_sm with a TLV that claims more bytes than there are.
        let mut body = b"\0\x01\x01123\0\x01\x01456\0\0\0\0\0\0\x01\0\0\0\x02hi".to_vec();
        body.extend_from_slice(&[0x04, 0x24, 0xff, 0xff, 1]);
        corpus.push(pdu(0x04, 2, &body));
        // sm_length beyond the body.
        corpus.push(pdu(
            0x04,
            3,
            b"\0\x01\x01123\0\x01\x01456\0\0\0\0\0\0\x01\0\0\0\xffhi",
        ));
        for input in &corpus {
            let _ = read_all(input, 4096);
            for cut in 0..input.len() {
                let _ = read_all(&input[..cut], 4096);
            }
        }
    }
}

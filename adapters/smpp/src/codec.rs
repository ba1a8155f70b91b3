//! PDU framing for tokio: a [`Decoder`] that checks command_length before it allocates
//! anything (through [`crate::frame::next_frame`]) and an [`Encoder`] for
//! rusmpp's [`Command`].
//!
//! A PDU whose header is readable but whose body does not decode is handed out as an
//! item (`Err(BadPdu)`), not as a stream error, so the session answers it with
//! generic_nack and goes on; a command_length out of bounds ends the stream, since what
//! follows cannot be delimited.

use bytes::BytesMut;
use rusmpp::Command;
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{FrameError, next_frame};

/// The default largest PDU taken (command_length).
pub const DEFAULT_MAX_PDU_BYTES: u32 = 65_536;

/// A PDU that was delimited but does not decode: answer generic_nack with its sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPdu {
    /// Its command_id.
    pub command_id: u32,
    /// Its sequence_number.
    pub sequence_number: u32,
    /// What was wrong.
    pub detail: String,
}

/// Why the stream of PDUs ends.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// command_length below 16 (the header).
    #[error("command_length {0} is shorter than the PDU header")]
    TooShort(u32),
    /// command_length above the limit.
    #[error("command_length {length} is over the limit of {max}")]
    TooLong {
        /// The command_length given.
        length: u32,
        /// The limit.
        max: u32,
    },
    /// The connection failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A command could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// Frames SMPP PDUs on a byte stream.
#[derive(Debug, Clone, Copy)]
pub struct PduCodec {
    max_len: u32,
}

impl PduCodec {
    /// A codec that refuses PDUs longer than `max_len` bytes.
    pub fn new(max_len: u32) -> PduCodec {
        PduCodec { max_len }
    }
}

impl Default for PduCodec {
    fn default() -> Self {
        PduCodec::new(DEFAULT_MAX_PDU_BYTES)
    }
}

impl Decoder for PduCodec {
    type Item = Result<Command, BadPdu>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        match next_frame(src, self.max_len) {
            Ok(Some(command)) => Ok(Some(Ok(command))),
            Ok(None) => Ok(None),
            Err(FrameError::Length { length, .. }) if length < 16 => {
                Err(CodecError::TooShort(length))
            }
            Err(FrameError::Length { length, .. }) => Err(CodecError::TooLong {
                length,
                max: self.max_len,
            }),
            Err(FrameError::Body {
                command_id,
                sequence_number,
                detail,
            }) => Ok(Some(Err(BadPdu {
                command_id,
                sequence_number,
                detail,
            }))),
        }
    }
}

impl Encoder<&Command> for PduCodec {
    type Error = CodecError;

    fn encode(&mut self, command: &Command, dst: &mut BytesMut) -> Result<(), CodecError> {
        rusmpp::tokio_codec::CommandCodec::new()
            .without_max_length()
            .encode(command, dst)
            .map_err(|e| CodecError::Encode(e.to_string()))
    }
}

impl Encoder<Command> for PduCodec {
    type Error = CodecError;

    fn encode(&mut self, command: Command, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode(&command, dst)
    }
}

/// Decodes every PDU in `bytes` as a session would read them, stopping where the stream
/// ends: the entry point of the fuzz target. Never panics.
pub fn decode_all(bytes: &[u8], max_len: u32) -> Vec<Result<Command, String>> {
    let mut codec = PduCodec::new(max_len);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(Ok(command))) => out.push(Ok(command)),
            Ok(Some(Err(bad))) => out.push(Err(bad.detail)),
            Ok(None) => break,
            Err(e) => {
                out.push(Err(e.to_string()));
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rusmpp::pdus::SubmitSmResp;
    use rusmpp::types::COctetString;
    use rusmpp::{CommandStatus, Pdu};

    use super::*;

    #[test]
    fn encode_then_decode() {
        let id = COctetString::from_string("abc".into()).unwrap_or_default();
        let command = Command::new(
            CommandStatus::EsmeRok,
            7,
            Pdu::SubmitSmResp(SubmitSmResp::new(id, Vec::new())),
        );
        let mut codec = PduCodec::default();
        let mut buf = BytesMut::new();
        assert!(codec.encode(&command, &mut buf).is_ok());
        assert_eq!(&buf[..4], &(buf.len() as u32).to_be_bytes());
        let decoded = codec.decode(&mut buf).ok().flatten().and_then(Result::ok);
        assert_eq!(decoded, Some(command));
        assert!(buf.is_empty());
    }

    #[test]
    fn length_errors_say_which() {
        let mut codec = PduCodec::new(1024);
        let mut short = BytesMut::from(&[0, 0, 0, 8, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1][..]);
        assert!(matches!(
            codec.decode(&mut short),
            Err(CodecError::TooShort(8))
        ));
        let mut long = BytesMut::from(&[0, 1, 0, 0, 0, 0, 0, 4][..]);
        assert!(matches!(
            codec.decode(&mut long),
            Err(CodecError::TooLong {
                length: 65_536,
                max: 1024
            })
        ));
    }

    #[test]
    fn bad_body_is_an_item_with_its_sequence() {
        let mut bytes = vec![0, 0, 0, 19, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9];
        bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
        let mut buf = BytesMut::from(&bytes[..]);
        match PduCodec::default().decode(&mut buf) {
            Ok(Some(Err(bad))) => {
                assert_eq!((bad.command_id, bad.sequence_number), (4, 9));
            }
            other => panic!("{other:?}"),
        }
    }
}

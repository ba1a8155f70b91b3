//! The canonical message of Switchboard and everything that can be said about it
//! without I/O: addresses and their channels, statuses and the legal moves between
//! them, status events, and the SMS text encodings.

pub mod address;
pub mod message;
pub mod status;
pub mod text;

pub use address::{Address, AddressError, Channel};
pub use message::{
    Attachment, Direction, ErrorInfo, FailoverStep, Message, MessageId, StatusEvent,
};
pub use status::{MessageStatus, TransitionError};

//! Bytes from an SMSC as the SMPP client reads them: PDU framing, rusmpp decoding, and
//! for deliver_sm the user data (UDH, SAR, message_payload), text and receipt parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = switchboard_smpp::client::deliver::read_pdus(data);
});

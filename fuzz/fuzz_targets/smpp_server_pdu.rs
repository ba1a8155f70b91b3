//! Bytes from a carrier as the SMPP server reads them: PDU framing with the
//! command_length limit, rusmpp decoding, and every submit taken as far as the core would
//! see it (user data, UDH/SAR reassembly, text by data_coding, addresses, SMPP times).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = switchboard_smpp::server::submit::read_carrier_bytes(data, 65_536);
});

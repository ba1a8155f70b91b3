//! The SIP listener's parsing path (datagram or stream message → request or response,
//! body, destination, transaction key, digest parameters) on arbitrary bytes: it must
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchboard_sip::parse_for_fuzzing(data);
});

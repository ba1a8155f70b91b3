//! The SMTP listener's parsing path (command lines with their parameters, then the same
//! bytes as a mail: MIME structure, charsets, attachments, a delivery status report, the
//! VERP return path) on arbitrary bytes: it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchboard_email::parse_for_fuzzing(data);
});

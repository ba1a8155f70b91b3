//! Any bytes read as one stanza from the component stream, and any text as a node of the
//! component: classified without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = switchboard_xmpp::stanza::classify_xml(data, "sms.localhost");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = switchboard_xmpp::address::address_of_node(text, "sms.localhost");
        let _ = switchboard_xmpp::address::node_of_address(text, "sms.localhost");
    }
});

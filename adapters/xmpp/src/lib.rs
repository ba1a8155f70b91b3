//! The xmpp channel adapter. Its implementation lands with the channel's own work; the crate exists so the workspace has the layout of DESIGN.md section 1.

//! What the command line reads and writes besides the server itself: the suppression exports of
//! email providers that `suppressd import` brings in ([`import`]).

pub mod import;

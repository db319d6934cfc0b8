//! An upload session's state as read back from storage, whatever the bytes: it resumes or the
//! session is unknown, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = marina_registry::session_state_resumes(data);
});

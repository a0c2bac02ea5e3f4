//! libcryptsetup's messages: without a callback it prints them on lvmd's stdout and
//! stderr, in the middle of the JSON log stream. Here they go to `tracing` (debug, target
//! `libcryptsetup`), and the last error message of the calling thread is kept, so the
//! layer's error can say what libcryptsetup said rather than a bare errno.
//!
//! libcryptsetup never puts a passphrase in a message (it logs keyslot numbers, device
//! names and reasons), and its debug output stays off (`crypt_set_debug_level`).

use libcryptsetup_rs::consts::vals::CryptLogLevel;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Once;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

static INSTALL: Once = Once::new();

/// Routes libcryptsetup's messages here; once per process, before the first call.
pub(super) fn install() {
    INSTALL.call_once(|| libcryptsetup_rs::set_log_callback::<()>(Some(on_message), None));
}

/// Forgets the calling thread's last error message; call before an operation.
pub(super) fn clear() {
    let _ = LAST_ERROR.try_with(|m| m.borrow_mut().clear());
}

/// The calling thread's last libcryptsetup error message since [`clear`], or "".
pub(super) fn last_error() -> String {
    LAST_ERROR
        .try_with(|m| m.borrow().clone())
        .unwrap_or_default()
}

/// Called by libcryptsetup on the thread of the call that logs. Must not unwind.
unsafe extern "C" fn on_message(level: c_int, msg: *const c_char, _usrptr: *mut c_void) {
    if msg.is_null() {
        return;
    }
    // SAFETY: libcryptsetup passes a NUL-terminated string valid for this call.
    let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    let text = text.trim_end();
    if level == CryptLogLevel::Error as c_int {
        let _ = LAST_ERROR.try_with(|m| {
            if let Ok(mut m) = m.try_borrow_mut() {
                text.clone_into(&mut m);
            }
        });
    }
    tracing::debug!(target: "libcryptsetup", level, "{text}");
}

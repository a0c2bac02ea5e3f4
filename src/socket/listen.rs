//! The daemon's socket: handed over by systemd (socket activation) or bound here with
//! mode 0660 and a configurable group; and systemd's readiness notification.

use libsystemd::activation::{receive_descriptors, IsType};
pub use libsystemd::daemon::NotifyState;
use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Passed by systemd (`lvmd.socket`): systemd owns the path and its mode.
    Systemd,
    /// Bound by us; removed again on exit.
    Bound,
}

/// The listening socket systemd passed, if it passed one to this process
/// (`LISTEN_PID`/`LISTEN_FDS`, read and then cleared by `libsystemd`, which also marks the
/// fds close-on-exec: they are not for our children).
pub fn systemd_listener() -> io::Result<Option<UnixListener>> {
    let fds = receive_descriptors(true).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the sockets systemd passed (LISTEN_FDS): {e}"),
        )
    })?;
    let mut fds = fds.into_iter();
    let Some(first) = fds.next() else {
        return Ok(None);
    };
    if fds.len() > 0 {
        tracing::warn!(
            fds = fds.len() + 1,
            "systemd passed more than one socket; using the first"
        );
    }
    if !first.is_unix() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "systemd's fd {} is not a unix socket (check ListenStream= in lvmd.socket)",
                first.into_raw_fd()
            ),
        ));
    }
    // SAFETY: systemd passed this fd to this process for it to own, and nothing else
    // here holds it.
    Ok(Some(unsafe {
        UnixListener::from_raw_fd(first.into_raw_fd())
    }))
}

/// A group given by name or number.
pub fn resolve_group(group: &str) -> io::Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let name = CString::new(group)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "group name contains NUL"))?;
    let mut buf = vec![0u8; 16 << 10];
    // SAFETY: getgrnam_r fills `grp` with pointers into `buf`, both ours and alive.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    if out.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no group named {group:?}"),
        ));
    }
    Ok(grp.gr_gid)
}

/// Binds `path` with mode 0660 (group `gid` if given). A stale socket file is replaced;
/// one a live daemon answers on is not.
pub fn bind(path: &Path, gid: Option<u32>) -> io::Result<UnixListener> {
    let ctx = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display()))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ctx("create its directory", e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another daemon is listening there", path.display()),
                ));
            }
            std::fs::remove_file(path).map_err(|e| ctx("remove the stale socket", e))?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists and is not a socket", path.display()),
            ))
        }
        Err(_) => {}
    }
    // The socket is created with the umask's mode: keep it closed until chmod.
    // SAFETY: umask has no preconditions; start-up has no other thread creating files.
    let old = unsafe { libc::umask(0o177) };
    let listener = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener = listener.map_err(|e| ctx("bind", e))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| ctx("chown", e))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| ctx("chmod", e))?;
    Ok(listener)
}

/// The listener: systemd's if it passed one, else `path` bound here.
pub fn listen(path: &Path, group: Option<&str>) -> io::Result<(UnixListener, Source)> {
    if let Some(l) = systemd_listener()? {
        if group.is_some() {
            tracing::info!("socket passed by systemd: its SocketGroup applies, not socket_group");
        }
        return Ok((l, Source::Systemd));
    }
    let gid = group.map(resolve_group).transpose()?;
    Ok((bind(path, gid)?, Source::Bound))
}

/// Tells systemd `state` (ready, stopping), if it asked for notifications
/// (`NOTIFY_SOCKET`, a path or an abstract `@name`). `Ok(false)`: nobody to tell.
pub fn notify(state: NotifyState) -> io::Result<bool> {
    libsystemd::daemon::notify(false, &[state])
        .map_err(|e| io::Error::other(format!("NOTIFY_SOCKET: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn bind_sets_mode_and_replaces_stale_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/lvmd.sock");
        // SAFETY: getegid has no preconditions.
        let gid = unsafe { libc::getegid() };
        let l = bind(&p, Some(gid)).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.mode() & 0o777, 0o660);
        assert_eq!(m.gid(), gid);
        // Live: refused.
        let e = bind(&p, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        drop(l);
        // Stale: replaced.
        bind(&p, None).unwrap();
        let f = dir.path().join("file");
        std::fs::write(&f, "x").unwrap();
        assert!(bind(&f, None).is_err());
    }

    #[test]
    fn groups_by_number_and_name() {
        assert_eq!(resolve_group("123").unwrap(), 123);
        assert_eq!(resolve_group("root").unwrap(), 0);
        assert!(resolve_group("no-such-group-lvmd").is_err());
    }

    #[test]
    fn notify_sends_a_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify");
        let rx = UnixDatagram::bind(&p).unwrap();
        // Only this test sets NOTIFY_SOCKET; other tests do not read it.
        std::env::set_var("NOTIFY_SOCKET", &p);
        assert!(notify(NotifyState::Ready).unwrap());
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        // One assignment a line, as sd_notify(3) has them.
        assert_eq!(&buf[..n], b"READY=1\n");
        // An abstract address, as container managers hand out.
        use std::os::linux::net::SocketAddrExt;
        let name = format!("lvmd-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        std::env::set_var("NOTIFY_SOCKET", format!("@{name}"));
        assert!(notify(NotifyState::Stopping).unwrap());
        std::env::remove_var("NOTIFY_SOCKET");
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
        assert!(!notify(NotifyState::Ready).unwrap());
    }
}

//! Who may talk on a unix socket: every peer is checked by its kernel-reported
//! credentials (SO_PEERCRED) against an allow list before tonic sees a byte from it.
//! Shared by lvmd's API socket and lvmd-csi's CSI socket.

use super::authority::AuthorityFix;
use std::fmt;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::ReceiverStream;

/// Who may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// uid 0 is let in regardless of the lists (the default).
    pub allow_root: bool,
    pub uids: Vec<u32>,
    /// Matched against the peer's primary gid (the one SO_PEERCRED reports).
    pub gids: Vec<u32>,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        AccessPolicy {
            allow_root: true,
            uids: vec![],
            gids: vec![],
        }
    }
}

impl AccessPolicy {
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        (self.allow_root && uid == 0) || self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

/// For the start-up log: `root, uids 1000 1001, gids 50`, or `nobody`.
impl fmt::Display for AccessPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.allow_root {
            parts.push("root".to_string());
        }
        for (what, ids) in [("uids", &self.uids), ("gids", &self.gids)] {
            if !ids.is_empty() {
                let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
                parts.push(format!("{what} {}", ids.join(" ")));
            }
        }
        if parts.is_empty() {
            f.write_str("nobody")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Accepts connections and passes on those the policy allows, each read through
/// [`AuthorityFix`]; refused peers are logged (uid, gid, pid) and closed at once.
pub fn checked_connections(
    listener: UnixListener,
    policy: AccessPolicy,
) -> ReceiverStream<std::io::Result<AuthorityFix<UnixStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match stream.peer_cred() {
                Ok(cred) if policy.allows(cred.uid(), cred.gid()) => {
                    tracing::debug!(
                        uid = cred.uid(),
                        gid = cred.gid(),
                        pid = cred.pid(),
                        "client connected"
                    );
                    if tx.send(Ok(AuthorityFix::new(stream))).await.is_err() {
                        return;
                    }
                }
                Ok(cred) => {
                    tracing::warn!(
                        uid = cred.uid(),
                        gid = cred.gid(),
                        pid = cred.pid(),
                        "refused a client not in the allow list"
                    );
                    drop(stream);
                }
                Err(e) => tracing::warn!("refused a client whose credentials cannot be read: {e}"),
            }
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let p = AccessPolicy {
            allow_root: true,
            uids: vec![1000],
            gids: vec![50],
        };
        assert!(p.allows(0, 0));
        assert!(p.allows(1000, 1000));
        assert!(p.allows(1001, 50));
        assert!(!p.allows(1001, 1001));
        let strict = AccessPolicy {
            allow_root: false,
            ..p
        };
        assert!(!strict.allows(0, 0));
        // Root's group alone is not root.
        assert!(!AccessPolicy::default().allows(65534, 0));
    }

    #[test]
    fn display() {
        assert_eq!(AccessPolicy::default().to_string(), "root");
        let p = AccessPolicy {
            allow_root: true,
            uids: vec![1000, 1001],
            gids: vec![50],
        };
        assert_eq!(p.to_string(), "root, uids 1000 1001, gids 50");
        let none = AccessPolicy {
            allow_root: false,
            uids: vec![],
            gids: vec![],
        };
        assert_eq!(none.to_string(), "nobody");
        let gid_only = AccessPolicy {
            gids: vec![7],
            ..none
        };
        assert_eq!(gid_only.to_string(), "gids 7");
    }
}

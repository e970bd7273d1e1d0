//! The few rtnetlink messages init sends: create a link, move a link into
//! another process's network namespace.
//!
//! Takes a [`LinkRequest`] and a sequence number and gives the bytes of one
//! `RTM_NEWLINK` request; takes the kernel's answer and gives the errno it
//! carries. Never touches the system: [`crate::sys::linux`] owns the socket.
//!
//! Hand-written rather than a crate: init needs two message shapes (a link
//! with an optional veth peer, and a namespace move by name) and one answer
//! shape (`NLMSG_ERROR`), about a hundred lines. The maintained Rust netlink
//! crates (`rtnetlink`, `netlink-packet-route` and their siblings) bring an
//! async runtime or a large generated message model into a static PID 1 that
//! otherwise depends on `libc` and `serde_json` only.

use crate::sys::Pid;

/// One change to the system's network links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkRequest {
    /// Create link `name` of `kind` (`veth` with its `peer`, or any kind
    /// the kernel knows, such as `dummy`). With `netns`, the link is created
    /// directly in the network namespace of that process; otherwise in
    /// init's own.
    Add {
        name: String,
        kind: String,
        peer: Option<String>,
        netns: Option<Pid>,
    },
    /// Move the existing link `name` (looked up in init's namespace) into
    /// the network namespace of process `pid`.
    Move { name: String, pid: Pid },
}

const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
/// `struct nlmsghdr`.
const HEADER: usize = 16;
/// `struct ifinfomsg`, all zero here: any family, no index.
const IFINFOMSG: [u8; 16] = [0; 16];

fn pad(buf: &mut Vec<u8>) {
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

/// Append one attribute whose payload `body` writes; returns nothing, fixes
/// the length afterwards so nested attributes need no size up front.
fn attr(buf: &mut Vec<u8>, kind: u16, body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&kind.to_ne_bytes());
    body(buf);
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    pad(buf);
}

/// A NUL-terminated interface name.
fn name_attr(buf: &mut Vec<u8>, name: &str) {
    attr(buf, IFLA_IFNAME, |b| {
        b.extend_from_slice(name.as_bytes());
        b.push(0);
    });
}

fn pid_attr(buf: &mut Vec<u8>, pid: Pid) {
    attr(buf, IFLA_NET_NS_PID, |b| {
        b.extend_from_slice(&(pid as u32).to_ne_bytes())
    });
}

/// The `RTM_NEWLINK` request for `req`, asking for an acknowledgement.
/// Adding uses `NLM_F_CREATE | NLM_F_EXCL` (an existing link of that name is
/// `EEXIST`); moving leaves both out, so the kernel looks the link up by
/// name and answers `ENODEV` when there is none.
pub fn request(req: &LinkRequest, seq: u32) -> Vec<u8> {
    let mut flags = NLM_F_REQUEST | NLM_F_ACK;
    let mut buf = vec![0; HEADER];
    buf.extend_from_slice(&IFINFOMSG);
    match req {
        LinkRequest::Add {
            name,
            kind,
            peer,
            netns,
        } => {
            flags |= NLM_F_CREATE | NLM_F_EXCL;
            name_attr(&mut buf, name);
            if let Some(pid) = netns {
                pid_attr(&mut buf, *pid);
            }
            attr(&mut buf, IFLA_LINKINFO, |b| {
                attr(b, IFLA_INFO_KIND, |b| b.extend_from_slice(kind.as_bytes()));
                if let Some(peer) = peer {
                    attr(b, IFLA_INFO_DATA, |b| {
                        attr(b, VETH_INFO_PEER, |b| {
                            b.extend_from_slice(&IFINFOMSG);
                            name_attr(b, peer);
                        })
                    });
                }
            });
        }
        LinkRequest::Move { name, pid } => {
            name_attr(&mut buf, name);
            pid_attr(&mut buf, *pid);
        }
    }
    let len = buf.len() as u32;
    buf[0..4].copy_from_slice(&len.to_ne_bytes());
    buf[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
    buf[6..8].copy_from_slice(&flags.to_ne_bytes());
    buf[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel fills in our port.
    buf
}

/// What the kernel answered to request `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Acknowledged (errno 0).
    Done,
    /// Refused with this errno.
    Failed(i32),
    /// No `NLMSG_ERROR` for `seq` in this datagram: read another.
    Pending,
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// Find the `NLMSG_ERROR` for `seq` among the messages of one datagram.
/// Malformed input ends the search (`Pending`), never panics.
pub fn answer(buf: &[u8], seq: u32) -> Answer {
    let mut at = 0;
    while let Some(len) = u32_at(buf, at) {
        let len = len as usize;
        if len < HEADER || at + len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        if kind == NLMSG_ERROR && u32_at(buf, at + 8) == Some(seq) {
            return match u32_at(buf, at + HEADER) {
                Some(0) => Answer::Done,
                Some(e) => Answer::Failed(-(e as i32)),
                None => Answer::Pending,
            };
        }
        at += (len + 3) & !3;
    }
    Answer::Pending
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attributes of `buf` as (type, payload), one level deep.
    fn attrs(mut buf: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        while buf.len() >= 4 {
            let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
            let kind = u16::from_ne_bytes([buf[2], buf[3]]);
            assert!(len >= 4 && len <= buf.len(), "bad attribute length {len}");
            out.push((kind, buf[4..len].to_vec()));
            buf = &buf[((len + 3) & !3).min(buf.len())..];
        }
        out
    }

    fn header(msg: &[u8]) -> (u32, u16, u16, u32) {
        (
            u32_at(msg, 0).unwrap(),
            u16::from_ne_bytes([msg[4], msg[5]]),
            u16::from_ne_bytes([msg[6], msg[7]]),
            u32_at(msg, 8).unwrap(),
        )
    }

    #[test]
    fn veth_pair_in_init_namespace() {
        let msg = request(
            &LinkRequest::Add {
                name: "veth0".into(),
                kind: "veth".into(),
                peer: Some("veth1".into()),
                netns: None,
            },
            7,
        );
        let (len, kind, flags, seq) = header(&msg);
        assert_eq!(len as usize, msg.len());
        assert_eq!(msg.len() % 4, 0);
        assert_eq!((kind, flags, seq), (RTM_NEWLINK, 0x605, 7));
        assert_eq!(&msg[HEADER..HEADER + 16], &[0; 16]);
        let top = attrs(&msg[HEADER + 16..]);
        assert_eq!(top[0], (IFLA_IFNAME, b"veth0\0".to_vec()));
        assert_eq!(top.len(), 2, "no IFLA_NET_NS_PID: {top:?}");
        assert_eq!(top[1].0, IFLA_LINKINFO);
        let info = attrs(&top[1].1);
        assert_eq!(info[0], (IFLA_INFO_KIND, b"veth".to_vec()));
        assert_eq!(info[1].0, IFLA_INFO_DATA);
        let data = attrs(&info[1].1);
        assert_eq!(data[0].0, VETH_INFO_PEER);
        let peer = &data[0].1;
        assert_eq!(&peer[..16], &[0; 16]);
        assert_eq!(attrs(&peer[16..]), [(IFLA_IFNAME, b"veth1\0".to_vec())]);
    }

    #[test]
    fn link_created_in_a_process_namespace() {
        let msg = request(
            &LinkRequest::Add {
                name: "dummy0".into(),
                kind: "dummy".into(),
                peer: None,
                netns: Some(4242),
            },
            1,
        );
        let top = attrs(&msg[HEADER + 16..]);
        assert_eq!(top[1], (IFLA_NET_NS_PID, 4242u32.to_ne_bytes().to_vec()));
        assert_eq!(
            attrs(&top[2].1),
            [(IFLA_INFO_KIND, b"dummy".to_vec())],
            "no IFLA_INFO_DATA without a peer"
        );
    }

    #[test]
    fn move_names_the_link_and_the_pid_without_create() {
        let msg = request(
            &LinkRequest::Move {
                name: "eth1".into(),
                pid: 99,
            },
            3,
        );
        let (len, kind, flags, seq) = header(&msg);
        assert_eq!(
            (len as usize, kind, flags, seq),
            (msg.len(), RTM_NEWLINK, 0x5, 3)
        );
        assert_eq!(
            attrs(&msg[HEADER + 16..]),
            [
                (IFLA_IFNAME, b"eth1\0".to_vec()),
                (IFLA_NET_NS_PID, 99u32.to_ne_bytes().to_vec())
            ]
        );
    }

    fn error_msg(seq: u32, errno: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&(-errno).to_ne_bytes());
        m.extend_from_slice(&[0; 16]);
        m
    }

    #[test]
    fn answers_are_matched_by_sequence() {
        assert_eq!(answer(&error_msg(5, 0), 5), Answer::Done);
        assert_eq!(
            answer(&error_msg(5, libc::EEXIST), 5),
            Answer::Failed(libc::EEXIST)
        );
        assert_eq!(answer(&error_msg(4, 0), 5), Answer::Pending);
        let mut two = error_msg(4, libc::ENODEV);
        two.extend(error_msg(5, libc::EPERM));
        assert_eq!(answer(&two, 5), Answer::Failed(libc::EPERM));
    }

    #[test]
    fn malformed_answers_never_panic() {
        for cut in 0..36 {
            assert_eq!(answer(&error_msg(5, 0)[..cut], 5), Answer::Pending);
        }
        let mut zero = error_msg(5, 0);
        zero[0..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(answer(&zero, 5), Answer::Pending);
    }
}

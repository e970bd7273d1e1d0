//! kiln-init: PID 1 of the images kiln builds, LinuxKit's `init` and
//! `service` in one static binary.
//!
//! It mounts the system filesystems; as the boot initrd's init, given
//! `root=` on the kernel command line, it mounts that root read-only under a
//! writable overlay and hands over to the init in it. It loads kernel
//! modules, runs the onboot
//! containers under `/containers/onboot` one by one with runc, starts the
//! services under `/containers/services`, reaps every child, and on a
//! shutdown signal runs `/containers/onshutdown`, stops the services and
//! powers off or reboots. Decisions are pure functions in their own modules;
//! every system call goes through the [`sys::Sys`] trait so the whole
//! sequence is tested without root. Nothing in it panics on input.

pub mod event;
pub mod init;
pub mod modules;
pub mod mountopt;
pub mod netlink;
pub mod rootfs;
pub mod runc;
pub mod runtime;
pub mod supervise;
pub mod sys;

#[cfg(test)]
mod fake;

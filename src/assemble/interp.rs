//! Can a container's program be loaded? Its ELF interpreter must be in its image.
//!
//! Takes an image tree, the content store, the container's effective
//! `args[0]` and `PATH`; gives the program's path and the `PT_INTERP`
//! interpreter it names when the interpreter is missing from the image, so
//! assemble can warn at build time instead of the container failing at boot.
//! Paths are looked up inside the tree, following its symlinks (at most 40);
//! nothing is read from the host. Only the ELF header and program headers are
//! read, and at most [`HEAD`] bytes of the file. Hand-written: the check needs
//! three fields of the header and one program header type, less code than
//! adapting an ELF crate's error model.

use std::collections::VecDeque;
use std::io::Read;

use crate::tree::{ContentStore, Kind, Tree};

/// How much of a program is read to find its interpreter.
const HEAD: u64 = 64 * 1024;
/// The `PATH` runc uses when the container's environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PT_INTERP: u32 = 3;

/// `Some((program, interpreter))` when `program` is an ELF file of `tree`
/// whose interpreter is not in `tree`.
pub fn missing_interpreter(
    tree: &Tree,
    store: &ContentStore,
    program: &str,
    env: &[String],
) -> Option<(String, String)> {
    let path = find_program(tree, program, env)?;
    let bytes = head(tree, store, &path)?;
    let interp = interpreter(&bytes)?;
    match resolve(tree, &interp) {
        Some(p)
            if matches!(
                tree.get(p.as_bytes()).map(|e| &e.kind),
                Some(Kind::File(_) | Kind::Hardlink(_))
            ) =>
        {
            None
        }
        _ => Some((format!("/{path}"), interp)),
    }
}

/// `program` as runc finds it: a path with a `/` as it is (relative to `/`),
/// a bare name in the directories of `PATH`.
fn find_program(tree: &Tree, program: &str, env: &[String]) -> Option<String> {
    if program.contains('/') {
        return resolve(tree, program);
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .filter(|d| !d.is_empty())
        .filter_map(|d| resolve(tree, &format!("{d}/{program}")))
        .find(|p| {
            matches!(
                tree.get(p.as_bytes()).map(|e| &e.kind),
                Some(Kind::File(_) | Kind::Hardlink(_))
            )
        })
}

/// The first [`HEAD`] bytes of the regular file at `path`.
fn head(tree: &Tree, store: &ContentStore, path: &str) -> Option<Vec<u8>> {
    let mut entry = tree.get(path.as_bytes())?;
    if let Kind::Hardlink(target) = &entry.kind {
        entry = tree.get(target)?;
    }
    let Kind::File(content) = &entry.kind else {
        return None;
    };
    let mut bytes = Vec::new();
    store
        .reader(content)
        .take(HEAD)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// `path` with every symlink of the tree followed: the tree key it ends at
/// (which may not exist as an entry), or `None` after 40 links or when a
/// directory on the way is missing.
fn resolve(tree: &Tree, path: &str) -> Option<String> {
    let mut pending: VecDeque<String> = path.split('/').map(str::to_string).collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => done.push(part),
        }
        let key = done.join("/");
        match tree.get(key.as_bytes()).map(|e| &e.kind) {
            Some(Kind::Symlink(target)) => {
                links += 1;
                if links > 40 {
                    return None;
                }
                done.pop();
                let target = String::from_utf8_lossy(target).into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                for p in target.split('/').rev() {
                    pending.push_front(p.to_string());
                }
            }
            Some(_) => {}
            // The last component may be missing (the caller checks it);
            // a missing directory on the way ends the walk.
            None if pending.iter().all(|p| p.is_empty() || p == ".") => {}
            None => return None,
        }
    }
    Some(done.join("/"))
}

/// The `PT_INTERP` path of an ELF file, if it has one that fits in `bytes`.
pub fn interpreter(bytes: &[u8]) -> Option<String> {
    if bytes.get(..4)? != b"\x7fELF" {
        return None;
    }
    let wide = match bytes.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match bytes.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let uint = |at: usize, len: usize| -> Option<u64> {
        let b = bytes.get(at..at.checked_add(len)?)?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if little { b[len - 1 - i] } else { b[i] };
            v = v << 8 | u64::from(byte);
        }
        Some(v)
    };
    let (phoff, phentsize, phnum) = if wide {
        (uint(0x20, 8)?, uint(0x36, 2)?, uint(0x38, 2)?)
    } else {
        (uint(0x1c, 4)?, uint(0x2a, 2)?, uint(0x2c, 2)?)
    };
    for i in 0..phnum {
        let at = usize::try_from(phoff.checked_add(i.checked_mul(phentsize)?)?).ok()?;
        if uint(at, 4)? != u64::from(PT_INTERP) {
            continue;
        }
        let (offset, size) = if wide {
            (uint(at + 8, 8)?, uint(at + 32, 8)?)
        } else {
            (uint(at + 4, 4)?, uint(at + 16, 4)?)
        };
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        let raw = bytes.get(start..end)?;
        let raw = raw.split(|&b| b == 0).next()?;
        return Some(String::from_utf8_lossy(raw).into_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;

    /// A minimal ELF64 little-endian header with one PT_INTERP program
    /// header naming `interp`.
    fn elf64(interp: &str) -> Vec<u8> {
        let mut b = vec![0u8; 0x40 + 0x38];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let ph = 0x40;
        b[ph..ph + 4].copy_from_slice(&PT_INTERP.to_le_bytes());
        let off = b.len() as u64;
        b[ph + 8..ph + 16].copy_from_slice(&off.to_le_bytes());
        b[ph + 32..ph + 40].copy_from_slice(&(interp.len() as u64 + 1).to_le_bytes());
        b.extend_from_slice(interp.as_bytes());
        b.push(0);
        b
    }

    /// The same as ELF32 big-endian.
    fn elf32_be(interp: &str) -> Vec<u8> {
        let mut b = vec![0u8; 0x34 + 0x20];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 1;
        b[5] = 2;
        b[0x1c..0x20].copy_from_slice(&0x34u32.to_be_bytes());
        b[0x2a..0x2c].copy_from_slice(&0x20u16.to_be_bytes());
        b[0x2c..0x2e].copy_from_slice(&1u16.to_be_bytes());
        let ph = 0x34;
        b[ph..ph + 4].copy_from_slice(&PT_INTERP.to_be_bytes());
        let off = b.len() as u32;
        b[ph + 4..ph + 8].copy_from_slice(&off.to_be_bytes());
        b[ph + 16..ph + 20].copy_from_slice(&(interp.len() as u32 + 1).to_be_bytes());
        b.extend_from_slice(interp.as_bytes());
        b.push(0);
        b
    }

    #[test]
    fn reads_pt_interp_of_both_classes_and_byte_orders() {
        let i = "/lib/ld-musl-x86_64.so.1";
        assert_eq!(interpreter(&elf64(i)).as_deref(), Some(i));
        assert_eq!(interpreter(&elf32_be(i)).as_deref(), Some(i));
        assert_eq!(interpreter(b"#!/bin/sh\n"), None);
        // Truncated or lying headers are no interpreter, never a panic.
        let full = elf64(i);
        for n in 0..full.len() {
            let _ = interpreter(&full[..n]);
        }
        let mut lying = elf64(i);
        lying[0x38..0x3a].copy_from_slice(&u16::MAX.to_le_bytes());
        lying[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(interpreter(&lying), None);
    }

    #[test]
    fn missing_interpreter_follows_path_and_symlinks() {
        let store = ContentStore::new().unwrap();
        let mut tree = Tree::new();
        let prog = store.add(&elf64("/lib/ld.so")).unwrap();
        tree.insert_with_parents(
            b"usr/bin/app".to_vec(),
            Entry::file(prog, 0o755, 0),
            0o755,
            0,
        );
        tree.insert_with_parents(b"bin".to_vec(), Entry::symlink("usr/bin", 0), 0o755, 0);
        let env = vec!["PATH=/bin".to_string()];
        assert_eq!(
            missing_interpreter(&tree, &store, "app", &env),
            Some(("/usr/bin/app".into(), "/lib/ld.so".into()))
        );
        assert_eq!(
            missing_interpreter(&tree, &store, "/bin/app", &[]),
            Some(("/usr/bin/app".into(), "/lib/ld.so".into()))
        );
        // The interpreter through a symlink, as distributions ship it.
        let ld = store.add(b"ld").unwrap();
        tree.insert_with_parents(
            b"lib/ld-real.so".to_vec(),
            Entry::file(ld, 0o755, 0),
            0o755,
            0,
        );
        tree.insert(b"lib/ld.so".to_vec(), Entry::symlink("ld-real.so", 0));
        assert_eq!(missing_interpreter(&tree, &store, "app", &env), None);
        // Not found, or not ELF: nothing to say.
        assert_eq!(missing_interpreter(&tree, &store, "nope", &env), None);
        let script = store.add(b"#!/bin/sh\n").unwrap();
        tree.insert(b"usr/bin/s".to_vec(), Entry::file(script, 0o755, 0));
        assert_eq!(missing_interpreter(&tree, &store, "/usr/bin/s", &[]), None);
        // A symlink loop ends.
        tree.insert(b"loop".to_vec(), Entry::symlink("/loop", 0));
        assert_eq!(missing_interpreter(&tree, &store, "/loop", &[]), None);
    }
}

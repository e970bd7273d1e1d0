//! Where images go in the tree: init at `/`, volumes and container bundles
//! under `containers/`, with LinuxKit's per-image filtering.
//!
//! Takes the [`Inputs`] and the tree being built; adds the init images
//! (grafted in order, later wins, APK databases merged), the volumes
//! (`containers/volumes/<name>/{lower,tmp,merged}`) and one bundle per
//! container (`config.json`, `runtime.json`, `rootfs/` or `lower/` +
//! `tmp/` + `rootfs/`), extracting each distinct image once. Never invents
//! metadata for image entries: only the paths LinuxKit generates
//! (`etc/hosts`, `etc/resolv.conf`, `etc/mtab`, missing mount points) are
//! created, with `epoch` as their mtime.

use std::collections::BTreeMap;
use std::io::{self, Read};

use super::runtime_config::{config_json, runtime_json, Bundle};
use super::{image_input, merge, store, AssembleError, IdMap, Inputs};
use crate::spec::Image;
use crate::tree::{join, Entry, Kind, Tree};

/// `/etc/hosts` in every image LinuxKit writes.
pub const HOSTS: &str = "127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n";
/// `/etc/resolv.conf` in container images.
pub const RESOLV: &str = "\n# no resolv.conf configured\n";
/// Where init and volume images' `/etc/resolv.conf` points.
pub const RESOLV_LINK: &str = "/run/resolvconf/resolv.conf";

/// Paths dropped from every image.
const EXCLUDED: &[&str] = &[".dockerenv", "Dockerfile", "dev/console", "etc/hostname"];
/// Mount points every image gets (kept as they are if the image has them).
const MOUNT_DIRS: &[&str] = &["dev", "dev/pts", "dev/shm", "etc", "proc", "sys"];

/// `containers/volumes/<name>`, no leading `/`.
pub fn volume_dir(name: &str) -> String {
    format!("containers/volumes/{name}")
}

/// How an image's `etc/resolv.conf` is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolv {
    /// A regular file saying none is configured (containers).
    File,
    /// A symlink to `/run/resolvconf/resolv.conf` (init and volumes).
    Symlink,
}

/// Graft `src` under `prefix` (later wins). A non-directory replacing a
/// directory drops what was below it; a non-directory in the way of a
/// path becomes a directory. Both are reported as warnings.
pub fn overlay(
    dst: &mut Tree,
    prefix: &[u8],
    src: Tree,
    epoch: i64,
    warnings: &mut Vec<String>,
    what: &str,
) {
    for (path, mut entry) in src.iter().map(|(p, e)| (p.clone(), e.clone())) {
        let full = join(prefix, &path);
        if let Some(bad) = non_dir_ancestor(dst, &full) {
            warnings.push(format!(
                "{what}: {} replaces the non-directory {} with a directory",
                show(&full),
                show(&bad)
            ));
        }
        dst.mkdir_parents(&full, 0o755, epoch);
        if let Kind::Hardlink(target) = &mut entry.kind {
            *target = join(prefix, target);
        }
        if let Some(old) = dst.get(&full) {
            if old.is_dir() && !entry.is_dir() && dst.children_of(&full).next().is_some() {
                warnings.push(format!(
                    "{what}: {} replaces a non-empty directory",
                    show(&full)
                ));
                dst.remove_children(&full);
            }
        }
        dst.insert(full, entry);
    }
}

fn non_dir_ancestor(tree: &Tree, path: &[u8]) -> Option<Vec<u8>> {
    let mut end = 0;
    while let Some(i) = path[end..].iter().position(|&b| b == b'/') {
        let dir = &path[..end + i];
        if let Some(e) = tree.get(dir) {
            if !e.is_dir() {
                return Some(dir.to_vec());
            }
        }
        end += i + 1;
    }
    None
}

pub(crate) fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// LinuxKit's per-image rewriting (`ImageTar`): drop the excluded names,
/// make sure the mount points exist, write `etc/hosts`,
/// `etc/resolv.conf` and (if missing) `etc/mtab`.
pub fn filter_image(
    tree: &mut Tree,
    resolv: Resolv,
    inputs: &Inputs,
    pos: &crate::spec::Pos,
) -> Result<(), AssembleError> {
    let epoch = inputs.epoch;
    for name in EXCLUDED {
        tree.remove_subtree(name.as_bytes());
    }
    for dir in MOUNT_DIRS {
        let key = dir.as_bytes();
        if !tree.get(key).is_some_and(Entry::is_dir) {
            tree.remove_subtree(key);
            tree.insert(key.to_vec(), Entry::dir(0o755, epoch));
        }
    }
    let hosts = store(inputs, pos, "etc/hosts", HOSTS.as_bytes())?;
    tree.remove_subtree(b"etc/hosts");
    tree.insert(b"etc/hosts".to_vec(), Entry::file(hosts, 0o644, epoch));
    tree.remove_subtree(b"etc/resolv.conf");
    let resolv_entry = match resolv {
        Resolv::File => Entry::file(
            store(inputs, pos, "etc/resolv.conf", RESOLV.as_bytes())?,
            0o644,
            epoch,
        ),
        Resolv::Symlink => Entry::new(Kind::Symlink(RESOLV_LINK.into()), 0o644, epoch),
    };
    tree.insert(b"etc/resolv.conf".to_vec(), resolv_entry);
    match tree.get_mut(b"etc/mtab") {
        Some(e) => e.mtime = epoch,
        None => {
            tree.insert(
                b"etc/mtab".to_vec(),
                Entry::new(Kind::Symlink(b"/proc/mounts".to_vec()), 0o755, epoch),
            );
        }
    }
    Ok(())
}

const APK_DB: &[u8] = b"lib/apk/db/installed";

/// The init images, in order, at the root; their APK databases merged.
pub fn add_init(
    tree: &mut Tree,
    inputs: &Inputs,
    warnings: &mut Vec<String>,
) -> Result<(), AssembleError> {
    let spec = inputs.spec;
    let Some(first) = spec.init.first() else {
        return Ok(());
    };
    let mut init = Tree::new();
    let mut dbs = Vec::new();
    for r in &spec.init {
        let input = image_input(inputs, r)?;
        if let Some(Entry {
            kind: Kind::File(c),
            ..
        }) = input.tree.get(APK_DB)
        {
            dbs.push(c.clone());
        }
        overlay(
            &mut init,
            b"",
            input.tree.clone(),
            inputs.epoch,
            warnings,
            &format!("init image {}", input.canonical),
        );
    }
    if dbs.len() > 1 {
        // Streamed from the store: a database is as large as its image says.
        let mut merged: Box<dyn Read> = Box::new(io::empty());
        for db in &dbs {
            merged = Box::new(merged.chain(inputs.store.reader(db)).chain(&b"\n\n"[..]));
        }
        let c = inputs
            .store
            .add_reader(&mut merged, None)
            .map_err(|err| AssembleError::Store {
                pos: first.pos.clone(),
                what: "the merged apk database".to_string(),
                err,
            })?;
        init.insert(APK_DB.to_vec(), Entry::file(c, 0o644, inputs.epoch));
    }
    filter_image(&mut init, Resolv::Symlink, inputs, &first.pos)?;
    overlay(tree, b"", init, inputs.epoch, warnings, "init images");
    Ok(())
}

fn usable_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

/// Mark `path` and its ancestors as kiln's own directories (0755, root).
fn own_dirs(tree: &mut Tree, path: &str, epoch: i64) {
    let mut end = 0;
    let bytes = path.as_bytes();
    loop {
        let next = bytes[end..]
            .iter()
            .position(|&b| b == b'/')
            .map(|i| end + i);
        let dir = &bytes[..next.unwrap_or(bytes.len())];
        if !tree.get(dir).is_some_and(Entry::is_dir) {
            tree.remove_subtree(dir);
        }
        tree.insert(dir.to_vec(), Entry::dir(0o755, epoch));
        match next {
            Some(i) => end = i + 1,
            None => break,
        }
    }
}

/// `containers/volumes/<name>/{lower,tmp,merged}`, `lower` holding the
/// volume's image if it has one.
pub fn add_volumes(
    tree: &mut Tree,
    inputs: &Inputs,
    warnings: &mut Vec<String>,
) -> Result<(), AssembleError> {
    for vol in &inputs.spec.volumes {
        if !usable_name(&vol.name) {
            return Err(AssembleError::BadName {
                pos: vol.pos.clone(),
                section: "volume",
                name: vol.name.clone(),
            });
        }
        let oci = match vol.format.as_deref() {
            None | Some("") | Some("filesystem") => false,
            Some("oci") => true,
            Some(f) => {
                return Err(AssembleError::VolumeFormat {
                    pos: vol.pos.clone(),
                    name: vol.name.clone(),
                    format: f.to_string(),
                })
            }
        };
        let dir = volume_dir(&vol.name);
        let lower = format!("{dir}/lower");
        own_dirs(tree, &lower, inputs.epoch);
        match (&vol.image, oci) {
            // The image's layout, blobs as they are: nothing in it is filtered.
            (Some(_), true) => {
                if let Some(t) = inputs.oci_volumes.get(&vol.name) {
                    overlay(
                        tree,
                        lower.as_bytes(),
                        t.clone(),
                        inputs.epoch,
                        warnings,
                        &format!("volume {}", vol.name),
                    );
                }
            }
            (Some(r), false) => {
                let input = image_input(inputs, r)?;
                let mut t = input.tree.clone();
                filter_image(&mut t, Resolv::Symlink, inputs, &r.pos)?;
                overlay(
                    tree,
                    lower.as_bytes(),
                    t,
                    inputs.epoch,
                    warnings,
                    &format!("volume {}", vol.name),
                );
            }
            (None, _) => {}
        }
        for sub in ["tmp", "merged"] {
            own_dirs(tree, &format!("{dir}/{sub}"), inputs.epoch);
        }
    }
    Ok(())
}

/// One bundle per onboot, onshutdown and service container.
pub fn add_containers(
    tree: &mut Tree,
    inputs: &Inputs,
    ids: &IdMap,
    warnings: &mut Vec<String>,
) -> Result<(), AssembleError> {
    let spec = inputs.spec;
    // canonical image → the first extracted root.
    let mut extracted: BTreeMap<String, String> = BTreeMap::new();
    let sections: [(&'static str, &'static str, &[Image], bool); 3] = [
        ("onboot", "onboot", &spec.onboot, true),
        ("onshutdown", "onshutdown", &spec.onshutdown, true),
        ("services", "service", &spec.services, false),
    ];
    for (section, singular, images, numbered) in sections {
        for (i, image) in images.iter().enumerate() {
            if !usable_name(&image.name) {
                return Err(AssembleError::BadName {
                    pos: image.pos.clone(),
                    section: singular,
                    name: image.name.clone(),
                });
            }
            let dir = if numbered {
                format!("containers/{section}/{i:03}-{}", image.name)
            } else {
                format!("containers/{section}/{}", image.name)
            };
            add_bundle(tree, inputs, ids, image, dir, &mut extracted, warnings)?;
        }
    }
    Ok(())
}

fn add_bundle(
    tree: &mut Tree,
    inputs: &Inputs,
    ids: &IdMap,
    image: &Image,
    dir: String,
    extracted: &mut BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<(), AssembleError> {
    let epoch = inputs.epoch;
    let input = image_input(inputs, &image.image)?;
    let readonly = merge::readonly(image, &input.defaults);
    let own_root = format!("{dir}/{}", if readonly { "rootfs" } else { "lower" });
    own_dirs(tree, &dir, epoch);
    let root = match extracted.get(&input.canonical) {
        Some(first) => first.clone(),
        None => {
            let mut t = input.tree.clone();
            filter_image(&mut t, Resolv::File, inputs, &image.pos)?;
            own_dirs(tree, &own_root, epoch);
            overlay(
                tree,
                own_root.as_bytes(),
                t,
                epoch,
                warnings,
                &format!("container {}", image.name),
            );
            extracted.insert(input.canonical.clone(), own_root.clone());
            own_root
        }
    };
    let eff = merge::effective(image, &input.defaults);
    let Some(program) = eff.args.first() else {
        return Err(AssembleError::NoCommand {
            pos: image.pos.clone(),
            name: image.name.clone(),
            image: input.canonical.clone(),
        });
    };
    if let Some((path, interp)) =
        super::interp::missing_interpreter(&input.tree, inputs.store, program, &eff.env)
    {
        warnings.push(format!(
            "{}: container {:?}: {path} needs the ELF interpreter {interp}, which image {} \
             does not have: it will fail to start",
            image.pos, image.name, input.canonical
        ));
    }
    let volumes = &inputs.spec.volumes;
    let config = config_json(image, &input.defaults, ids, volumes)?;
    let c = store(inputs, &image.pos, &format!("{dir}/config.json"), &config)?;
    tree.insert(
        format!("{dir}/config.json").into_bytes(),
        Entry::file(c, 0o644, epoch),
    );
    if !readonly {
        own_dirs(tree, &format!("{dir}/tmp"), epoch);
    }
    if !tree
        .get(format!("{dir}/rootfs").as_bytes())
        .is_some_and(Entry::is_dir)
    {
        own_dirs(tree, &format!("{dir}/rootfs"), epoch);
    }
    let bundle = Bundle {
        dir: dir.clone(),
        root,
        readonly,
    };
    let rt = runtime_json(image, &input.defaults, &bundle)?;
    let c = store(inputs, &image.pos, &format!("{dir}/runtime.json"), &rt)?;
    tree.insert(
        format!("{dir}/runtime.json").into_bytes(),
        Entry::file(c, 0o644, epoch),
    );
    Ok(())
}

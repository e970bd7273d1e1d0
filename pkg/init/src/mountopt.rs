//! Mount options as written in `runtime.json` (`["rbind", "ro", "size=10%"]`)
//! turned into what `mount(2)` takes.
//!
//! Takes a list of option strings and gives the `MS_*` flags, the separate
//! propagation flags (applied by a second `mount(2)` call, as the kernel ignores
//! them next to other flags) and the data string for the filesystem. Unknown
//! options go to the data string unchanged, in order. Never touches the system.

/// The parsed options of one mount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `MS_*` flags for the main call (no propagation flags).
    pub flags: u64,
    /// `MS_PRIVATE`, `MS_SHARED`, ... (with `MS_REC` for the `r` forms), or 0.
    pub propagation: u64,
    /// Filesystem-specific options, comma-separated.
    pub data: String,
}

impl Options {
    pub fn has(&self, flag: u64) -> bool {
        self.flags & flag == flag
    }
}

/// A flag option: its name, whether it sets (or clears) the flag, the flag.
const FLAGS: &[(&str, bool, u64)] = &[
    ("defaults", false, 0),
    ("ro", true, libc::MS_RDONLY),
    ("rw", false, libc::MS_RDONLY),
    ("nosuid", true, libc::MS_NOSUID),
    ("suid", false, libc::MS_NOSUID),
    ("nodev", true, libc::MS_NODEV),
    ("dev", false, libc::MS_NODEV),
    ("noexec", true, libc::MS_NOEXEC),
    ("exec", false, libc::MS_NOEXEC),
    ("sync", true, libc::MS_SYNCHRONOUS),
    ("async", false, libc::MS_SYNCHRONOUS),
    ("dirsync", true, libc::MS_DIRSYNC),
    ("remount", true, libc::MS_REMOUNT),
    ("mand", true, libc::MS_MANDLOCK),
    ("nomand", false, libc::MS_MANDLOCK),
    ("noatime", true, libc::MS_NOATIME),
    ("atime", false, libc::MS_NOATIME),
    ("nodiratime", true, libc::MS_NODIRATIME),
    ("diratime", false, libc::MS_NODIRATIME),
    ("relatime", true, libc::MS_RELATIME),
    ("norelatime", false, libc::MS_RELATIME),
    ("strictatime", true, libc::MS_STRICTATIME),
    ("nostrictatime", false, libc::MS_STRICTATIME),
    ("bind", true, libc::MS_BIND),
    ("rbind", true, libc::MS_BIND | libc::MS_REC),
];

const PROPAGATION: &[(&str, u64)] = &[
    ("private", libc::MS_PRIVATE),
    ("rprivate", libc::MS_PRIVATE | libc::MS_REC),
    ("shared", libc::MS_SHARED),
    ("rshared", libc::MS_SHARED | libc::MS_REC),
    ("slave", libc::MS_SLAVE),
    ("rslave", libc::MS_SLAVE | libc::MS_REC),
    ("unbindable", libc::MS_UNBINDABLE),
    ("runbindable", libc::MS_UNBINDABLE | libc::MS_REC),
];

/// Parse a list of options; later options win over earlier ones.
pub fn parse<S: AsRef<str>>(options: &[S]) -> Options {
    let mut out = Options::default();
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        let opt = opt.as_ref();
        if let Some(&(_, set, flag)) = FLAGS.iter().find(|(n, _, _)| *n == opt) {
            if set {
                out.flags |= flag;
            } else {
                out.flags &= !flag;
            }
        } else if let Some(&(_, flag)) = PROPAGATION.iter().find(|(n, _)| *n == opt) {
            out.propagation = flag;
        } else if !opt.is_empty() {
            data.push(opt);
        }
    }
    out.data = data.join(",");
    out
}

/// The value of `key=` in a data string (`upperdir=/x,workdir=/y`).
pub fn data_value<'a>(data: &'a str, key: &str) -> Option<&'a str> {
    data.split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_propagation_and_data_are_separated() {
        let o = parse(&["rbind", "ro", "rshared", "size=10%", "mode=755"]);
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY);
        assert_eq!(o.propagation, libc::MS_SHARED | libc::MS_REC);
        assert_eq!(o.data, "size=10%,mode=755");
    }

    #[test]
    fn later_options_win() {
        let o = parse(&["ro", "rw", "nosuid", "suid", "noexec"]);
        assert_eq!(o.flags, libc::MS_NOEXEC);
    }

    #[test]
    fn remount_private_has_no_data() {
        let o = parse(&["remount", "private"]);
        assert_eq!(o.flags, libc::MS_REMOUNT);
        assert_eq!(o.propagation, libc::MS_PRIVATE);
        assert_eq!(o.data, "");
    }

    #[test]
    fn overlay_options_are_data() {
        let o = parse(&["lowerdir=/a", "upperdir=/b/upper", "workdir=/b/work"]);
        assert_eq!(o.flags, 0);
        assert_eq!(o.data, "lowerdir=/a,upperdir=/b/upper,workdir=/b/work");
        assert_eq!(data_value(&o.data, "upperdir"), Some("/b/upper"));
        assert_eq!(data_value(&o.data, "workdir"), Some("/b/work"));
        assert_eq!(data_value(&o.data, "nope"), None);
    }

    #[test]
    fn empty_list_is_nothing() {
        let none: [&str; 0] = [];
        assert_eq!(parse(&none), Options::default());
    }
}

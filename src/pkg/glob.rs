//! Path globs for `keep:`: `*` and `?` within one component, `**` across any
//! number of components (zero included).
//!
//! Takes a glob and a normalised path (both `/`-separated, no leading `/`);
//! gives whether the path matches. Pure byte matching: no character
//! classes, no escapes, no host filesystem.

/// Whether `path` matches `glob`.
pub fn matches(glob: &str, path: &[u8]) -> bool {
    let g: Vec<&[u8]> = glob
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    let p: Vec<&[u8]> = if path.is_empty() {
        Vec::new()
    } else {
        path.split(|&b| b == b'/').collect()
    };
    components(&g, &p)
}

fn components(g: &[&[u8]], p: &[&[u8]]) -> bool {
    match g.split_first() {
        None => p.is_empty(),
        Some((first, rest)) if *first == b"**" => (0..=p.len()).any(|i| components(rest, &p[i..])),
        Some((first, rest)) => match p.split_first() {
            Some((name, prest)) => component(first, name) && components(rest, prest),
            None => false,
        },
    }
}

/// One component: `*` any run of bytes, `?` one byte, others literal.
fn component(g: &[u8], name: &[u8]) -> bool {
    // Iterative wildcard matching with one backtrack point.
    let (mut gi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < name.len() {
        match g.get(gi) {
            Some(b'*') => {
                star = Some((gi, ni));
                gi += 1;
            }
            Some(&c) if c == b'?' || c == name[ni] => {
                gi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sg, sn)) => {
                    gi = sg + 1;
                    ni = sn + 1;
                    star = Some((sg, sn + 1));
                }
                None => return false,
            },
        }
    }
    g[gi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn single_components() {
        assert!(matches("usr/sbin/runc", b"usr/sbin/runc"));
        assert!(!matches("usr/sbin/runc", b"usr/sbin/runc2"));
        assert!(matches("usr/bin/*", b"usr/bin/x"));
        assert!(!matches("usr/bin/*", b"usr/bin/x/y"));
        assert!(matches("boot/vmlinuz-*", b"boot/vmlinuz-6.1.0-13-amd64"));
        assert!(matches("lib/lib?.so*", b"lib/libc.so.6"));
        assert!(!matches("lib/*.so", b"lib/x.so.1"));
        assert!(matches("a*b*c", b"aXbYbZc"));
    }

    #[test]
    fn double_star_spans_components() {
        assert!(matches("usr/**/runc", b"usr/runc"));
        assert!(matches("usr/**/runc", b"usr/a/b/runc"));
        assert!(matches("lib/modules/**", b"lib/modules"));
        assert!(matches("lib/modules/**", b"lib/modules/6.1/kernel/x.ko"));
        assert!(!matches("lib/modules/**", b"lib/firmware"));
        assert!(matches("./usr/bin/x", b"usr/bin/x"));
    }
}

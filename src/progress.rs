//! Progress on long work (unpacking images, writing outputs, pulling
//! blobs), drawn on stderr only when stderr is a terminal.
//!
//! It takes counts of work done and gives a bar or a spinner (indicatif);
//! when stderr is not a terminal (CI, tests, redirects) every [`Progress`]
//! is inert and prints nothing, so logs hold only messages and warnings.
//! It never affects what a build writes: the bar only observes byte counts
//! and is cleared before kiln prints its results.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One bar or spinner, or nothing when stderr is not a terminal. Dropping
/// it clears the line (also on an early return by `?`).
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar over `total` bytes, labelled `what`.
    pub fn bytes(what: &str, total: u64) -> Progress {
        Progress::styled(
            what,
            Some(total),
            "kiln: {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
        )
    }

    /// A spinner labelled `what` counting bytes of a total not known ahead.
    pub fn byte_counter(what: &str) -> Progress {
        Progress::styled(
            what,
            None,
            "kiln: {spinner} {msg} {bytes} ({bytes_per_sec})",
        )
    }

    /// A spinner labelled `what`, for work of unknown size.
    pub fn spinner(what: &str) -> Progress {
        Progress::styled(what, None, "kiln: {spinner} {msg} ({elapsed})")
    }

    /// A bar of `len` units (a ticking spinner when `None`) drawn by `template`.
    fn styled(what: &str, len: Option<u64>, template: &str) -> Progress {
        Progress(std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(what.to_owned());
            if len.is_none() {
                bar.enable_steady_tick(Duration::from_millis(120));
            }
            bar
        }))
    }

    /// Whether anything is drawn (stderr is a terminal).
    pub fn is_shown(&self) -> bool {
        self.0.is_some()
    }

    /// Counts `n` more units (bytes) done.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    /// Replaces the label.
    pub fn set_message(&self, what: &str) {
        if let Some(bar) = &self.0 {
            bar.set_message(what.to_owned());
        }
    }

    /// `reader`, counting every byte read from it.
    pub fn reader<R: Read>(&self, reader: R) -> Counting<R> {
        Counting {
            inner: reader,
            bar: self.0.clone(),
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A reader that counts its bytes into a [`Progress`].
pub struct Counting<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        Ok(n)
    }
}

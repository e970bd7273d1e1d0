//! The bootable disk formats of a build: UKI, the UEFI ISO, raw-efi and the
//! containers over it (qcow2, VHD, VMDK, AWS raw, GCE tar.gz).
//!
//! Takes the assembled image, its compressed initrd and the systemd-stub
//! from the bootloader image in the layout (never from the host); gives
//! pending output files. Every intermediate (UKI, raw disk) lives in an
//! unnamed temp file in the output directory, so no disk is held in memory.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use anyhow::Context;

use super::{BuildOptions, Format, UserError};
use crate::assemble::Assembled;
use crate::atomic::AtomicFile;
use crate::oci::Layout;
use crate::output::tar::{write_tar_files, TarFile};
use crate::output::uki::{write_uki, Blob, UkiParts};
use crate::tree::{Content, ContentStore, Entry, Kind};
use crate::unpack::{Limits, Unpacked, Unpacker};

/// The image holding systemd-stub, built from `pkg/systemd-boot`.
pub const BOOTLOADER_IMAGE: &str = "kiln.dev/systemd-boot:0.1";
/// Where the stub is in that image.
pub const STUB_PATH: &str = "usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// Whether `format` is built from the UKI.
pub fn needs_uki(format: Format) -> bool {
    matches!(
        format,
        Format::Uki
            | Format::IsoEfi
            | Format::RawEfi
            | Format::Qcow2Efi
            | Format::Vhd
            | Format::DynamicVhd
            | Format::Vmdk
            | Format::Aws
            | Format::Gcp
    )
}

/// Whether `format` is built from the raw EFI disk.
fn needs_raw(format: Format) -> bool {
    needs_uki(format) && !matches!(format, Format::Uki | Format::IsoEfi)
}

/// systemd-stub's bytes, from the bootloader image in the layout.
fn stub(layout: &Layout, opts: &BuildOptions, store: &ContentStore) -> anyhow::Result<Vec<u8>> {
    let image = layout.resolve(BOOTLOADER_IMAGE, &opts.arch).map_err(|e| {
        UserError(format!(
            "EFI formats need the bootloader image {BOOTLOADER_IMAGE} in layout {}: build it with \
             `kiln pkg build --layout {} pkg/systemd-boot` ({e})",
            opts.layout.display(),
            opts.layout.display()
        ))
    })?;
    let mut unpacker = Unpacker::new(store, &Limits::default());
    for layer in &image.layers {
        let reader = layout.open_layer(&image, layer)?;
        unpacker.apply_layer(&layer.digest, layer.compression, reader)?;
    }
    let Unpacked { tree, .. } = unpacker.finish();
    match tree.get(STUB_PATH.as_bytes()).map(|e: &Entry| &e.kind) {
        Some(Kind::File(c)) => Ok(store.read(c)?),
        _ => Err(UserError(format!(
            "bootloader image {BOOTLOADER_IMAGE} has no file {STUB_PATH}"
        ))
        .into()),
    }
}

/// The `.osrel` section: identifies the image to boot menus.
fn os_release(name: &str) -> String {
    format!(
        "NAME=\"kiln\"\nID=kiln\nPRETTY_NAME=\"{name} (kiln {})\"\nVERSION_ID=\"{}\"\n",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION")
    )
}

/// Write every requested disk format; `initrd` is the compressed initrd.
pub fn write(
    opts: &BuildOptions,
    formats: &[Format],
    layout: &Layout,
    a: &Assembled,
    initrd: &mut File,
    store: &ContentStore,
    pending: &mut Vec<AtomicFile>,
) -> anyhow::Result<()> {
    let (dir, name) = (&opts.out_dir, &opts.name);
    let kernel = a.kernel.as_ref().ok_or_else(|| {
        UserError("EFI formats need a kernel: the spec has no `kernel.image`".into())
    })?;
    let stub = stub(layout, opts, store)?;
    let osrel = os_release(name);

    // The UKI, in the store (it is also the ESP's only file).
    let initrd_len = initrd.seek(SeekFrom::End(0))?;
    initrd.seek(SeekFrom::Start(0))?;
    let mut pieces = Vec::new();
    if let Some(ucode) = &a.ucode {
        pieces.push(Blob::Stored(ucode));
    }
    pieces.push(Blob::Reader {
        reader: initrd,
        len: initrd_len,
    });
    let parts = UkiParts {
        stub: &stub,
        osrel: osrel.as_bytes(),
        cmdline: a.cmdline.as_bytes(),
        initrd: pieces,
        linux: Blob::Stored(kernel),
    };
    let mut tmp =
        tempfile::tempfile_in(dir).context("creating a temp file in the output directory")?;
    {
        let mut buf = std::io::BufWriter::new(&mut tmp);
        write_uki(parts, store, &mut buf).context("writing the UKI")?;
        buf.flush()?;
    }
    tmp.seek(SeekFrom::Start(0))?;
    let uki = store.add_reader(&mut tmp, None)?;
    drop(tmp);
    if formats.contains(&Format::Uki) {
        let mut f = AtomicFile::create(dir, &format!("{name}.efi"))?;
        store.copy_to(&uki, &mut f)?;
        pending.push(f);
    }
    if formats.contains(&Format::IsoEfi) {
        let mut f = AtomicFile::create(dir, &format!("{name}-efi.iso"))?;
        let mut buf = std::io::BufWriter::with_capacity(1 << 20, &mut f);
        crate::output::iso::write_iso_efi(&uki, store, opts.epoch, name, &mut buf)
            .context("writing the ISO")?;
        buf.flush()?;
        drop(buf);
        pending.push(f);
    }
    if !formats.iter().any(|f| needs_raw(*f)) {
        return Ok(());
    }

    // The raw EFI disk, in a temp file; the other formats wrap it.
    let mut raw = tempfile::tempfile_in(dir)?;
    {
        let mut buf = std::io::BufWriter::new(&mut raw);
        crate::output::disk::write_raw_efi(&uki, store, opts.epoch, opts.size, &mut buf).map_err(
            |e| {
                if e.kind() == std::io::ErrorKind::InvalidInput {
                    anyhow::Error::new(UserError(e.to_string()))
                } else {
                    anyhow::Error::new(e).context("writing the raw EFI disk")
                }
            },
        )?;
        buf.flush()?;
    }
    let len = raw.seek(SeekFrom::End(0))?;
    for &format in formats.iter().filter(|f| needs_raw(**f)) {
        raw.seek(SeekFrom::Start(0))?;
        let file_name = match format {
            Format::RawEfi => format!("{name}-efi.img"),
            Format::Aws => format!("{name}.raw"),
            Format::Qcow2Efi => format!("{name}-efi.qcow2"),
            Format::Vhd => format!("{name}.vhd"),
            Format::DynamicVhd => format!("{name}-dynamic.vhd"),
            Format::Vmdk => format!("{name}.vmdk"),
            Format::Gcp => format!("{name}.img.tar.gz"),
            _ => unreachable!("only disk formats reach here"),
        };
        let mut f = AtomicFile::create(dir, &file_name)?;
        match format {
            Format::RawEfi | Format::Aws => {
                std::io::copy(&mut raw, &mut f)?;
            }
            Format::Qcow2Efi | Format::DynamicVhd | Format::Vmdk => {
                // These writers seek back to fill in headers: write to a
                // temp file, then stream it into the hashing output.
                let mut t = tempfile::tempfile_in(dir)?;
                match format {
                    Format::Qcow2Efi => crate::output::qcow2::write_qcow2(&mut raw, len, &mut t)?,
                    Format::DynamicVhd => {
                        crate::output::vhd::write_vhd_dynamic(&mut raw, len, opts.epoch, &mut t)?
                    }
                    _ => crate::output::vmdk::write_vmdk_stream_optimized(&mut raw, len, &mut t)?,
                };
                t.seek(SeekFrom::Start(0))?;
                std::io::copy(&mut t, &mut f)?;
            }
            Format::Vhd => {
                crate::output::vhd::write_vhd_fixed(&mut raw, len, opts.epoch, &mut f)?;
            }
            Format::Gcp => {
                // GCE imports a gzip'd tar holding exactly `disk.raw`.
                let disk: Content = store.add_reader(&mut raw, None)?;
                let mut gz = crate::output::compress::Compressor::new(
                    crate::output::compress::Compression::Gzip,
                    &mut f,
                    opts.threads,
                )?;
                let files = [TarFile {
                    name: b"disk.raw",
                    mode: 0o644,
                    mtime: opts.epoch,
                    content: &disk,
                }];
                write_tar_files(&files, store, &mut gz)?;
                gz.finish()?;
            }
            _ => unreachable!("only disk formats reach here"),
        }
        pending.push(f);
    }
    Ok(())
}

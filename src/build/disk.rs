//! The bootable disk formats of a build: UKI, the ISOs, raw-efi and the
//! containers over it (qcow2, VHD, VMDK, AWS raw, GCE tar.gz), raw-bios and
//! qcow2-bios.
//!
//! Takes the assembled image, its compressed initrd and the boot loaders
//! (systemd-stub, ISOLINUX, SYSLINUX) from the bootloader images in the
//! layout (never from the host); gives pending output files. Every intermediate (UKI, raw disk) lives in an
//! unnamed temp file in the output directory, so no disk is held in memory.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use anyhow::Context;

use super::{writer_error, BuildOptions, Format, UserError};
use crate::assemble::Assembled;
use crate::atomic::AtomicFile;
use crate::oci::Layout;
use crate::output::disk::BiosBoot;
use crate::output::iso::{write_iso, IsoLinux};
use crate::output::syslinux::install::{write_raw_bios, Syslinux};
use crate::output::tar::{write_tar_files, TarFile};
use crate::output::uki::{write_uki, Blob, UkiParts};
use crate::tree::{Content, ContentStore, Entry, Kind};
use crate::unpack::{Unpacked, Unpacker};

/// The image holding systemd-stub, built from `pkg/systemd-boot`.
pub const BOOTLOADER_IMAGE: &str = "kiln.dev/systemd-boot:0.1";
/// Where the stub is in that image.
pub const STUB_PATH: &str = "usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// The image holding ISOLINUX and SYSLINUX, built from `pkg/syslinux`.
pub const SYSLINUX_IMAGE: &str = "kiln.dev/syslinux:0.1";

/// Whether this module writes `format`.
pub fn is_disk(format: Format) -> bool {
    needs_uki(format) || needs_isolinux(format) || needs_syslinux(format)
}

/// Whether `format` is built from the raw-bios disk (SYSLINUX on FAT).
fn needs_syslinux(format: Format) -> bool {
    matches!(format, Format::RawBios | Format::Qcow2Bios)
}

/// Whether `format` boots BIOS firmware through ISOLINUX.
fn needs_isolinux(format: Format) -> bool {
    matches!(format, Format::IsoBios | Format::IsoEfi)
}

/// Whether `format` is built from the UKI.
pub fn needs_uki(format: Format) -> bool {
    matches!(
        format,
        Format::Uki
            | Format::IsoEfi
            | Format::IsoEfiInitrd
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
    needs_uki(format) && !matches!(format, Format::Uki | Format::IsoEfi | Format::IsoEfiInitrd)
}

/// The most bytes of one boot loader file (systemd-stub, `ldlinux.c32`, …)
/// read into memory; the real ones are under 200 KiB.
const MAX_LOADER_FILE: u64 = 16 << 20;

/// The files at `paths` of the bootloader image `image` in the layout,
/// in that order; `recipe` is the pkg/ directory that builds the image.
fn loader_files(
    layout: &Layout,
    opts: &BuildOptions,
    store: &ContentStore,
    image: &str,
    recipe: &str,
    paths: &[&str],
) -> anyhow::Result<Vec<Vec<u8>>> {
    let resolved = layout.resolve(image, &opts.arch).map_err(|e| {
        UserError(format!(
            "this format needs the bootloader image {image} in layout {}: build it with \
             `kiln pkg build --layout {} {recipe}` ({e})",
            opts.layout.display(),
            opts.layout.display()
        ))
    })?;
    // `--max-image-bytes` bounds these images as it bounds the spec's.
    let mut unpacker = Unpacker::new(store, &opts.limits);
    for layer in &resolved.layers {
        let reader = layout.open_layer(&resolved, layer)?;
        unpacker
            .apply_layer(&layer.digest, layer.compression, reader)
            .with_context(|| format!("unpacking bootloader image {image}"))?;
    }
    let Unpacked { tree, .. } = unpacker.finish();
    paths
        .iter()
        .map(
            |path| match tree.get(path.as_bytes()).map(|e: &Entry| &e.kind) {
                Some(Kind::File(c)) if c.len() > MAX_LOADER_FILE => Err(UserError(format!(
                    "bootloader image {image}: {path} is {} bytes, more than the {MAX_LOADER_FILE}                      a boot loader file may have",
                    c.len()
                ))
                .into()),
                Some(Kind::File(c)) => Ok(store.read(c)?),
                _ => Err(UserError(format!("bootloader image {image} has no file {path}")).into()),
            },
        )
        .collect()
}

/// systemd-stub's bytes, from the bootloader image in the layout.
fn stub(layout: &Layout, opts: &BuildOptions, store: &ContentStore) -> anyhow::Result<Vec<u8>> {
    let mut files = loader_files(
        layout,
        opts,
        store,
        BOOTLOADER_IMAGE,
        "pkg/systemd-boot",
        &[STUB_PATH],
    )?;
    Ok(files.remove(0))
}

/// ISOLINUX's files: `isolinux.bin`, its `ldlinux.c32`, `isohdpfx.bin`.
fn isolinux(
    layout: &Layout,
    opts: &BuildOptions,
    store: &ContentStore,
) -> anyhow::Result<[Vec<u8>; 3]> {
    let files = loader_files(
        layout,
        opts,
        store,
        SYSLINUX_IMAGE,
        "pkg/syslinux",
        &[
            "isolinux/isolinux.bin",
            "isolinux/ldlinux.c32",
            "isolinux/isohdpfx.bin",
        ],
    )?;
    files
        .try_into()
        .map_err(|_| anyhow::anyhow!("three files asked, three given"))
}

/// What a boot loader loads as the initrd: the microcode archive, if the
/// spec has one, then the compressed initrd, streamed from their start;
/// and its length.
fn boot_initrd<'a>(
    a: &Assembled,
    store: &ContentStore,
    initrd: &'a mut File,
) -> std::io::Result<(Box<dyn std::io::Read + 'a>, u64)> {
    let len = initrd.seek(SeekFrom::End(0))?;
    initrd.seek(SeekFrom::Start(0))?;
    Ok(match &a.ucode {
        Some(c) => (
            Box::new(std::io::Read::chain(store.reader(c), initrd)),
            c.len() + len,
        ),
        None => (Box::new(initrd), len),
    })
}

/// SYSLINUX's pieces for a disk whose MBR code is `mbr` (`mbr.bin` or
/// `gptmbr.bin`): that code, `ldlinux.bss`, `ldlinux.sys`, `ldlinux.c32`.
fn syslinux_pieces(
    layout: &Layout,
    opts: &BuildOptions,
    store: &ContentStore,
    mbr: &str,
) -> anyhow::Result<Vec<Vec<u8>>> {
    loader_files(
        layout,
        opts,
        store,
        SYSLINUX_IMAGE,
        "pkg/syslinux",
        &[
            mbr,
            "syslinux/ldlinux.bss",
            "syslinux/ldlinux.sys",
            "syslinux/ldlinux.c32",
        ],
    )
}

/// [`Syslinux`] over the four pieces [`syslinux_pieces`] gives.
fn syslinux(files: &[Vec<u8>]) -> Syslinux<'_> {
    Syslinux {
        mbr: &files[0],
        boot_sector: &files[1],
        ldlinux_sys: &files[2],
        ldlinux_c32: &files[3],
    }
}

/// The raw-bios disk and the qcow2 over it.
#[allow(clippy::too_many_arguments)]
fn raw_bios(
    opts: &BuildOptions,
    formats: &[Format],
    layout: &Layout,
    a: &Assembled,
    kernel: &Content,
    initrd: &mut File,
    store: &ContentStore,
    pending: &mut Vec<AtomicFile>,
) -> anyhow::Result<()> {
    let (dir, name) = (&opts.out_dir, &opts.name);
    let files = syslinux_pieces(layout, opts, store, "syslinux/mbr.bin")?;
    let sl = syslinux(&files);
    let (mut boot_initrd, _) = boot_initrd(a, store, initrd)?;
    let initrd = store.add_reader(&mut boot_initrd, None)?;
    let mut raw = tempfile::tempfile_in(dir)?;
    {
        let mut buf = std::io::BufWriter::with_capacity(1 << 20, &mut raw);
        write_raw_bios(
            &sl, kernel, &initrd, &a.cmdline, store, opts.epoch, opts.size, &mut buf,
        )
        .map_err(|e| writer_error(e, "writing the raw BIOS disk"))?;
        buf.flush()?;
    }
    let len = raw.seek(SeekFrom::End(0))?;
    if formats.contains(&Format::RawBios) {
        raw.seek(SeekFrom::Start(0))?;
        let mut f = AtomicFile::create(dir, &format!("{name}-bios.img"))?;
        std::io::copy(&mut raw, &mut f)?;
        pending.push(f);
    }
    if formats.contains(&Format::Qcow2Bios) {
        raw.seek(SeekFrom::Start(0))?;
        let mut t = tempfile::tempfile_in(dir)?;
        crate::output::qcow2::write_qcow2(&mut raw, len, &mut t)?;
        t.seek(SeekFrom::Start(0))?;
        let mut f = AtomicFile::create(dir, &format!("{name}.qcow2"))?;
        std::io::copy(&mut t, &mut f)?;
        pending.push(f);
    }
    Ok(())
}

/// The UKI (systemd-stub + os-release + cmdline + ucode and initrd +
/// kernel), in the store.
fn uki(
    opts: &BuildOptions,
    layout: &Layout,
    a: &Assembled,
    kernel: &Content,
    initrd: &mut File,
    initrd_len: u64,
    store: &ContentStore,
) -> anyhow::Result<Content> {
    let stub = stub(layout, opts, store)?;
    let osrel = os_release(&opts.name);
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
    let mut tmp = tempfile::tempfile_in(&opts.out_dir)
        .with_context(|| format!("creating a temp file in {}", opts.out_dir.display()))?;
    {
        let mut buf = std::io::BufWriter::new(&mut tmp);
        write_uki(parts, store, &mut buf).context("writing the UKI")?;
        buf.flush()?;
    }
    tmp.seek(SeekFrom::Start(0))?;
    Ok(store.add_reader(&mut tmp, None)?)
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
        UserError("bootable formats need a kernel: the spec has no `kernel.image`".into())
    })?;
    let initrd_len = initrd.seek(SeekFrom::End(0))?;
    let uki = if formats.iter().any(|f| needs_uki(*f)) {
        Some(uki(opts, layout, a, kernel, initrd, initrd_len, store)?)
    } else {
        None
    };
    if let (Some(uki), true) = (&uki, formats.contains(&Format::Uki)) {
        let mut f = AtomicFile::create(dir, &format!("{name}.efi"))?;
        store.copy_to(uki, &mut f)?;
        pending.push(f);
    }
    let isolinux = if formats.iter().any(|f| needs_isolinux(*f)) {
        Some(isolinux(layout, opts, store)?)
    } else {
        None
    };
    for (format, suffix) in [
        (Format::IsoBios, ".iso"),
        (Format::IsoEfi, "-efi.iso"),
        (Format::IsoEfiInitrd, "-efi-initrd.iso"),
    ] {
        if !formats.contains(&format) {
            continue;
        }
        let (mut initrd_reader, boot_initrd_len) = boot_initrd(a, store, initrd)?;
        let bios = match (&isolinux, needs_isolinux(format)) {
            (Some([loader, ldlinux_c32, mbr]), true) => Some(IsoLinux {
                loader,
                ldlinux_c32,
                mbr,
                kernel,
                initrd: &mut initrd_reader,
                initrd_len: boot_initrd_len,
                cmdline: &a.cmdline,
            }),
            _ => None,
        };
        let efi = if needs_uki(format) {
            uki.as_ref()
        } else {
            None
        };
        let mut f = AtomicFile::create(dir, &format!("{name}{suffix}"))?;
        let mut buf = std::io::BufWriter::with_capacity(1 << 20, &mut f);
        write_iso(bios, efi, store, opts.epoch, name, &mut buf)
            .map_err(|e| writer_error(e, "writing the ISO"))?;
        buf.flush()?;
        drop(buf);
        pending.push(f);
    }
    if formats.iter().any(|f| needs_syslinux(*f)) {
        raw_bios(opts, formats, layout, a, kernel, initrd, store, pending)?;
    }
    let Some(uki) = uki else {
        return Ok(());
    };
    if !formats.iter().any(|f| needs_raw(*f)) {
        return Ok(());
    }

    // The raw hybrid disk, in a temp file; the other formats wrap it. Its
    // BIOS half is SYSLINUX on the ESP, loading the same kernel and initrd
    // as the UKI.
    let pieces = syslinux_pieces(layout, opts, store, "syslinux/gptmbr.bin")?;
    let sl = syslinux(&pieces);
    let (mut boot_initrd, _) = boot_initrd(a, store, initrd)?;
    let bios_initrd = store.add_reader(&mut boot_initrd, None)?;
    drop(boot_initrd);
    let bios = BiosBoot {
        syslinux: &sl,
        kernel,
        initrd: &bios_initrd,
        cmdline: &a.cmdline,
    };
    let mut raw = tempfile::tempfile_in(dir)?;
    {
        let mut buf = std::io::BufWriter::new(&mut raw);
        crate::output::disk::write_raw_efi(
            &uki,
            Some(&bios),
            store,
            opts.epoch,
            opts.size,
            &mut buf,
        )
        .map_err(|e| writer_error(e, "writing the raw hybrid disk"))?;
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

//! Drivers whose NVML lacks a symbol: a copy of the stand-in with some of its exports hidden.
//!
//! Which versioned entry points a `libnvidia-ml.so` exports depends on the driver: R440 has
//! no `nvmlDeviceGetComputeRunningProcesses_v2`, R470 no `_v3`, 535.98 dropped the `_v3`
//! process calls that 535.104.05 put back (see docs/nvml-real-drivers.md). A caller finds out
//! at `dlsym` (nvml-wrapper: `FailedToLoadSymbol`), before any call, so the JSON state file,
//! read at each call, cannot model it. [`hide_symbols`] does it to a copy of the library
//! instead: it renames the named entries of the dynamic string table (`n` becomes `X`), so
//! that the dynamic linker's lookup, which compares names, no longer finds them.

use std::io;
use std::path::Path;

const SHT_DYNSYM: u32 = 11;

fn u16_at(b: &[u8], at: usize) -> io::Result<u16> {
    let bytes = b.get(at..at + 2).ok_or_else(short)?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn u32_at(b: &[u8], at: usize) -> io::Result<u32> {
    let bytes = b.get(at..at + 4).ok_or_else(short)?;
    Ok(u32::from_le_bytes(bytes.try_into().map_err(|_| short())?))
}

fn u64_at(b: &[u8], at: usize) -> io::Result<usize> {
    let bytes = b.get(at..at + 8).ok_or_else(short)?;
    let v = u64::from_le_bytes(bytes.try_into().map_err(|_| short())?);
    usize::try_from(v).map_err(|_| short())
}

fn short() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "not a 64-bit little-endian ELF file",
    )
}

/// Hide `names` from `dlsym` in the stand-in copy at `lib` (64-bit little-endian ELF, as
/// built here). Fails, changing nothing, if a name is not a whole entry of `.dynstr`.
pub fn hide_symbols(lib: &Path, names: &[&str]) -> io::Result<()> {
    let mut elf = std::fs::read(lib)?;
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err(short());
    }
    let (shoff, shentsize, shnum) = (
        u64_at(&elf, 0x28)?,
        usize::from(u16_at(&elf, 0x3a)?),
        usize::from(u16_at(&elf, 0x3c)?),
    );
    let section = |i: usize| shoff + i * shentsize;
    let dynsym = (0..shnum)
        .find(|&i| u32_at(&elf, section(i) + 4).is_ok_and(|t| t == SHT_DYNSYM))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no .dynsym"))?;
    let dynstr = u32_at(&elf, section(dynsym) + 40)? as usize;
    let (start, size) = (
        u64_at(&elf, section(dynstr) + 24)?,
        u64_at(&elf, section(dynstr) + 32)?,
    );
    let table = start..start.checked_add(size).ok_or_else(short)?;
    elf.get(table.clone()).ok_or_else(short)?;
    for name in names {
        let needle = [b"\0", name.as_bytes(), b"\0"].concat();
        let at = elf[table.clone()]
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{name} not in .dynstr"))
            })?;
        elf[start + at + 1] = b'X';
    }
    std::fs::write(lib, elf)
}

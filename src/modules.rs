//! The modules (executable, shared libraries) loaded in this process: where each is mapped,
//! its GNU build id, its path; and the full names of functions from an executable's symbol
//! table, for builds whose debug information keeps only short names
//! (`debug = "line-tables-only"`).
//!
//! [`each_module`] allocates nothing and takes no lock of ours, so the native crash handler
//! uses it inside a signal handler; everything else here runs on consentry's worker.
#![allow(unsafe_code)]

#[cfg(target_os = "linux")]
use std::ffi::{CStr, c_int, c_void};

/// A module as the loader describes it, borrowed for the duration of a callback.
#[derive(Debug)]
pub(crate) struct ModuleView<'a> {
    pub(crate) base: u64,
    pub(crate) size: u64,
    pub(crate) vmaddr: u64,
    pub(crate) build_id: &'a [u8],
    pub(crate) name: &'a [u8],
}

/// Calls `f` for every loaded module, through `dl_iterate_phdr` (which the unwinder
/// itself uses; it allocates nothing).
#[cfg(target_os = "linux")]
#[allow(clippy::useless_conversion)] // `u64::from` of a 64-bit field, kept for 32-bit Linux
pub(crate) fn each_module(f: &mut dyn FnMut(ModuleView<'_>)) {
    unsafe extern "C" fn callback(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid `info`; `data` is the `&mut dyn FnMut` below.
        unsafe {
            let info = &*info;
            let f = &mut *data.cast::<&mut dyn FnMut(ModuleView<'_>)>();
            let phdrs = if info.dlpi_phdr.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum))
            };
            let mut low = u64::MAX;
            let mut high = 0u64;
            let mut build_id: &[u8] = &[];
            for ph in phdrs {
                // `u64::from`: these are 32-bit on 32-bit Linux.
                let (vaddr, memsz) = (u64::from(ph.p_vaddr), u64::from(ph.p_memsz));
                if ph.p_type == libc::PT_LOAD {
                    low = low.min(vaddr);
                    high = high.max(vaddr.saturating_add(memsz));
                } else if ph.p_type == libc::PT_NOTE && build_id.is_empty() {
                    let at = u64::from(info.dlpi_addr).wrapping_add(vaddr);
                    let notes =
                        std::slice::from_raw_parts(at as usize as *const u8, ph.p_memsz as usize);
                    build_id = gnu_build_id(notes);
                }
            }
            if low >= high {
                return 0;
            }
            let name = if info.dlpi_name.is_null() {
                &[][..]
            } else {
                CStr::from_ptr(info.dlpi_name).to_bytes()
            };
            f(ModuleView {
                base: u64::from(info.dlpi_addr).wrapping_add(low),
                size: high - low,
                vmaddr: low,
                build_id,
                name,
            });
            0
        }
    }
    let mut f = f;
    // SAFETY: the callback reads only what the loader hands it.
    unsafe {
        libc::dl_iterate_phdr(Some(callback), (&raw mut f).cast());
    }
}

/// The descriptor of the `NT_GNU_BUILD_ID` note in a `PT_NOTE` segment.
#[cfg(target_os = "linux")]
fn gnu_build_id(mut notes: &[u8]) -> &[u8] {
    let word = |b: &[u8], i: usize| -> Option<usize> {
        Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    let align = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let (Some(namesz), Some(descsz), Some(kind)) =
            (word(notes, 0), word(notes, 4), word(notes, 8))
        else {
            return &[];
        };
        let name_end = 12 + align(namesz);
        let desc_end = name_end + align(descsz);
        if desc_end > notes.len() {
            return &[];
        }
        if kind == 3 && notes.get(12..12 + namesz) == Some(b"GNU\0") {
            return &notes[name_end..name_end + descsz.min(64)];
        }
        notes = &notes[desc_end..];
    }
    &[]
}

/// Calls `f` for every loaded module, through `K32EnumProcessModules`: its base, the
/// image size, link time stamp and CodeView id read from its mapped PE headers (see
/// [`pe_id`]), and its file name. Allocates nothing: the handle list and the name are on
/// the stack (at most 256 modules).
#[cfg(windows)]
pub(crate) fn each_module(f: &mut dyn FnMut(ModuleView<'_>)) {
    use std::ffi::c_void;
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn GetCurrentProcess() -> *mut c_void;
        fn K32EnumProcessModules(
            process: *mut c_void,
            modules: *mut *mut c_void,
            bytes: u32,
            needed: *mut u32,
        ) -> i32;
        fn K32GetModuleBaseNameW(
            process: *mut c_void,
            module: *mut c_void,
            name: *mut u16,
            size: u32,
        ) -> u32;
    }
    let mut handles = [std::ptr::null_mut::<c_void>(); 256];
    let mut needed = 0u32;
    // SAFETY: the pseudo handle of this process; the array and its size in bytes.
    let listed = unsafe {
        let process = GetCurrentProcess();
        K32EnumProcessModules(
            process,
            handles.as_mut_ptr(),
            std::mem::size_of_val(&handles) as u32,
            &mut needed,
        ) != 0
    };
    if !listed {
        return;
    }
    let count = (needed as usize / std::mem::size_of::<*mut c_void>()).min(handles.len());
    for &module in &handles[..count] {
        if module.is_null() {
            continue;
        }
        // SAFETY: a loaded module's headers are mapped from its base; `pe_header` bounds
        // every read by the sizes it finds there.
        let Some(header) = (unsafe { pe_header(module as *const u8) }) else {
            continue;
        };
        let mut wide = [0u16; 260];
        // SAFETY: as above; the buffer and its length in characters.
        let n = unsafe {
            K32GetModuleBaseNameW(
                GetCurrentProcess(),
                module,
                wide.as_mut_ptr(),
                wide.len() as u32,
            )
        } as usize;
        let mut name = [0u8; 260 * 3];
        let mut len = 0;
        for c in char::decode_utf16(wide[..n.min(wide.len())].iter().copied()) {
            let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
            if len + c.len_utf8() > name.len() {
                break;
            }
            len += c.encode_utf8(&mut name[len..]).len();
        }
        f(ModuleView {
            base: module as u64,
            size: header.size,
            vmaddr: header.image_base,
            build_id: &header.id[..header.id_len],
            name: &name[..len],
        });
    }
}

/// What a mapped PE image's headers say about it.
#[cfg(any(windows, test))]
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PeHeader {
    pub(crate) size: u64,
    pub(crate) image_base: u64,
    /// Link time stamp and image size (4 bytes each, little-endian), then the CodeView
    /// GUID (16 bytes) and age (4) when there is an `RSDS` record.
    pub(crate) id: [u8; 28],
    pub(crate) id_len: usize,
}

/// Reads the headers of the PE image mapped at `base` (`MZ`, `PE\0\0`, the optional
/// header, the debug directory's CodeView entry). `None` when they are not those of a PE
/// image; every offset is checked against the image size the headers give.
///
/// # Safety
/// `base` is the start of a mapped image (a module handle), or of readable memory at least
/// as large as the image size its headers give.
#[cfg(any(windows, test))]
pub(crate) unsafe fn pe_header(base: *const u8) -> Option<PeHeader> {
    // SAFETY: the caller's promise; reads are within the first 4 KiB (the headers' page)
    // until the image size is known, and within it after.
    let read = |at: usize, limit: usize| -> Option<u32> {
        if at.checked_add(4)? > limit {
            return None;
        }
        Some(unsafe { std::ptr::read_unaligned(base.add(at).cast::<u32>()) })
    };
    const HEADERS: usize = 4096;
    if read(0, HEADERS)? & 0xffff != 0x5a4d {
        return None;
    }
    let pe = read(0x3c, HEADERS)? as usize;
    if read(pe, HEADERS)? != 0x0000_4550 {
        return None;
    }
    let coff = pe + 4;
    let stamp = read(coff + 4, HEADERS)?;
    let opt = coff + 20;
    let magic = read(opt, HEADERS)? & 0xffff;
    let size = read(opt + 56, HEADERS)? as usize;
    let (image_base, dirs, count) = match magic {
        0x20b => {
            let low = read(opt + 24, HEADERS)?;
            let high = read(opt + 28, HEADERS)?;
            (
                u64::from(low) | u64::from(high) << 32,
                opt + 112,
                read(opt + 108, HEADERS)?,
            )
        }
        0x10b => (
            u64::from(read(opt + 28, HEADERS)?),
            opt + 96,
            read(opt + 92, HEADERS)?,
        ),
        _ => return None,
    };
    if size < HEADERS.min(opt) {
        return None;
    }
    let mut id = [0u8; 28];
    id[0..4].copy_from_slice(&stamp.to_le_bytes());
    id[4..8].copy_from_slice(&(size as u32).to_le_bytes());
    let mut id_len = 8;
    // The debug directory (the 7th data directory): its CodeView (type 2) entry.
    if count > 6 {
        let rva = read(dirs + 6 * 8, HEADERS)? as usize;
        let len = read(dirs + 6 * 8 + 4, HEADERS)? as usize;
        for i in 0..(len / 28).min(16) {
            let entry = rva + i * 28;
            if read(entry + 12, size) != Some(2) {
                continue;
            }
            let data = read(entry + 20, size).unwrap_or(0) as usize;
            if data != 0 && read(data, size) == Some(u32::from_le_bytes(*b"RSDS")) {
                let words = [
                    read(data + 4, size),
                    read(data + 8, size),
                    read(data + 12, size),
                    read(data + 16, size),
                    read(data + 20, size),
                ];
                if words.iter().all(Option::is_some) {
                    for (k, w) in words.iter().enumerate() {
                        id[8 + k * 4..12 + k * 4].copy_from_slice(&w.unwrap_or(0).to_le_bytes());
                    }
                    id_len = 28;
                }
                break;
            }
        }
    }
    Some(PeHeader {
        size: size as u64,
        image_base,
        id,
        id_len,
    })
}

/// Where native modules are not listed (neither Linux nor Windows): nothing.
#[cfg(not(any(target_os = "linux", windows)))]
pub(crate) fn each_module(_f: &mut dyn FnMut(ModuleView<'_>)) {}

/// The most symbols read from a symbol table.
#[cfg(target_os = "linux")]
const SYMBOLS_MAX: usize = 2_000_000;

/// Where symbol tables are not read (not Linux): no names.
#[cfg(not(target_os = "linux"))]
pub(crate) fn executable_names(addrs: &[u64]) -> Vec<Option<String>> {
    vec![None; addrs.len()]
}

/// The most addresses whose names are remembered (a report's frames repeat from report to
/// report: `main`, the thread start, the app's call sites).
#[cfg(target_os = "linux")]
const NAMES_CACHED: usize = 4096;

/// For each address of this process (any order), the full demangled name (without its hash)
/// of the executable's function that contains it, from the executable's symbol table; `None`
/// for an address outside the executable or without a symbol. Answers remembered from
/// earlier calls are used; for the others the symbol and string tables are read (the file is
/// not loaded whole), in one pass over the symbols.
#[cfg(target_os = "linux")]
pub(crate) fn executable_names(addrs: &[u64]) -> Vec<Option<String>> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static CACHE: LazyLock<Mutex<HashMap<u64, Option<String>>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut out = vec![None; addrs.len()];
    let mut missing = Vec::new();
    if let Ok(cache) = CACHE.lock() {
        for (i, a) in addrs.iter().enumerate() {
            match cache.get(a) {
                Some(name) => out[i] = name.clone(),
                None => missing.push(i),
            }
        }
    } else {
        missing.extend(0..addrs.len());
    }
    if missing.is_empty() {
        return out;
    }
    let wanted: Vec<u64> = missing.iter().map(|&i| addrs[i]).collect();
    let found = read_names(&wanted);
    if let Ok(mut cache) = CACHE.lock() {
        if cache.len() + found.len() > NAMES_CACHED {
            cache.clear();
        }
        for (&a, name) in wanted.iter().zip(&found) {
            cache.insert(a, name.clone());
        }
    }
    for (i, name) in missing.into_iter().zip(found) {
        out[i] = name;
    }
    out
}

/// [`executable_names`] without the cache.
#[cfg(target_os = "linux")]
fn read_names(addrs: &[u64]) -> Vec<Option<String>> {
    let mut out = vec![None; addrs.len()];
    let Some((base, size, vmaddr)) = executable_mapping() else {
        return out;
    };
    let Ok(file) = std::fs::File::open("/proc/self/exe")
        .or_else(|_| std::env::current_exe().and_then(std::fs::File::open))
    else {
        return out;
    };
    let cache = object::read::ReadCache::new(file);
    let Ok(obj) = object::File::parse(&cache) else {
        return out;
    };
    use object::{Object, ObjectSymbol, SymbolKind};
    // Addresses as the file states them.
    let wanted: Vec<Option<u64>> = addrs
        .iter()
        .map(|&a| {
            a.checked_sub(base)
                .filter(|off| *off < size)
                .map(|off| off + vmaddr)
        })
        .collect();
    // The innermost symbol containing each address; `false` once two symbols start there
    // (the linker folded identical functions into one: its name could be another crate's).
    let mut best: Vec<Option<(u64, object::SymbolIndex, bool)>> = vec![None; addrs.len()];
    for sym in obj.symbols().take(SYMBOLS_MAX) {
        if sym.kind() != SymbolKind::Text || sym.size() == 0 {
            continue;
        }
        let (start, size) = (sym.address(), sym.size());
        for (i, w) in wanted.iter().enumerate() {
            let Some(w) = *w else { continue };
            if w < start || w - start >= size {
                continue;
            }
            match best[i] {
                Some((s, _, _)) if start < s => {}
                Some((s, index, _)) if start == s => {
                    let same_name = obj
                        .symbol_by_index(index)
                        .is_ok_and(|other| other.name_bytes().ok() == sym.name_bytes().ok());
                    if !same_name {
                        best[i] = Some((s, index, false));
                    }
                }
                _ => best[i] = Some((start, sym.index(), true)),
            }
        }
    }
    for (slot, found) in out.iter_mut().zip(best) {
        let name = found
            .filter(|(_, _, unique)| *unique)
            .and_then(|(_, index, _)| obj.symbol_by_index(index).ok())
            .and_then(|sym| sym.name_bytes().ok().map(<[u8]>::to_vec));
        if let Some(name) = name {
            let mangled = String::from_utf8_lossy(&name);
            let demangled = format!("{:#}", rustc_demangle::demangle(&mangled));
            *slot = Some(crate::bound::cut_owned(demangled, 1024));
        }
    }
    out
}

/// Where the executable is mapped in this process: its lowest segment's address, the span of
/// its segments, and the address its lowest segment asks for.
#[cfg(target_os = "linux")]
fn executable_mapping() -> Option<(u64, u64, u64)> {
    let mut found = None;
    each_module(&mut |m: ModuleView<'_>| {
        if m.name.is_empty() && found.is_none() {
            found = Some((m.base, m.size, m.vmaddr));
        }
    });
    found
}

/// The symbol table's name for a frame whose debug information named it `short` (no module
/// path: `main`, `call_once<fn(), ()>`), when it is the same function: the last segment of
/// the full name is the short name without its generic arguments.
pub(crate) fn fuller_name(short: &str, full: &str) -> Option<String> {
    if short.contains("::") || !full.contains("::") {
        return None;
    }
    let base = short.split('<').next().unwrap_or(short);
    let last = full.rsplit("::").next().unwrap_or(full);
    (!base.is_empty() && base == last).then(|| full.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_of_this_test() -> u64 {
        std::hint::black_box(a_function_of_this_test as *const () as usize as u64)
    }

    #[test]
    fn a_short_name_takes_the_full_one_only_for_the_same_function() {
        assert_eq!(
            fuller_name("main", "fixture::main").as_deref(),
            Some("fixture::main")
        );
        assert_eq!(
            fuller_name(
                "call_once<fn(), ()>",
                "core::ops::function::FnOnce::call_once"
            )
            .as_deref(),
            Some("core::ops::function::FnOnce::call_once")
        );
        // An inlined function's name against its caller's symbol: kept.
        assert_eq!(fuller_name("load", "fixture::main"), None);
        assert_eq!(fuller_name("fixture::main", "fixture::main"), None);
        assert_eq!(fuller_name("main", "main"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_executable_is_listed_with_its_build_id() {
        let mut main = None;
        each_module(&mut |m: ModuleView<'_>| {
            if m.name.is_empty() && main.is_none() {
                main = Some(m.build_id.to_vec());
            }
        });
        assert!(!main.expect("the executable").is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn full_names_come_from_the_symbol_table() {
        let addr = a_function_of_this_test();
        let names = executable_names(&[addr + 1, 0]);
        assert_eq!(
            names[0].as_deref(),
            Some("consentry::modules::tests::a_function_of_this_test")
        );
        assert_eq!(names[1], None);
    }
}

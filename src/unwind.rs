//! Walking the calling thread's stack: its return addresses, innermost first, unresolved.
//!
//! `capture_error` walks the stack on the app's thread, so the walk is what the app pays.
//! libgcc's `_Unwind_Backtrace` (what `backtrace::trace` calls) finds and interprets the
//! DWARF call-frame information of every frame anew, about 150 ns a frame. On x86-64 Linux
//! (glibc) the walk is done by `framehop` instead, which reads the same `.eh_frame`
//! information in place and caches the rule of each address it has seen: about 15 ns a
//! frame once warm (BENCHMARKS.md). Anything it cannot vouch for falls back to libgcc, so
//! the result is never worse than before:
//!
//! - the shared state is busy (another thread is walking, or a fork left it locked);
//! - a frame lies outside every module whose unwind information was read;
//! - a read would leave the thread's stack, or the walk ends without reaching the root.
//!
//! The walk runs inside a `dl_iterate_phdr` callback, which holds the loader's lock: no
//! library can be unloaded while its unwind information is read, and a load or an unload
//! since the last walk (glibc counts both) makes the module list be read again.

/// The return addresses of the calling thread's stack, innermost first (the first is in
/// this function's caller chain), at most `max` of them.
pub(crate) fn walk(max: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(max.min(64));
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    if fast::walk(max, &mut out) {
        return out;
    }
    out.clear();
    slow(max, &mut out);
    out
}

/// The walk through libgcc (or the platform's unwinder).
#[allow(unsafe_code)]
#[inline(never)]
fn slow(max: usize, out: &mut Vec<usize>) {
    let mut push = |frame: &backtrace::Frame| {
        out.push(frame.ip() as usize);
        out.len() < max
    };
    #[cfg(unix)]
    // SAFETY: `trace_unsynchronized` is unsafe only because the unwinder of some platforms
    // (dbghelp on Windows) is not thread-safe; on Unix it is `_Unwind_Backtrace`, which is.
    // The callback only copies the address.
    unsafe {
        backtrace::trace_unsynchronized(&mut push);
    }
    #[cfg(not(unix))]
    backtrace::trace(&mut push);
}

#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
#[allow(unsafe_code)]
mod fast {
    use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
    use framehop::{ExplicitModuleSectionInfo, Module, Unwinder};
    use std::cell::Cell;
    use std::ffi::{c_int, c_void};
    use std::sync::Mutex;

    /// Bytes of a loaded module, borrowed from the mapping for as long as the loader keeps
    /// it mapped (checked by the loader's counters before every walk).
    #[derive(Debug, Default, Clone, Copy)]
    struct Mapped(&'static [u8]);

    impl std::ops::Deref for Mapped {
        type Target = [u8];
        fn deref(&self) -> &[u8] {
            self.0
        }
    }

    /// The modules as of the loader's counters `adds`/`subs`, and the rule cache.
    struct State {
        adds: u64,
        subs: u64,
        unwinder: UnwinderX86_64<Mapped>,
        cache: Box<CacheX86_64>,
        /// The executable ranges of the modules whose unwind information was read, sorted.
        code: Vec<(u64, u64)>,
    }

    static STATE: Mutex<Option<State>> = Mutex::new(None);

    thread_local! {
        /// This thread's stack: its lowest address and one past its highest (`(0, 0)`: not
        /// known yet).
        static STACK: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }

    /// What the loader's first callback is asked to do.
    struct Walk<'a> {
        state: &'a mut Option<State>,
        max: usize,
        out: &'a mut Vec<usize>,
        regs: (u64, u64, u64),
        stack: (u64, u64),
        /// The counters did not match the state: read the modules again.
        stale: bool,
        done: bool,
    }

    /// Walks with framehop; `false` when libgcc must do it.
    pub(super) fn walk(max: usize, out: &mut Vec<usize>) -> bool {
        let Some(stack) = stack() else {
            return false;
        };
        let mut guard = match STATE.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        for _ in 0..2 {
            let regs = registers();
            let mut walk = Walk {
                state: &mut guard,
                max,
                out: &mut *out,
                regs,
                stack,
                stale: false,
                done: false,
            };
            // SAFETY: the callback reads what the loader hands it and `walk`, which outlives
            // the call.
            unsafe {
                libc::dl_iterate_phdr(Some(first), (&raw mut walk).cast());
            }
            if !walk.stale {
                return walk.done;
            }
            *guard = read_modules();
        }
        false
    }

    /// The loader's add counter the module list was read at.
    #[cfg(test)]
    pub(super) fn modules_read_at() -> Option<u64> {
        let guard = STATE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_ref().map(|s| s.adds)
    }

    /// The thread's stack, from its attributes (once per thread).
    fn stack() -> Option<(u64, u64)> {
        let known = STACK.try_with(Cell::get).ok()?;
        if known.1 != 0 {
            return Some(known);
        }
        // SAFETY: `attr` is initialised by `pthread_getattr_np` before it is read and
        // destroyed after.
        let stack = unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
                return None;
            }
            let mut addr: *mut c_void = std::ptr::null_mut();
            let mut size: libc::size_t = 0;
            let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
            libc::pthread_attr_destroy(&mut attr);
            if !ok || addr.is_null() {
                return None;
            }
            (addr as u64, (addr as u64).checked_add(size as u64)?)
        };
        STACK.try_with(|c| c.set(stack)).ok()?;
        Some(stack)
    }

    /// The instruction, stack and frame pointers where this function's caller called it.
    #[inline(always)]
    fn registers() -> (u64, u64, u64) {
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads three registers, writes nothing else.
        unsafe {
            std::arch::asm!(
                "lea {ip}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                ip = out(reg) ip,
                sp = out(reg) sp,
                bp = out(reg) bp,
                options(nomem, nostack, preserves_flags),
            );
        }
        (ip, sp, bp)
    }

    /// The loader's callback for its first module: compare the counters, then walk while
    /// the loader's lock is held. Returns 1 so that no other module is visited.
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid `info`; `data` is the `Walk` of `walk`.
        let (info, walk) = unsafe { (&*info, &mut *data.cast::<Walk<'_>>()) };
        let (adds, subs) = (info.dlpi_adds, info.dlpi_subs);
        match walk.state.as_mut() {
            Some(state) if state.adds == adds && state.subs == subs => {
                walk.done = unwind(state, walk.regs, walk.stack, walk.max, walk.out);
            }
            _ => walk.stale = true,
        }
        1
    }

    fn unwind(
        state: &mut State,
        (ip, sp, bp): (u64, u64, u64),
        (stack_start, stack_end): (u64, u64),
        max: usize,
        out: &mut Vec<usize>,
    ) -> bool {
        // On another stack (a signal handler's alternate stack, a coroutine's): what lies
        // above the stack pointer is not known to be mapped.
        if sp < stack_start || sp >= stack_end {
            return false;
        }
        let mut read_stack = |addr: u64| {
            if addr >= sp && addr.checked_add(8).is_some_and(|end| end <= stack_end) {
                // SAFETY: within this thread's own stack, above its stack pointer: mapped.
                Ok(unsafe { (addr as usize as *const u64).read_unaligned() })
            } else {
                Err(())
            }
        };
        let code = &state.code;
        // The end of the executable range `addr` is in, if any.
        let code_end = |addr: u64| {
            let i = code.partition_point(|&(start, _)| start <= addr);
            (i > 0 && addr < code[i - 1].1).then(|| code[i - 1].1)
        };
        let mut frames = state.unwinder.iter_frames(
            ip,
            UnwindRegsX86_64::new(ip, sp, bp),
            &mut state.cache,
            &mut read_stack,
        );
        loop {
            match frames.next() {
                Ok(Some(frame)) => {
                    let addr = frame.address();
                    // A return address points after its call: the call is in the module.
                    let Some(end) = code_end(addr.saturating_sub(1)) else {
                        return false;
                    };
                    // A signal frame: its return address is the signal trampoline, whose
                    // unwind information framehop does not follow (libgcc recognises it
                    // by these same bytes).
                    if addr
                        .checked_add(SIGRETURN.len() as u64)
                        .is_some_and(|e| e <= end)
                    {
                        // SAFETY: within the executable segment of a loaded module.
                        let bytes = unsafe {
                            std::slice::from_raw_parts(addr as usize as *const u8, SIGRETURN.len())
                        };
                        if bytes == SIGRETURN {
                            return false;
                        }
                    }
                    out.push(addr as usize);
                    if out.len() >= max {
                        return true;
                    }
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    /// glibc's x86-64 signal trampoline `__restore_rt`: `mov $15, %rax; syscall`
    /// (`rt_sigreturn`).
    const SIGRETURN: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

    /// Every loaded module with an `.eh_frame_hdr`, as framehop modules, and the loader's
    /// counters they correspond to.
    fn read_modules() -> Option<State> {
        struct Read {
            adds: u64,
            subs: u64,
            unwinder: UnwinderX86_64<Mapped>,
            code: Vec<(u64, u64)>,
        }
        unsafe extern "C" fn each(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut c_void,
        ) -> c_int {
            // SAFETY: the loader passes a valid `info`; `data` is the `Read` below.
            let (info, read) = unsafe { (&*info, &mut *data.cast::<Read>()) };
            read.adds = info.dlpi_adds;
            read.subs = info.dlpi_subs;
            // SAFETY: the program headers and the segments they describe are mapped while
            // the loader's lock is held, and stay so until the counters change.
            if let Some((module, code)) = unsafe { module_of(info) } {
                read.unwinder.add_module(module);
                read.code.push(code);
            }
            0
        }
        let mut read = Read {
            adds: 0,
            subs: 0,
            unwinder: UnwinderX86_64::new(),
            code: Vec::new(),
        };
        // SAFETY: the callback reads what the loader hands it.
        unsafe {
            libc::dl_iterate_phdr(Some(each), (&raw mut read).cast());
        }
        read.code.sort_unstable();
        Some(State {
            adds: read.adds,
            subs: read.subs,
            unwinder: read.unwinder,
            cache: Box::new(CacheX86_64::new()),
            code: read.code,
        })
    }

    /// A framehop module for this loader entry, and its executable range.
    ///
    /// # Safety
    /// `info` must come from the loader, in its callback.
    unsafe fn module_of(info: &libc::dl_phdr_info) -> Option<(Module<Mapped>, (u64, u64))> {
        if info.dlpi_phdr.is_null() {
            return None;
        }
        // SAFETY: the loader's program headers for this entry.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let bias = info.dlpi_addr;
        let (mut low, mut high) = (u64::MAX, 0u64);
        let mut text = None;
        let mut hdr = None;
        for ph in phdrs {
            let range = ph.p_vaddr..ph.p_vaddr.checked_add(ph.p_memsz)?;
            if ph.p_type == libc::PT_LOAD {
                low = low.min(range.start);
                high = high.max(range.end);
                if ph.p_flags & libc::PF_X != 0 {
                    text = Some(range);
                }
            } else if ph.p_type == libc::PT_GNU_EH_FRAME {
                hdr = Some(range);
            }
        }
        let (text, hdr) = (text?, hdr?);
        // SAFETY: the segment is mapped (the loader's `PT_GNU_EH_FRAME`).
        let hdr_bytes = unsafe { mapped(bias, &hdr)? };
        // `.eh_frame_hdr`: version 1, then the encoding of the pointer to `.eh_frame`;
        // only the usual one (4-byte signed, relative to itself) is read.
        if hdr_bytes.len() < 8 || hdr_bytes[0] != 1 || hdr_bytes[1] != 0x1b {
            return None;
        }
        let rel = i32::from_le_bytes(hdr_bytes[4..8].try_into().ok()?);
        let eh_frame = hdr
            .start
            .checked_add(4)?
            .checked_add_signed(i64::from(rel))?;
        // `.eh_frame` runs to the end of the segment that holds it at most; its entries are
        // found through the header's table, so the slice need not end where it does.
        let segment = phdrs.iter().find(|ph| {
            ph.p_type == libc::PT_LOAD
                && ph.p_vaddr <= eh_frame
                && eh_frame - ph.p_vaddr < ph.p_memsz
        })?;
        let eh_frame = eh_frame..segment.p_vaddr.checked_add(segment.p_memsz)?;
        // SAFETY: within a loaded segment.
        let eh_frame_bytes = unsafe { mapped(bias, &eh_frame)? };
        let code = (bias.checked_add(text.start)?, bias.checked_add(text.end)?);
        let module = Module::new(
            String::new(),
            bias.checked_add(low)?..bias.checked_add(high)?,
            bias,
            ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: Some(text),
                eh_frame_svma: Some(eh_frame),
                eh_frame: Some(eh_frame_bytes),
                eh_frame_hdr_svma: Some(hdr),
                eh_frame_hdr: Some(hdr_bytes),
                ..Default::default()
            },
        );
        Some((module, code))
    }

    /// The bytes of a module's range, relocated by `bias`.
    ///
    /// # Safety
    /// The range must be mapped for as long as the result is used.
    unsafe fn mapped(bias: u64, range: &std::ops::Range<u64>) -> Option<Mapped> {
        let start = bias.checked_add(range.start)?;
        let len = usize::try_from(range.end.checked_sub(range.start)?).ok()?;
        // SAFETY: the caller's promise.
        Some(Mapped(unsafe {
            std::slice::from_raw_parts(start as usize as *const u8, len)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn nested(depth: u32, f: &mut dyn FnMut()) {
        if depth == 0 {
            f();
        } else {
            nested(depth - 1, f);
            std::hint::black_box(depth);
        }
    }

    /// The fast walk, retried while another test holds the shared state; `None` when it
    /// gave up (a frame it could not vouch for).
    fn fast_walk() -> Option<Vec<usize>> {
        #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
        for _ in 0..10_000 {
            let mut out = Vec::new();
            if fast::walk(512, &mut out) {
                return Some(out);
            }
            std::thread::yield_now();
        }
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu")))]
        return Some(walk(512));
        #[allow(unreachable_code)]
        None
    }

    /// The two walks agree: the same return addresses, from the first frame both see.
    fn agree_here() {
        let mut fast = None;
        let mut slow_ips = Vec::new();
        nested(12, &mut || {
            fast = fast_walk();
            slow(512, &mut slow_ips);
        });
        let fast = fast.expect("the fast walk was taken");
        // Each starts in its own function; from the closure outward they are the same
        // frames (libgcc also reports the root's caller, as 0).
        let slow_ips: Vec<usize> = slow_ips.into_iter().filter(|&ip| ip != 0).collect();
        let common = fast
            .iter()
            .rev()
            .zip(slow_ips.iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        assert!(common >= 14, "{fast:x?}\n{slow_ips:x?}");
        assert!(fast.len() - common <= 3, "{fast:x?}\n{slow_ips:x?}");
    }

    /// On the test's thread and on a spawned one (whose stack ends in `clone3`), and after
    /// a library was loaded (the module list is read again).
    #[test]
    fn the_fast_walk_finds_the_frames_libgcc_finds() {
        agree_here();
        std::thread::spawn(agree_here).join().unwrap();
        #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
        {
            let before = fast::modules_read_at().expect("read");
            assert!(load_a_library());
            agree_here();
            assert!(fast::modules_read_at().expect("read") > before);
        }
    }

    /// Loads a shared library that was not loaded before (the loader's add counter moves).
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    #[allow(unsafe_code)]
    fn load_a_library() -> bool {
        [
            c"libanl.so.1",
            c"libutil.so.1",
            c"libresolv.so.2",
            c"libnss_files.so.2",
        ]
        .iter()
        // SAFETY: glibc's own small libraries, without constructors that matter.
        .any(|name| !unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW) }.is_null())
    }

    /// A walk from a signal handler, on the thread's stack and on an alternate stack (where a
    /// panic inside a handler would capture): what the fast walk gives is what libgcc gives
    /// through the signal frame, and leaving the thread's stack falls back rather than read
    /// unmapped memory.
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    #[test]
    #[allow(unsafe_code)]
    fn walks_from_signal_handlers_match_libgcc() {
        use std::sync::Mutex;
        static SEEN: Mutex<Vec<(Vec<usize>, Vec<usize>)>> = Mutex::new(Vec::new());
        extern "C" fn handler(_: libc::c_int) {
            let fast = walk(512);
            let mut slow_ips = Vec::new();
            slow(512, &mut slow_ips);
            if let Ok(mut seen) = SEEN.lock() {
                seen.push((fast, slow_ips));
            }
        }
        std::thread::spawn(|| {
            // SAFETY: a handler for SIGUSR2 on this test's own thread, raised synchronously
            // (the handler allocates, which is safe here: nothing else runs on the thread).
            unsafe {
                let mut stack = vec![0u8; 256 * 1024];
                let alt = libc::stack_t {
                    ss_sp: stack.as_mut_ptr().cast(),
                    ss_flags: 0,
                    ss_size: stack.len(),
                };
                assert_eq!(libc::sigaltstack(&alt, std::ptr::null_mut()), 0);
                for flags in [0, libc::SA_ONSTACK] {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = handler as *const () as usize;
                    action.sa_flags = flags;
                    assert_eq!(
                        libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()),
                        0
                    );
                    libc::pthread_kill(libc::pthread_self(), libc::SIGUSR2);
                }
                let off = libc::stack_t {
                    ss_sp: std::ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                libc::sigaltstack(&off, std::ptr::null_mut());
                drop(stack);
            }
        })
        .join()
        .unwrap();
        let seen = SEEN.lock().unwrap();
        assert_eq!(seen.len(), 2);
        for (fast, slow_ips) in seen.iter() {
            let slow_ips: Vec<usize> = slow_ips.iter().copied().filter(|&ip| ip != 0).collect();
            let fast: Vec<usize> = fast.iter().copied().filter(|&ip| ip != 0).collect();
            let common = fast
                .iter()
                .rev()
                .zip(slow_ips.iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            // Everything from the signal frame out: the handler's two calls differ, and each
            // walk's own frames.
            assert!(common >= 6, "{fast:x?}\n{slow_ips:x?}");
            assert!(fast.len() - common <= 4, "{fast:x?}\n{slow_ips:x?}");
            assert!(slow_ips.len() - common <= 4, "{fast:x?}\n{slow_ips:x?}");
        }
    }

    #[test]
    fn a_walk_stops_at_max() {
        assert_eq!(walk(3).len(), 3);
    }
}

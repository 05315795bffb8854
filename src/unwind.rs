//! Walking the calling thread's stack: its return addresses, innermost first, unresolved.
//!
//! `capture_error` walks the stack on the app's thread, so the walk is what the app pays.
//! libgcc's `_Unwind_Backtrace` (what `backtrace::trace` calls) finds and interprets the
//! DWARF call-frame information of every frame anew, about 150 ns a frame. On x86-64 Linux
//! (glibc) the walk is done by `framehop` instead, which reads the same `.eh_frame`
//! information in place and caches the rule of each address it has seen: about 15 ns a
//! frame once warm (BENCHMARKS.md). The result is never other than libgcc's:
//!
//! - **Verified against libgcc.** framehop follows frame pointers, silently, where an
//!   address has no unwind entry or a rule it cannot evaluate; libgcc stops there or
//!   evaluates it. So a walk with a step (an address and the next, or the last one's end at
//!   the root) not seen before is checked against libgcc's walk: the steps of a walk that
//!   agreed are remembered (4,096 at most), and a walk that did not is replaced by libgcc's.
//!   A walk of remembered steps only is framehop's alone. Both walks return the stack from
//!   the return into [`walk`]'s caller, so which one walked never shows in the result.
//! - **libgcc whenever framehop cannot be used safely:** before the worker prepared it (its
//!   rule cache is built on the worker's large stack), while another thread walks, on a
//!   stack other than the thread's own (a signal handler's alternate stack, a coroutine's)
//!   or with less than 256 KiB of it left, through a signal frame, and on other platforms.
//! - **No library is unloaded under it, and nothing is allocated under the loader's lock.**
//!   The walk runs inside a `dl_iterate_phdr` callback, which holds the loader's lock, into
//!   room reserved before; framehop runs with its no-allocation policy (an allocator that
//!   itself walks stacks under its own lock would otherwise deadlock against it). A load or
//!   an unload since the last walk (glibc counts both) makes the module list be copied again
//!   under the lock and rebuilt after it. A `fork` waits for a walk in progress (an
//!   `atfork` handler), so a child never inherits the loader's lock held.

/// The return addresses of the calling thread's stack, innermost first, from the return
/// address into this function's caller, at most `max` of them. Both walks give the same
/// addresses for the same stack (neither keeps its own frames), so a capture's location
/// does not depend on which walked.
#[inline(never)]
pub(crate) fn walk(max: usize) -> Vec<usize> {
    let mut out = Vec::new();
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    let done = fast::walk(max, &mut out);
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu")))]
    let done = false;
    #[cfg(test)]
    let done = done && !tests::FORCE_SLOW.with(std::cell::Cell::get);
    if !done {
        out.clear();
        slow(max, &mut out);
    }
    out
}

/// Prepares the fast walk (the rule cache and the module list), on a thread with a large
/// stack: consentry's worker, once reporting is on. Until then walks are libgcc's.
pub(crate) fn prepare() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    fast::prepare();
}

/// The walk through libgcc (or the platform's unwinder), from the return address into
/// [`walk`]'s caller (its own frames, the unwinder's and this function's are dropped:
/// found by the start of the function each is in), without the root's caller (0).
#[allow(unsafe_code)]
#[inline(never)]
fn slow(max: usize, out: &mut Vec<usize>) {
    out.reserve(max.min(64));
    let walk_start = walk as fn(usize) -> Vec<usize> as usize;
    // Frames of our own come first, a few of them; at most this many are looked at.
    const OWN_MAX: usize = 32;
    let mut own = true;
    let mut seen = 0;
    let mut push = |frame: &backtrace::Frame| {
        seen += 1;
        if own && seen <= OWN_MAX {
            out.push(frame.ip() as usize);
            if frame.symbol_address() as usize == walk_start {
                // Everything so far was the walk's own: the caller's frames start next.
                out.clear();
                own = false;
            }
            return true;
        }
        if own {
            // `walk` was not found (inlined away, or not the caller): keep what there is.
            own = false;
        }
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
    while out.last() == Some(&0) {
        out.pop();
    }
    out.truncate(max);
}

/// Whether a fast walk is the slow walk's: the same addresses, or, where either was cut at
/// `max`, the same as far as both go.
#[cfg_attr(
    not(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu")),
    allow(dead_code)
)]
fn agrees(fast: &[usize], slow: &[usize], max: usize) -> bool {
    if fast.len() >= max || slow.len() >= max {
        let n = fast.len().min(slow.len());
        n > 0 && fast[..n] == slow[..n]
    } else {
        !fast.is_empty() && fast == slow
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
#[allow(unsafe_code)]
mod fast {
    use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
    use framehop::{ExplicitModuleSectionInfo, Module, MustNotAllocateDuringUnwind, Unwinder};
    use std::cell::Cell;
    use std::ffi::{c_int, c_void};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, Once};

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

    type Cache = CacheX86_64<MustNotAllocateDuringUnwind>;

    /// Steps (an address and the next one, or the root's end) remembered as walked the same
    /// by framehop and libgcc: fingerprints in sets of [`WAYS`] (a set's oldest leaves for
    /// a new one, and is verified again when met). Sets, not single slots: two steps of one
    /// walk that fell in the same slot would evict each other at every walk, and that walk
    /// would never be framehop's alone.
    const VERIFIED_SLOTS: usize = 4096;
    const WAYS: usize = 4;

    /// The most addresses of a fast walk (a deeper one is cut here, as libgcc's would be).
    const BUF: usize = 512;

    /// The least stack left below the stack pointer for a fast walk (framehop's rule
    /// evaluation keeps fixed-size tables on the stack: tens of kB in a debug build).
    const STACK_ROOM: u64 = 256 * 1024;

    /// What the fast walk needs: the modules as of the loader's counters `adds`/`subs`,
    /// the rule cache, the verified steps.
    struct State {
        adds: u64,
        subs: u64,
        unwinder: UnwinderX86_64<Mapped, MustNotAllocateDuringUnwind>,
        cache: Box<Cache>,
        /// The executable ranges of the modules whose unwind information was read, sorted.
        code: Vec<(u64, u64)>,
        verified: Box<[u64]>,
        /// Module descriptors copied under the loader's lock (reserved before it).
        copied: Vec<Descriptor>,
    }

    /// Taken (compare-and-swap) by a walk and by a `fork`; the holder alone touches `STATE`.
    static BUSY: AtomicBool = AtomicBool::new(false);
    /// `fork`s waiting for `BUSY`: no new walk starts meanwhile (walkers that took it in a
    /// loop would otherwise starve the `fork`, which then goes on without it).
    static FORKING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    static STATE: Mutex<Option<State>> = Mutex::new(None);
    static ATFORK: Once = Once::new();

    thread_local! {
        /// This thread's stack: its lowest address and one past its highest (`(0, 0)`: not
        /// known yet).
        static STACK: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
        /// This thread holds `BUSY` (a walk, or a `fork` in progress).
        static HOLDS_BUSY: Cell<bool> = const { Cell::new(false) };
    }

    /// Holds `BUSY` until dropped.
    struct Busy;

    impl Busy {
        /// For a walk: not while a `fork` waits.
        fn try_take_to_walk() -> Option<Busy> {
            if FORKING.load(Ordering::Acquire) > 0 {
                return None;
            }
            Busy::try_take()
        }

        fn try_take() -> Option<Busy> {
            BUSY.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .ok()?;
            let _ = HOLDS_BUSY.try_with(|h| h.set(true));
            Some(Busy)
        }
    }

    impl Drop for Busy {
        fn drop(&mut self) {
            let _ = HOLDS_BUSY.try_with(|h| h.set(false));
            BUSY.store(false, Ordering::Release);
        }
    }

    pub(super) fn prepare() {
        ATFORK.call_once(|| {
            // SAFETY: registers plain functions that touch only atomics and thread-locals.
            unsafe {
                libc::pthread_atfork(Some(fork_prepare), Some(fork_done), Some(fork_done));
            }
        });
        // Waits for nothing: a walk in progress means it is prepared already.
        let Some(_busy) = Busy::try_take() else {
            return;
        };
        let mut guard = STATE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            let mut state = State {
                adds: u64::MAX,
                subs: u64::MAX,
                unwinder: UnwinderX86_64::new(),
                // Built here, on the worker's stack: the cache is large.
                cache: Box::new(Cache::new_in()),
                code: Vec::new(),
                verified: vec![0; VERIFIED_SLOTS].into_boxed_slice(),
                copied: Vec::new(),
            };
            if reread(&mut state) {
                *guard = Some(state);
            }
        }
    }

    thread_local! {
        /// `fork_prepare` took `BUSY` on this thread, for `fork_done` to release.
        static FORK_TOOK: Cell<bool> = const { Cell::new(false) };
        /// `fork_prepare` counted a waiting `fork` in `FORKING`, for `fork_done` to take back.
        static FORK_COUNTED: Cell<bool> = const { Cell::new(false) };
    }

    /// Before a `fork`: wait for a walk in progress (it holds the loader's lock, which the
    /// child would inherit held) and keep walks out until the `fork` returns; unless this
    /// thread is the walker (a `fork` from a signal handler that interrupted it).
    extern "C" fn fork_prepare() {
        if HOLDS_BUSY.try_with(Cell::get).unwrap_or(true) {
            return;
        }
        // A walk takes microseconds, but its thread may be descheduled while it holds the
        // loader's lock (a loaded machine): spin, then yield, then sleep, for up to 2 s of
        // wall time. A bound all the same: never hang a `fork`.
        FORKING.fetch_add(1, Ordering::AcqRel);
        let _ = FORK_COUNTED.try_with(|c| c.set(true));
        let start = std::time::Instant::now();
        let mut i = 0u32;
        loop {
            if let Some(busy) = Busy::try_take() {
                std::mem::forget(busy);
                let _ = FORK_TOOK.try_with(|t| t.set(true));
                return;
            }
            if start.elapsed() > std::time::Duration::from_secs(2) {
                return;
            }
            match i {
                0..1000 => std::hint::spin_loop(),
                1000..2000 => std::thread::yield_now(),
                _ => std::thread::sleep(std::time::Duration::from_micros(50)),
            }
            i = i.saturating_add(1);
        }
    }

    /// After a `fork`, in the parent and in the child: release what `fork_prepare` took.
    extern "C" fn fork_done() {
        if FORK_TOOK.try_with(|t| t.replace(false)).unwrap_or(false) {
            drop(Busy);
        }
        // The count `fork_prepare` added (none if the forking thread held `BUSY` itself).
        if FORK_COUNTED.try_with(|c| c.replace(false)).unwrap_or(false) {
            FORKING.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// What the loader's first callback is asked to do.
    struct Walk<'a> {
        state: &'a mut State,
        /// Where the addresses go (on the stack: nothing is allocated under the loader's
        /// lock), as many as it holds.
        buf: &'a mut [usize],
        len: usize,
        regs: (u64, u64, u64),
        stack_end: u64,
        /// The counters did not match the state: copy the modules again.
        stale: bool,
        /// `Some(true)`: walked to the root; `Some(false)`: cut at `max`; `None`: libgcc's.
        ended: Option<bool>,
    }

    /// Walks with framehop, verified against libgcc where an address is new; `false` when
    /// libgcc alone must do it.
    #[inline(never)]
    pub(super) fn walk(max: usize, out: &mut Vec<usize>) -> bool {
        let regs = registers();
        let Some((stack_start, stack_end)) = stack() else {
            return false;
        };
        // On another stack, or too close to this one's end: what lies above the stack
        // pointer is not known to be mapped, or framehop's tables may not fit.
        let sp = regs.1;
        if sp < stack_start || sp >= stack_end || sp - stack_start < STACK_ROOM {
            return false;
        }
        let Some(_busy) = Busy::try_take_to_walk() else {
            return false;
        };
        walk_held(max, out, regs, stack_end)
    }

    fn walk_held(max: usize, out: &mut Vec<usize>, regs: (u64, u64, u64), stack_end: u64) -> bool {
        let mut guard = STATE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(state) = guard.as_mut() else {
            return false;
        };
        let mut buf = [0usize; BUF];
        // The first two addresses are this walk's own (`fast::walk`, then the return into
        // `unwind::walk`): room for them beyond `max`.
        let buf = &mut buf[..max.saturating_add(2).min(BUF)];
        let mut ended = None;
        let mut len = 0;
        for _ in 0..2 {
            let mut walk = Walk {
                state: &mut *state,
                buf: &mut *buf,
                len: 0,
                regs,
                stack_end,
                stale: false,
                ended: None,
            };
            // SAFETY: the callback reads what the loader hands it and `walk`, which
            // outlives the call.
            unsafe {
                libc::dl_iterate_phdr(Some(first), (&raw mut walk).cast());
            }
            if !walk.stale {
                ended = walk.ended;
                len = walk.len;
                break;
            }
            if !reread(state) {
                return false;
            }
        }
        let Some(rooted) = ended else {
            return false;
        };
        let walked = &buf[..len];
        // Steps met for the first time: libgcc walks too, and decides. A step is an address
        // and the next (the rule at an address may be followed differently as registers
        // differ: frame pointers through code without an unwind entry), and the last
        // address's end at the root.
        let steps = walked
            .windows(2)
            .map(|w| step(w[0], w[1]))
            .chain(rooted.then(|| step(walked[len - 1], 0)));
        let Some(callers) = walked.get(2..).filter(|c| !c.is_empty()) else {
            return false;
        };
        let callers = &callers[..callers.len().min(max)];
        if steps.clone().all(|step| remembered(&state.verified, step)) {
            #[cfg(test)]
            OUTCOME.with(|o| o.set(Outcome::Verified));
            out.extend_from_slice(callers);
            return true;
        }
        let mut slow_ips = Vec::new();
        super::slow(max, &mut slow_ips);
        if super::agrees(callers, &slow_ips, max) {
            for step in steps {
                remember(&mut state.verified, step);
            }
            out.extend_from_slice(callers);
            #[cfg(test)]
            OUTCOME.with(|o| o.set(Outcome::Agreed));
        } else {
            *out = slow_ips;
            #[cfg(test)]
            OUTCOME.with(|o| o.set(Outcome::Replaced));
        }
        true
    }

    pub(super) fn remembered(table: &[u64], (at, fp): (usize, u64)) -> bool {
        table[at..at + WAYS].contains(&fp)
    }

    pub(super) fn remember(table: &mut [u64], (at, fp): (usize, u64)) {
        let ways = &mut table[at..at + WAYS];
        if !ways.contains(&fp) {
            // Into the first way, the others moved down (the oldest leaves).
            ways.rotate_right(1);
            ways[0] = fp;
        }
    }

    /// Where a step's set of ways starts in the verified table, and its fingerprint (never
    /// 0, an empty way's).
    fn step(from: usize, to: usize) -> (usize, u64) {
        let fp = (from as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (to as u64)
                .wrapping_add(0x632B_E59B_D9B4_E019)
                .wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
            | 1;
        (((fp >> 54) as usize % (VERIFIED_SLOTS / WAYS)) * WAYS, fp)
    }

    /// How this thread's last fast walk ended.
    #[cfg(test)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Outcome {
        None,
        /// Every address was verified before: framehop's walk alone.
        Verified,
        /// New addresses; libgcc's walk agreed, and they are verified now.
        Agreed,
        /// libgcc's walk did not agree and replaced it.
        Replaced,
    }

    #[cfg(test)]
    thread_local! {
        pub(super) static OUTCOME: Cell<Outcome> = const { Cell::new(Outcome::None) };
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
        // SAFETY: the loader passes a valid `info`; `data` is the `Walk` of `walk_held`.
        let (info, walk) = unsafe { (&*info, &mut *data.cast::<Walk<'_>>()) };
        if walk.state.adds == info.dlpi_adds && walk.state.subs == info.dlpi_subs {
            // A panic must not cross the loader's C frame (that aborts the process): one in
            // framehop (an overflow check in a debug build) makes it libgcc's walk.
            walk.ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                unwind(
                    walk.state,
                    walk.regs,
                    walk.stack_end,
                    walk.buf,
                    &mut walk.len,
                )
            }))
            .unwrap_or(None);
        } else {
            walk.stale = true;
        }
        1
    }

    /// The walk proper, into `buf` (no allocation). `Some(true)` if it reached the root,
    /// `Some(false)` if `buf` filled first, `None` if libgcc must walk.
    fn unwind(
        state: &mut State,
        (ip, sp, bp): (u64, u64, u64),
        stack_end: u64,
        buf: &mut [usize],
        len: &mut usize,
    ) -> Option<bool> {
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
                    let end = code_end(addr.saturating_sub(1))?;
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
                            return None;
                        }
                    }
                    let Some(slot) = buf.get_mut(*len) else {
                        return Some(false);
                    };
                    *slot = addr as usize;
                    *len += 1;
                }
                Ok(None) => return Some(true),
                Err(_) => return None,
            }
        }
    }

    /// glibc's x86-64 signal trampoline `__restore_rt`: `mov $15, %rax; syscall`
    /// (`rt_sigreturn`).
    const SIGRETURN: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

    /// What is copied of a loaded module under the loader's lock (no allocation there).
    #[derive(Debug, Clone, Copy)]
    struct Descriptor {
        bias: u64,
        /// The lowest and highest addresses of its loaded segments (unrelocated).
        span: (u64, u64),
        text: (u64, u64),
        eh_frame_hdr: (u64, u64),
        eh_frame: (u64, u64),
    }

    /// The loader's counters and modules, copied into `state.copied` (room reserved before
    /// the loader's lock; more modules than room: reserved again and copied again).
    struct Copy<'a> {
        adds: u64,
        subs: u64,
        into: &'a mut Vec<Descriptor>,
        overflow: bool,
    }

    /// Copies the module list again and rebuilds the unwinder from it (its rule cache is
    /// kept: framehop tells modules lists apart by a generation number). `false` if the
    /// list kept changing.
    fn reread(state: &mut State) -> bool {
        unsafe extern "C" fn each(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut c_void,
        ) -> c_int {
            // SAFETY: the loader passes a valid `info`; `data` is the `Copy` below.
            let (info, copy) = unsafe { (&*info, &mut *data.cast::<Copy<'_>>()) };
            copy.adds = info.dlpi_adds;
            copy.subs = info.dlpi_subs;
            // SAFETY: the program headers are the loader's, mapped while its lock is held.
            // (No panic can cross the loader's C frame: an entry that would is skipped.)
            let d = std::panic::catch_unwind(|| unsafe { descriptor(info) });
            if let Ok(Some(d)) = d {
                if copy.into.len() == copy.into.capacity() {
                    copy.overflow = true;
                    return 1;
                }
                copy.into.push(d);
            }
            0
        }
        let mut room = state.copied.capacity().max(64);
        for _ in 0..4 {
            state.copied.clear();
            state.copied.reserve(room);
            let mut copy = Copy {
                adds: 0,
                subs: 0,
                into: &mut state.copied,
                overflow: false,
            };
            // SAFETY: the callback reads what the loader hands it.
            unsafe {
                libc::dl_iterate_phdr(Some(each), (&raw mut copy).cast());
            }
            if copy.overflow {
                room *= 2;
                continue;
            }
            let (adds, subs) = (copy.adds, copy.subs);
            let mut unwinder = UnwinderX86_64::new();
            let mut code = Vec::with_capacity(state.copied.len());
            for d in &state.copied {
                // SAFETY: the ranges were the loader's at `adds`/`subs`; every walk checks
                // the counters, under the loader's lock, before framehop reads them.
                if let Some(module) = unsafe { module_of(d) } {
                    unwinder.add_module(module);
                    code.push((d.bias + d.text.0, d.bias + d.text.1));
                }
            }
            code.sort_unstable();
            state.unwinder = unwinder;
            state.code = code;
            state.adds = adds;
            state.subs = subs;
            // Addresses may now be other code.
            state.verified.fill(0);
            return true;
        }
        false
    }

    /// What a loader entry says of its segments, if it has an `.eh_frame_hdr` of the usual
    /// encoding.
    ///
    /// # Safety
    /// `info` must come from the loader, in its callback.
    unsafe fn descriptor(info: &libc::dl_phdr_info) -> Option<Descriptor> {
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
            let range = (ph.p_vaddr, ph.p_vaddr.checked_add(ph.p_memsz)?);
            if ph.p_type == libc::PT_LOAD {
                low = low.min(range.0);
                high = high.max(range.1);
                if ph.p_flags & libc::PF_X != 0 {
                    text = Some(range);
                }
            } else if ph.p_type == libc::PT_GNU_EH_FRAME {
                hdr = Some(range);
            }
        }
        let (text, hdr) = (text?, hdr?);
        if hdr.1 - hdr.0 < 8 {
            return None;
        }
        // `.eh_frame_hdr`: version 1, then the encoding of the pointer to `.eh_frame`;
        // only the usual one (4-byte signed, relative to itself) is read.
        // SAFETY: the segment is mapped (the loader's `PT_GNU_EH_FRAME`), 8 bytes or more.
        let head = unsafe { *(bias.checked_add(hdr.0)? as usize as *const [u8; 8]) };
        if head[0] != 1 || head[1] != 0x1b {
            return None;
        }
        let rel = i32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let eh_frame = hdr.0.checked_add(4)?.checked_add_signed(i64::from(rel))?;
        // `.eh_frame` runs to the end of the segment that holds it at most; its entries are
        // found through the header's table, so the slice need not end where it does.
        let segment = phdrs.iter().find(|ph| {
            ph.p_type == libc::PT_LOAD
                && ph.p_vaddr <= eh_frame
                && eh_frame - ph.p_vaddr < ph.p_memsz
        })?;
        Some(Descriptor {
            bias,
            span: (low, high),
            text,
            eh_frame_hdr: hdr,
            eh_frame: (eh_frame, segment.p_vaddr.checked_add(segment.p_memsz)?),
        })
    }

    /// A framehop module for a copied descriptor.
    ///
    /// # Safety
    /// The descriptor's ranges must stay mapped while the module is used.
    unsafe fn module_of(d: &Descriptor) -> Option<Module<Mapped>> {
        // SAFETY: the caller's promise.
        let (hdr, eh_frame) =
            unsafe { (mapped(d.bias, d.eh_frame_hdr)?, mapped(d.bias, d.eh_frame)?) };
        Some(Module::new(
            String::new(),
            d.bias.checked_add(d.span.0)?..d.bias.checked_add(d.span.1)?,
            d.bias,
            ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: Some(d.text.0..d.text.1),
                eh_frame_svma: Some(d.eh_frame.0..d.eh_frame.1),
                eh_frame: Some(eh_frame),
                eh_frame_hdr_svma: Some(d.eh_frame_hdr.0..d.eh_frame_hdr.1),
                eh_frame_hdr: Some(hdr),
                ..Default::default()
            },
        ))
    }

    /// The bytes of a module's range, relocated by `bias`.
    ///
    /// # Safety
    /// The range must be mapped for as long as the result is used.
    unsafe fn mapped(bias: u64, (start, end): (u64, u64)) -> Option<Mapped> {
        let at = bias.checked_add(start)?;
        let len = usize::try_from(end.checked_sub(start)?).ok()?;
        // SAFETY: the caller's promise.
        Some(Mapped(unsafe {
            std::slice::from_raw_parts(at as usize as *const u8, len)
        }))
    }

    /// The loader's add counter the module list was read at.
    #[cfg(test)]
    pub(super) fn modules_read_at() -> Option<u64> {
        let guard = STATE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_ref().map(|s| s.adds)
    }
}

#[cfg(all(test, target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
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

    use super::fast::{OUTCOME, Outcome};

    thread_local! {
        /// Makes [`walk`] take libgcc's walk on this thread.
        pub(super) static FORCE_SLOW: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// A walk through [`walk`] that took the fast path (retried while another test holds the
    /// shared state), and how it ended.
    #[allow(clippy::panic)]
    #[inline(never)]
    fn fast_walk() -> (Vec<usize>, Outcome) {
        prepare();
        for _ in 0..100_000 {
            OUTCOME.with(|o| o.set(Outcome::None));
            let out = walk(512);
            let how = OUTCOME.with(|o| o.get());
            if how != Outcome::None {
                return (out, how);
            }
            std::thread::yield_now();
        }
        panic!("the fast walk was never taken");
    }

    /// Walked twice from the same place: the first walk meets new addresses and is checked
    /// against libgcc's; the second is framehop's alone, and gives the same addresses.
    fn agree_here() {
        let mut walks = Vec::new();
        let mut slow_ips = Vec::new();
        // Until a walk is framehop's alone (other tests load libraries: NSS modules for
        // user names, which clears what was verified).
        for _ in 0..200 {
            nested(12, &mut || {
                walks.push(fast_walk());
                slow_ips.clear();
                slow(512, &mut slow_ips);
            });
            if walks.len() > 1 && walks[walks.len() - 1].1 == Outcome::Verified {
                break;
            }
        }
        let (first, how) = &walks[0];
        assert!(
            matches!(how, Outcome::Agreed | Outcome::Verified),
            "{how:?}"
        );
        assert!(
            walks[1..].iter().any(|(_, how)| *how == Outcome::Verified),
            "{:?}",
            walks.iter().map(|w| w.1).collect::<Vec<_>>()
        );
        assert!(walks.iter().all(|(w, _)| w == first));
        let second = first;
        // From the closure outward they are libgcc's frames (which also has the root's
        // caller, 0).
        let slow_ips: Vec<usize> = slow_ips.into_iter().filter(|&ip| ip != 0).collect();
        let common = common_suffix(second, &slow_ips);
        assert!(common >= 14, "{second:x?}\n{slow_ips:x?}");
        assert!(second.len() - common <= 3, "{second:x?}\n{slow_ips:x?}");
    }

    /// How many addresses two walks share at their outer end.
    fn common_suffix(a: &[usize], b: &[usize]) -> usize {
        a.iter()
            .rev()
            .zip(b.iter().rev())
            .take_while(|(x, y)| x == y)
            .count()
    }

    /// On the test's thread and on a spawned one (whose stack ends in `clone3`), and after
    /// a library was loaded (the module list is copied again).
    #[test]
    fn the_fast_walk_finds_the_frames_libgcc_finds() {
        agree_here();
        std::thread::spawn(agree_here).join().unwrap();
        let before = fast::modules_read_at().expect("read");
        assert!(load_a_library());
        agree_here();
        assert!(fast::modules_read_at().expect("read") > before);
    }

    /// Loads a shared library that was not loaded before (the loader's add counter moves).
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

    /// A thread with a small stack walks with libgcc (framehop's tables might not fit),
    /// without overflowing it.
    #[test]
    fn a_small_stack_walks_with_libgcc() {
        prepare();
        let frames = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| {
                let mut out = Vec::new();
                assert!(!fast::walk(512, &mut out));
                walk(512)
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(frames.len() >= 3, "{frames:x?}");
    }

    /// A walk libgcc disagrees with is replaced by libgcc's; one that agrees is kept.
    #[test]
    fn agreement_is_the_same_addresses() {
        let fast = [10, 11, 12];
        assert!(agrees(&fast, &[10, 11, 12], 512));
        // A frame skipped (frame pointers followed through code without unwind entries).
        assert!(!agrees(&fast, &[10, 11, 13, 12], 512));
        // libgcc stopped earlier (no unwind entry): framehop's extra frames are a guess.
        assert!(!agrees(&fast, &[10, 11], 512));
        assert!(!agrees(&fast, &[10, 11, 12, 13], 512));
        assert!(!agrees(&[], &[], 512));
        // Cut at `max`: compared as far as both go.
        assert!(agrees(&[10, 11, 12], &[10, 11, 12], 3));
        assert!(agrees(&[10, 11, 12], &[10, 11], 3));
        assert!(!agrees(&[10, 11, 12], &[10, 12, 13], 3));
    }

    /// The same stack walked by either gives the same addresses, from the return into the
    /// caller of `walk` (the location repeats are counted by does not depend on which).
    #[test]
    fn both_walks_give_the_same_addresses() {
        prepare();
        let (mut fast, mut slow_ips) = (None, Vec::new());
        nested(5, &mut || {
            for force in [false, true] {
                for _ in 0..100_000 {
                    // One call site for both.
                    let (out, by_libgcc) = walk_here(force);
                    if force {
                        slow_ips = out;
                        break;
                    }
                    if !by_libgcc {
                        fast = Some(out);
                        break;
                    }
                    std::thread::yield_now();
                }
            }
        });
        let fast = fast.expect("the fast walk was taken");
        assert_eq!(fast, slow_ips);
        assert!(fast.len() > 8, "{fast:x?}");
    }

    /// One call site of `walk` for either walk; whether libgcc walked.
    #[inline(never)]
    fn walk_here(force_slow: bool) -> (Vec<usize>, bool) {
        FORCE_SLOW.with(|f| f.set(force_slow));
        OUTCOME.with(|o| o.set(Outcome::None));
        let out = walk(512);
        FORCE_SLOW.with(|f| f.set(false));
        (
            out,
            force_slow || OUTCOME.with(|o| o.get()) == Outcome::None,
        )
    }

    /// Steps that fall in the same set are all remembered, up to its ways (a walk whose
    /// steps collided would otherwise never be framehop's alone).
    #[test]
    fn colliding_steps_are_all_remembered() {
        let mut table = vec![0u64; 4096];
        let same_set: Vec<(usize, u64)> = (1..=4).map(|i| (8, i * 2 + 1)).collect();
        for &step in &same_set {
            fast::remember(&mut table, step);
        }
        for &step in &same_set {
            fast::remember(&mut table, step);
            assert!(fast::remembered(&table, step));
        }
        assert!(same_set.iter().all(|&s| fast::remembered(&table, s)));
        // A fifth evicts the oldest.
        fast::remember(&mut table, (8, 99));
        assert!(fast::remembered(&table, (8, 99)));
        assert!(!fast::remembered(&table, same_set[0]));
    }

    /// A `fork` while other threads walk: the child never inherits the loader's lock held
    /// (it would hang in its first `dl_iterate_phdr` or `dlopen`).
    #[test]
    #[allow(unsafe_code)]
    fn a_fork_during_walks_leaves_the_child_a_free_loader() {
        use std::sync::atomic::{AtomicBool, Ordering};
        prepare();
        static STOP: AtomicBool = AtomicBool::new(false);
        let walkers: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| {
                    while !STOP.load(Ordering::Relaxed) {
                        std::hint::black_box(walk(64));
                    }
                })
            })
            .collect();
        unsafe extern "C" fn nothing(
            _: *mut libc::dl_phdr_info,
            _: libc::size_t,
            _: *mut std::ffi::c_void,
        ) -> std::ffi::c_int {
            1
        }
        let mut hung = 0;
        for _ in 0..200 {
            if hung > 0 {
                break;
            }
            // SAFETY: the child calls only `dl_iterate_phdr` and `_exit`.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                unsafe {
                    libc::dl_iterate_phdr(Some(nothing), std::ptr::null_mut());
                    libc::_exit(0);
                }
            }
            assert!(pid > 0);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let mut status = 0;
            // SAFETY: waits for (or kills) the child just forked.
            while unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == 0 {
                if std::time::Instant::now() > deadline {
                    hung += 1;
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                        libc::waitpid(pid, &mut status, 0);
                    }
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        STOP.store(true, Ordering::Relaxed);
        for w in walkers {
            w.join().unwrap();
        }
        assert_eq!(hung, 0, "children forked during a walk hung in the loader");
    }

    /// A walk from a signal handler, on the thread's stack and on an alternate stack (where a
    /// panic inside a handler would capture): what the fast walk gives is what libgcc gives
    /// through the signal frame, and leaving the thread's stack falls back rather than read
    /// unmapped memory.
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
            let common = common_suffix(&fast, &slow_ips);
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

//! The purger: one background thread that runs every registered core's purge passes when they
//! are due (`poolmalloc_core::Core::purge`), so that memory the program no longer holds goes back
//! to the OS with no call from the program (jemalloc's `background_thread`, Bun's scavenger of
//! mimalloc's purge; the core's `arena` module says what a pass gives back).
//!
//! - **Started lazily**: once a core in `Purger::Thread` mode has had `PURGER_START_BYTES` of
//!   pools given back since its last pass, it notifies `PURGE_EVENT` with a request (a short
//!   program that frees a few pools never gets a thread: it stays single-threaded, as
//!   `unshare(CLONE_NEWUSER)` needs); the home that made the step takes it
//!   when the step is over (`start_if_requested`, from `Home::slow`), holding no allocator lock
//!   and not inside the allocator — never at load, never in a fork window.
//! - **The thread** is created with `pthread_create` (detached, signals blocked, a
//!   `PURGER_STACK_BYTES` stack, named `poolmalloc bg`); it never allocates: a pass claims,
//!   makes its system calls and puts back with fixed arrays, and the list of cores is intrusive.
//!   It sleeps on `PURGE_EVENT`'s futex, until the next pass is due or, while nothing waits,
//!   until a core notifies. Being detached, it never delays process exit.
//! - **Cores** register a `Node` (the global core once, at the first start; each `Heap` while
//!   it lives): the list's lock is held for a whole round of passes, so a heap that leaves the
//!   list (`unregister`, before its core drops) is never purged afterwards.
//! - **Fork**: handlers registered at the first start take the list's lock around `fork`, so
//!   no pass is half done in the child; the child has no purger (`STATE` back to idle) and asks
//!   for one if something of its cores waits.
//! - **Fallback**: a thread that cannot be created turns every registered core to
//!   `Purger::Calls`: purging then happens inside later allocator calls.
//!
//! The settings (`POOLMALLOC_PURGE_DELAY_MS`, `POOLMALLOC_PURGER`) are read here, for the
//! global home, without allocating.

use core::cell::Cell;
use core::ffi::{c_void, CStr};
use core::ptr;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use poolmalloc_core::config::{MAX_PURGE_DELAY_MS, PURGER_STACK_BYTES};
use poolmalloc_core::{Core, PageSource, Purger, PURGE_EVENT};

use crate::sync::Mutex;

/// What the purger thread asks of a core.
pub(crate) trait Target: Sync {
    /// `Core::purge`: the pass if due; the milliseconds until the next, `None` if none waits.
    fn purge(&self) -> Option<u64>;
    /// Who runs the core's passes.
    fn purger(&self) -> Purger;
    /// `Core::set_purger`.
    fn set_purger(&self, purger: Purger);
    /// `Core::purge_waits`.
    fn purge_waits(&self) -> bool;
}

impl<S: PageSource> Target for Core<S> {
    fn purge(&self) -> Option<u64> {
        Core::purge(self)
    }

    fn purger(&self) -> Purger {
        Core::purger(self)
    }

    fn set_purger(&self, purger: Purger) {
        Core::set_purger(self, purger)
    }

    fn purge_waits(&self) -> bool {
        Core::purge_waits(self)
    }
}

/// A core's entry in the purger's list, kept in the memory of what it names (the global home's
/// static, a heap's shared state).
pub(crate) struct Node {
    target: *const dyn Target,
    next: Cell<*const Node>,
    prev: Cell<*const Node>,
    linked: Cell<bool>,
}

// SAFETY: the links are only touched under `LIST`'s lock; `target` is read-only and points to a
// `Sync` core that outlives the node's time on the list (`unregister` before it goes).
unsafe impl Sync for Node {}
// SAFETY: as for `Sync`: nothing in a node is tied to a thread.
unsafe impl Send for Node {}

impl Node {
    /// An entry for `target`, not yet on the list.
    pub(crate) const fn new(target: *const dyn Target) -> Node {
        Node {
            target,
            next: Cell::new(ptr::null()),
            prev: Cell::new(ptr::null()),
            linked: Cell::new(false),
        }
    }
}

/// The registered cores.
struct List {
    head: *const Node,
}

// SAFETY: the nodes are reached only under the list's mutex (see `Node`).
unsafe impl Send for List {}

/// The registered cores. Lock order: `LIST` → a core's locks (a round of passes holds it).
static LIST: Mutex<List> = Mutex::new(List { head: ptr::null() });

/// `STATE` values: no purger thread, one being started, one running.
const IDLE: u8 = 0;
const STARTING: u8 = 1;
const RUNNING: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(IDLE);

/// Whether the fork handlers are registered (once per process; a child inherits them).
static FORK_HANDLERS: AtomicU8 = AtomicU8::new(0);

/// Times the purger thread woke up and ran a round.
static WAKEUPS: AtomicUsize = AtomicUsize::new(0);

/// Times the purger thread woke up (stats).
pub(crate) fn wakeups() -> usize {
    WAKEUPS.load(Ordering::Relaxed)
}

/// Puts `node` on the list (once; again after `unregister`).
///
/// # Safety
/// `node` and its target stay where they are, alive, until `unregister(node)` returns.
pub(crate) unsafe fn register(node: &Node) {
    let mut list = LIST.lock();
    if node.linked.get() {
        return;
    }
    node.prev.set(ptr::null());
    node.next.set(list.head);
    if !list.head.is_null() {
        // SAFETY: linked nodes are alive (precondition of `register`); we hold the lock.
        unsafe { (*list.head).prev.set(node) };
    }
    list.head = node;
    node.linked.set(true);
}

/// Takes `node` off the list: when this returns, the purger is done with its core.
pub(crate) fn unregister(node: &Node) {
    let mut list = LIST.lock();
    if !node.linked.replace(false) {
        return;
    }
    let (prev, next) = (node.prev.get(), node.next.get());
    // SAFETY: neighbours are linked nodes, alive (`register`); we hold the lock.
    unsafe {
        if prev.is_null() {
            list.head = next;
        } else {
            (*prev).next.set(next);
        }
        if !next.is_null() {
            (*next).prev.set(prev);
        }
    }
}

/// Runs `f` on every registered core, under the list's lock.
fn for_each(f: &mut dyn FnMut(&dyn Target)) {
    let list = LIST.lock();
    let mut node = list.head;
    while !node.is_null() {
        // SAFETY: linked nodes and their targets are alive (`register`); we hold the lock.
        unsafe {
            f(&*(*node).target);
            node = (*node).next.get();
        }
    }
}

/// Starts the purger thread if a core asked for one (`PURGE_EVENT`) and none runs. Called by a
/// home when a step of the allocator is over: no allocator lock held, not inside the allocator.
#[inline]
pub(crate) fn start_if_requested() {
    if PURGE_EVENT.requested() {
        start();
    }
}

#[cold]
#[inline(never)]
fn start() {
    if poolmalloc_core::in_fork_window() || !PURGE_EVENT.take_request() {
        return;
    }
    if STATE
        .compare_exchange(IDLE, STARTING, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    if FORK_HANDLERS.swap(1, Ordering::Relaxed) == 0 {
        // SAFETY: registers handlers that stay valid for the process's life.
        unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    }
    if spawn() {
        STATE.store(RUNNING, Ordering::Release);
        return;
    }
    // No thread to be had: purging happens inside later allocator calls.
    for_each(&mut |core| core.set_purger(Purger::Calls));
    STATE.store(IDLE, Ordering::Release);
}

/// Creates the detached purger thread with every signal blocked; false if it cannot be had.
fn spawn() -> bool {
    // SAFETY: plain pthread calls on attribute and signal-set values that live on this stack;
    // the thread's entry point takes no argument. The signal mask is restored whatever happens.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_attr_init(&mut attr) != 0 {
            return false;
        }
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut thread: libc::pthread_t = 0;
        // A small stack; if the process's static TLS does not fit it, the default size.
        let mut rc = libc::EINVAL;
        if libc::pthread_attr_setstacksize(&mut attr, PURGER_STACK_BYTES) == 0 {
            rc = libc::pthread_create(&mut thread, &attr, run, ptr::null_mut());
        }
        if rc == libc::EINVAL {
            libc::pthread_attr_destroy(&mut attr);
            libc::pthread_attr_init(&mut attr);
            libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
            rc = libc::pthread_create(&mut thread, &attr, run, ptr::null_mut());
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        rc == 0
    }
}

/// The purger thread: a round of due passes, then sleep until the next is due or a core
/// notifies.
extern "C" fn run(_: *mut c_void) -> *mut c_void {
    // SAFETY: names this thread; the name is a NUL-terminated string of 13 bytes (the limit is
    // 15).
    unsafe { libc::pthread_setname_np(libc::pthread_self(), c"poolmalloc bg".as_ptr()) };
    loop {
        let seen = PURGE_EVENT.seen();
        let mut next: Option<u64> = None;
        for_each(&mut |core| {
            if core.purger() == Purger::Thread {
                if let Some(ms) = core.purge() {
                    next = Some(next.map_or(ms, |n| n.min(ms)));
                }
            }
        });
        WAKEUPS.fetch_add(1, Ordering::Relaxed);
        PURGE_EVENT.wait(seen, next.map(|ms| ms.max(1)));
    }
}

extern "C" fn fork_prepare() {
    LIST.lock_for_fork();
}

extern "C" fn fork_parent() {
    // SAFETY: `fork_prepare` locked the list on this thread just before `fork`.
    unsafe { LIST.unlock_after_fork() };
}

extern "C" fn fork_child() {
    // SAFETY: the child's only thread; the list's lock was taken by `fork_prepare` on it.
    unsafe { LIST.reset_in_child() };
    PURGE_EVENT.reset_in_child();
    STATE.store(IDLE, Ordering::Relaxed);
    // The parent's purger did not come along: the child asks for its own, lazily, if something
    // of its cores waits.
    let mut waits = false;
    for_each(&mut |core| waits |= core.purger() == Purger::Thread && core.purge_waits());
    if waits {
        PURGE_EVENT.notify(true);
    }
}

/// `POOLMALLOC_PURGE_DELAY_MS` and `POOLMALLOC_PURGER`, read without allocating; a bad value
/// is named in one warning line, with the allowed values, and ignored.
pub(crate) fn settings_from_env() -> (Option<u64>, Option<Purger>) {
    let delay = env_setting(c"POOLMALLOC_PURGE_DELAY_MS").and_then(|v| {
        let ms = parse_ms(v);
        if ms.is_none() {
            warn_setting(
                "POOLMALLOC_PURGE_DELAY_MS",
                v,
                "a whole number of milliseconds from 0 (at once) to 3600000",
            );
        }
        ms
    });
    let purger = env_setting(c"POOLMALLOC_PURGER").and_then(|v| match v {
        b"thread" => Some(Purger::Thread),
        b"calls" => Some(Purger::Calls),
        other => {
            warn_setting("POOLMALLOC_PURGER", other, "one of thread, calls");
            None
        }
    });
    (delay, purger)
}

/// A purge delay in milliseconds: decimal digits, at most `MAX_PURGE_DELAY_MS`.
pub(crate) fn parse_ms(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let ms = v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    (ms <= MAX_PURGE_DELAY_MS).then_some(ms)
}

/// The variable's value, if set and not empty, read without allocating (every setting of the
/// allocator's, the C library's mode switches too).
pub fn env_setting(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv returns null or a NUL-terminated string that lives as long as the
    // environment is not changed, which nothing does while the allocator starts.
    unsafe {
        let v = libc::getenv(name.as_ptr());
        if v.is_null() {
            return None;
        }
        let v = CStr::from_ptr(v).to_bytes();
        (!v.is_empty()).then_some(v)
    }
}

/// The one warning of a bad setting: one line naming the setting, its value and the allowed
/// values (`allowed` follows "is not"), written to stderr without allocating.
pub fn warn_setting(name: &str, value: &[u8], allowed: &str) {
    let parts: [&[u8]; 7] = [
        b"poolmalloc: ",
        name.as_bytes(),
        b"=",
        value,
        b" is not ",
        allowed.as_bytes(),
        b"; ignored\n",
    ];
    for part in parts {
        // SAFETY: writes initialised bytes of `part` to stderr.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ms;

    #[test]
    fn delays_parse_within_their_range_only() {
        assert_eq!(parse_ms(b"0"), Some(0));
        assert_eq!(parse_ms(b"20"), Some(20));
        assert_eq!(parse_ms(b"3600000"), Some(3_600_000));
        for bad in [
            &b""[..],
            b"3600001",
            b"-1",
            b"1.5",
            b"20ms",
            b" 20",
            b"99999999999",
        ] {
            assert_eq!(parse_ms(bad), None, "{:?}", std::str::from_utf8(bad));
        }
    }
}

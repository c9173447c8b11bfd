//! The module's allocator: power-of-two size classes with one free list each, carved from pages the module grows
//! its memory by. A few hundred bytes of code where a general-purpose allocator costs kilobytes (this one replaced
//! `talc`, about 0.6 KB brotli smaller), and fast: an allocation pops a list or bumps a pointer, a free pushes.
//!
//! What it gives up: a block is at most twice the size asked for, and a freed block is only reused for its own
//! class (Wasm memory never shrinks anyway). The SDK's allocations are few shapes — event texts, a few request
//! bodies, the queue's vectors — whose peaks the outbox bounds, so that is a few hundred KB at worst.
//!
//! Single-threaded by construction: the module is built without the `atomics` feature (see `lib.rs`).

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32::memory_grow;
use core::cell::UnsafeCell;
use core::ptr::null_mut;

const PAGE: usize = 65_536;
/// Classes 2^4 (16 bytes, room for the free-list link) to 2^31.
const MIN_CLASS: u32 = 4;
const CLASSES: usize = 28;

pub struct SizeClasses {
    state: UnsafeCell<State>,
}

struct State {
    /// The first free block of each class; each free block holds the address of the next (0 ends the list).
    free: [usize; CLASSES],
    /// The unused part of the memory grown so far.
    next: usize,
    end: usize,
}

// SAFETY: the module has one thread (no `atomics`), so the state is never touched concurrently.
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    pub const fn new() -> SizeClasses {
        SizeClasses { state: UnsafeCell::new(State { free: [0; CLASSES], next: 0, end: 0 }) }
    }
}

/// log2 of the block size for `layout`: the smallest power of two that holds its size and alignment.
fn class(layout: Layout) -> u32 {
    let size = layout.size().max(layout.align()).max(1 << MIN_CLASS);
    usize::BITS - (size - 1).leading_zeros()
}

unsafe impl GlobalAlloc for SizeClasses {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let c = class(layout);
        let i = (c - MIN_CLASS) as usize;
        if i >= CLASSES || layout.align() > PAGE {
            return null_mut();
        }
        // SAFETY: single-threaded (see above), and no reference to the state outlives this call.
        let s = unsafe { &mut *self.state.get() };
        let head = s.free[i];
        if head != 0 {
            // SAFETY: `head` is a free block of this class; its first word links to the next one.
            s.free[i] = unsafe { *(head as *const usize) };
            return head as *mut u8;
        }
        let block = 1usize << c;
        // Blocks are aligned to their size (at most a page), so any layout of the class fits a reused one.
        let align = block.min(PAGE);
        loop {
            let start = (s.next + align - 1) & !(align - 1);
            if let Some(end) = start.checked_add(block).filter(|&end| end <= s.end) {
                s.next = end;
                return start as *mut u8;
            }
            // 8 MiB at a time (plus the block), the first growth at start: room for a full outbox of ~200-byte
            // events (20,000, in 64 KiB blocks aligned to 64 KiB), so a burst of `track()` calls does not grow it
            // again. A growth detaches the memory's buffer, and in Chromium the first one after `js/host.js`'s
            // typed-array code was optimized deoptimizes it: compiled again in the middle of the burst, by TurboFan
            // on another thread, which on a 2-core device takes the main thread's core half the time (with 1 MiB
            // steps, the second growth came at ~5,000 events). Pages never touched cost no physical memory.
            let pages = block / PAGE + 128;
            let previous = memory_grow(0, pages);
            if previous == usize::MAX {
                return null_mut();
            }
            let base = previous * PAGE;
            if base != s.end {
                // The first growth (or memory grown by someone else): carve from the new pages only.
                s.next = base;
            }
            s.end = base + pages * PAGE;
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let i = (class(layout) - MIN_CLASS) as usize;
        // SAFETY: single-threaded; `ptr` is a block of this class that the caller gives back, at least 16 bytes and
        // aligned to its size, so it can hold the link.
        unsafe {
            let s = &mut *self.state.get();
            *(ptr as *mut usize) = s.free[i];
            s.free[i] = ptr as usize;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` (`layout` describes `ptr`, `new_size` is valid for it).
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            if class(new_layout) == class(layout) {
                return ptr;
            }
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

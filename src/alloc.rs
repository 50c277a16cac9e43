//! The global allocator of the binary and of the load benchmark's floors: mimalloc, through its
//! plain entry points wherever the alignment allows.
//!
//! Why mimalloc: a review makes dozens of small, short-lived allocations, often freed on another
//! worker thread than the one that made them. With glibc's allocator that was about a third of
//! `serve`'s instructions per review, and musl's allocator (the static container image) made a
//! review about four times slower than glibc's (README, Performance). Built with `no_thp`
//! (Cargo.toml): where the kernel grants transparent huge pages on request, mimalloc's arenas
//! otherwise took 2 MiB pages and the peak resident memory under load went from 14 to 23 MiB.
//!
//! Why not `mimalloc::MiMalloc` itself: it sends every request through mimalloc's `_aligned`
//! functions, which work out each time whether the size class is naturally aligned. Every block
//! mimalloc hands out is aligned to at least a machine word, and nearly every Rust allocation
//! (strings, vectors of pointers and of structs of them) asks for no more; those take the plain
//! `mi_malloc`, 2.4% fewer instructions per review (`review::handle` under callgrind).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block has.
const WORD: usize = std::mem::size_of::<usize>();

/// See the module documentation.
pub struct Allocator;

// SAFETY: each method forwards to the mimalloc function of the same contract; the plain ones
// are used only where the layout asks for no more than the word alignment every block has, and
// every pointer freed or resized here came from mimalloc.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: see the impl.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every alignment a layout can ask for comes back honoured, zeroed where asked, and keeps its
    /// bytes through a reallocation.
    #[test]
    fn allocations_are_aligned_zeroed_and_kept_across_realloc() {
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 24, 100, 4000, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size; the pointer is checked, written within `size`, resized
                // and freed with the layout it was made with.
                unsafe {
                    let zeroed = Allocator.alloc_zeroed(layout);
                    assert!(!zeroed.is_null());
                    assert_eq!(zeroed as usize % align, 0, "size {size} align {align}");
                    assert!(
                        std::slice::from_raw_parts(zeroed, size)
                            .iter()
                            .all(|&b| b == 0)
                    );
                    Allocator.dealloc(zeroed, layout);

                    let p = Allocator.alloc(layout);
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xa5, size);
                    let grown = Allocator.realloc(p, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "size {size} align {align}");
                    assert!(
                        std::slice::from_raw_parts(grown, size)
                            .iter()
                            .all(|&b| b == 0xa5)
                    );
                    Allocator.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                }
            }
        }
    }
}

//! Bounds over all reviews at once (issue 23, finding 1: 20 connections each declaring an 8 MiB
//! body and sending all but its last byte held 180 MB for 30 s, past the chart's 128 MiB limit).
//!
//! - **Reviews in flight**: at most [`DEFAULT_MAX_IN_FLIGHT`]; one more is answered 429 with
//!   `Retry-After` at once, before its body is read.
//! - **Body bytes held**: the bodies being read or decided hold at most
//!   [`DEFAULT_MAX_BODY_MEMORY`] bytes between them. A body reserves its declared length before
//!   the first byte is stored, and what it grows by as it arrives (the buffer's real capacity); a
//!   reservation that does not fit ends the review with 429 and `Retry-After`. Reservations are
//!   given back when the review is answered.
//!
//! - **Room for ordinary reviews**: a body of more than [`SMALL_BODY`] (1 MiB) also draws on a
//!   second budget of three quarters of the first, so such bodies can never hold the last quarter
//!   (8 MiB by default): while large stalled bodies fill their share,
//!   ordinary reviews (a few KiB) are still read and answered (attack 1 of
//!   `cargo bench --bench attacks`).
//!
//! The apiserver treats 429 as a failed call (the webhook's `failurePolicy` applies), as it would a
//! timeout; the point is that the process stays up for every other call.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reviews decided at once, at most (the apiserver sends one call per admission request).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Request body bytes held in memory at once, over all reviews: one of the largest (24 MiB, an
/// UPDATE of an object that etcd can just store, written with the apiserver's six-byte escapes)
/// beside thousands of ordinary ones (a few KiB each), or four 8 MiB reviews.
pub const DEFAULT_MAX_BODY_MEMORY: usize = 32 * 1024 * 1024;

/// A body up to this size draws on the whole budget only; a larger one on the large-body share
/// as well.
pub const SMALL_BODY: usize = 1024 * 1024;

/// Body reservations count in KiB (so that 4 GiB of budget still fits the semaphore's u32).
const UNIT: usize = 1024;

/// What `Retry-After` says, in seconds.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// The shared bounds.
pub struct Load {
    in_flight: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    /// The share of `bytes` that the parts of bodies beyond [`SMALL_BODY`] may hold.
    large: Arc<Semaphore>,
}

impl Load {
    pub fn new(max_in_flight: usize, max_body_memory: usize) -> Self {
        let units = max_body_memory.div_ceil(UNIT).max(1);
        // Three quarters, but never below one body of the largest review decided in full.
        let largest = super::routes::MAX_BODY_BYTES / UNIT;
        let large = (units - units / 4).max(largest.min(units));
        Self {
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            bytes: Arc::new(Semaphore::new(units)),
            large: Arc::new(Semaphore::new(large)),
        }
    }

    /// A place for one more review, or `None` when [`DEFAULT_MAX_IN_FLIGHT`] (or the configured
    /// number) are in flight.
    pub fn admit(&self) -> Option<Ticket> {
        let place = self.in_flight.clone().try_acquire_owned().ok()?;
        Some(Ticket {
            _place: place,
            bytes: self.bytes.clone(),
            large: self.large.clone(),
            reserved: None,
            reserved_large: None,
            reserved_units: 0,
        })
    }
}

/// One review's place and its body reservation, given back on drop.
pub struct Ticket {
    _place: OwnedSemaphorePermit,
    bytes: Arc<Semaphore>,
    large: Arc<Semaphore>,
    reserved: Option<OwnedSemaphorePermit>,
    reserved_large: Option<OwnedSemaphorePermit>,
    reserved_units: usize,
}

impl Ticket {
    /// Makes the reservation at least `total` bytes; `false` when the budget cannot cover it
    /// (nothing more is reserved then).
    pub fn reserve(&mut self, total: usize) -> bool {
        let wanted = total.div_ceil(UNIT);
        if wanted <= self.reserved_units {
            return true;
        }
        let Ok(more) = u32::try_from(wanted - self.reserved_units) else {
            return false;
        };
        // A body past SMALL_BODY holds all of its reservation in the large share too.
        let small = SMALL_BODY / UNIT;
        let in_large = |units: usize| if units > small { units } else { 0 };
        let large_more = in_large(wanted) - in_large(self.reserved_units);
        let large_permit = if large_more > 0 {
            let Ok(n) = u32::try_from(large_more) else {
                return false;
            };
            match self.large.clone().try_acquire_many_owned(n) {
                Ok(permit) => Some(permit),
                Err(_) => return false,
            }
        } else {
            None
        };
        // A large-share permit taken here goes back when this returns false.
        let Ok(permit) = self.bytes.clone().try_acquire_many_owned(more) else {
            return false;
        };
        match &mut self.reserved {
            Some(held) => held.merge(permit),
            None => self.reserved = Some(permit),
        }
        if let Some(large_permit) = large_permit {
            match &mut self.reserved_large {
                Some(held) => held.merge(large_permit),
                None => self.reserved_large = Some(large_permit),
            }
        }
        self.reserved_units = wanted;
        true
    }
}

#[cfg(test)]
impl Load {
    /// A ticket outside the in-flight cap (tests that need thousands of reservations).
    fn admit_unbounded_for_test(&self) -> Ticket {
        Ticket {
            _place: Arc::new(Semaphore::new(1))
                .try_acquire_owned()
                .expect("fresh semaphore"),
            bytes: self.bytes.clone(),
            large: self.large.clone(),
            reserved: None,
            reserved_large: None,
            reserved_units: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_and_bytes_are_given_back_when_a_review_ends() {
        let load = Load::new(2, 10 * UNIT);
        let mut a = load.admit().expect("first");
        let b = load.admit().expect("second");
        assert!(load.admit().is_none(), "a third review in flight");
        assert!(a.reserve(6 * UNIT));
        assert!(a.reserve(6 * UNIT), "already reserved");
        drop(b);
        let mut c = load.admit().expect("a place again");
        assert!(!c.reserve(5 * UNIT), "6 + 5 KiB is over 10");
        assert!(c.reserve(4 * UNIT));
        drop(a);
        assert!(c.reserve(10 * UNIT));
    }

    #[test]
    fn large_bodies_leave_a_quarter_of_the_budget_to_small_ones() {
        let mib = 1024 * 1024;
        let load = Load::new(100, 32 * mib);
        let mut stalled = Vec::new();
        for _ in 0..4 {
            let mut t = load.admit().expect("place");
            if t.reserve(8 * mib) {
                stalled.push(t);
            }
        }
        assert_eq!(
            stalled.len(),
            3,
            "three 8 MiB bodies fill the large share (24 MiB)"
        );
        let mut grown = load.admit().expect("place");
        assert!(grown.reserve(mib), "a 1 MiB body still fits");
        assert!(!grown.reserve(2 * mib), "but cannot grow past 1 MiB");
        drop(grown);
        let mut small: Vec<Ticket> = Vec::new();
        for _ in 0..8 * 1024 {
            let mut t = load.admit_unbounded_for_test();
            assert!(t.reserve(1024), "small bodies fit the last quarter");
            small.push(t);
        }
        drop(stalled);
        drop(small);
        let mut t = load.admit().expect("place");
        assert!(t.reserve(8 * mib), "all given back");
        // A budget of one largest body lets that body use all of it.
        let tight = Load::new(10, 8 * mib);
        assert!(tight.admit().expect("place").reserve(8 * mib));
    }
}

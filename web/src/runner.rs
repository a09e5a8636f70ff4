//! Coalescing of forward-pass requests. The page asks for a forward on every input and every
//! slider step; a forward on the GPU is asynchronous and one on a large model takes a while. The
//! [`Coalescer`] keeps at most one request waiting: a newer one replaces it (latest value wins),
//! so dragging a slider never builds a queue, and only one forward runs at a time.

use std::cell::{Cell, RefCell};

/// One running job at most, and one waiting slot that newer requests overwrite.
pub struct Coalescer<T> {
    busy: Cell<bool>,
    pending: RefCell<Option<T>>,
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Coalescer {
            busy: Cell::new(false),
            pending: RefCell::new(None),
        }
    }
}

impl<T> Coalescer<T> {
    /// Offers a job. Returns `true` when nothing is running, so the caller must start a loop
    /// that takes jobs with [`Coalescer::next`]; `false` when a running loop will pick it up.
    pub fn offer(&self, job: T) -> bool {
        *self.pending.borrow_mut() = Some(job);
        !self.busy.replace(true)
    }

    /// The job to run next. `None` ends the loop (and the next offer starts a new one).
    pub fn next(&self) -> Option<T> {
        let job = self.pending.borrow_mut().take();
        if job.is_none() {
            self.busy.set(false);
        }
        job
    }

    /// Forgets the running and the waiting job (the worker that ran them is gone).
    pub fn reset(&self) {
        self.busy.set(false);
        self.pending.borrow_mut().take();
    }

    /// Whether a loop is running.
    #[cfg(test)]
    pub fn is_busy(&self) -> bool {
        self.busy.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_offer_wins_while_busy() {
        let c = Coalescer::default();
        assert!(c.offer(1), "the first offer starts a loop");
        assert_eq!(c.next(), Some(1));
        // A slider drag while job 1 runs: three offers, one loop.
        assert!(!c.offer(2));
        assert!(!c.offer(3));
        assert!(!c.offer(4));
        assert_eq!(c.next(), Some(4), "only the latest value runs");
        assert!(c.is_busy());
        assert_eq!(c.next(), None, "nothing is left: the loop ends");
        assert!(!c.is_busy());
        assert!(c.offer(5), "the next offer starts a new loop");
        assert_eq!(c.next(), Some(5));
        assert_eq!(c.next(), None);
    }
}

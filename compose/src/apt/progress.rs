//! Counting the suites whose indices are read, reported to the progress sink as items (the
//! CLI draws them as a bar; libraries do not draw).

use std::sync::atomic::{AtomicU64, Ordering};

use keel_common::progress::Progress;

pub struct Steps<'a> {
    sink: &'a dyn Progress,
    done: AtomicU64,
    total: u64,
}

impl<'a> Steps<'a> {
    /// `total` steps, reported to `sink` as they finish.
    pub fn new(sink: &'a dyn Progress, total: u64) -> Self {
        sink.items(0, Some(total));
        Self {
            sink,
            done: AtomicU64::new(0),
            total,
        }
    }

    /// One more step is done.
    pub fn step(&self) {
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        self.sink.items(done, Some(self.total));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_common::progress::{Event, Recorder};

    #[test]
    fn steps_count_up_to_the_total() {
        let sink = Recorder::default();
        let steps = Steps::new(&sink, 2);
        steps.step();
        steps.step();
        assert_eq!(
            sink.events(),
            [0, 1, 2].map(|done| Event::Items {
                done,
                total: Some(2)
            })
        );
    }
}

//! [`ActiveFairPool`]: DataFusion's fair spill pool, fair among the spilling
//! operators that hold memory rather than among all that exist.
//!
//! `FairSpillPool` caps each spillable reservation at `(limit - unspillable) / n`
//! where `n` counts every registered spillable consumer. A local plan registers all
//! of its operators when it starts, so a plan with many sorts (dedup_minhash's
//! rounds: dozens per partition, most of them idle until the end) gives each a
//! sliver: at 2 GiB a sort got under 9 MiB and could not hold one batch of large
//! documents. Here `n` is the number of spillable consumers currently holding
//! memory, plus the one asking. A consumer that grew while few were active is cut
//! back at its next request once more become active (it spills), as in the fair
//! pool; unspillable memory is first come, first served within the limit.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use datafusion::common::{resources_datafusion_err, Result};
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool, MemoryReservation};

#[derive(Debug)]
pub struct ActiveFairPool {
    pool_size: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Spillable consumer id → bytes held (only consumers holding memory).
    active: HashMap<usize, usize>,
    spillable: usize,
    unspillable: usize,
}

impl ActiveFairPool {
    pub fn new(pool_size: usize) -> Self {
        Self { pool_size, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn add(&mut self, r: &MemoryReservation, bytes: usize) {
        if r.consumer().can_spill() {
            self.spillable += bytes;
            *self.active.entry(r.consumer().id()).or_default() += bytes;
        } else {
            self.unspillable += bytes;
        }
    }
}

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

impl MemoryPool for ActiveFairPool {
    fn name(&self) -> &str {
        "active_fair"
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.state().add(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        let mut s = self.state();
        if reservation.consumer().can_spill() {
            s.spillable = s.spillable.saturating_sub(shrink);
            let id = reservation.consumer().id();
            if let Some(held) = s.active.get_mut(&id) {
                *held = held.saturating_sub(shrink);
                if *held == 0 {
                    s.active.remove(&id);
                }
            }
        } else {
            s.unspillable = s.unspillable.saturating_sub(shrink);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let mut s = self.state();
        let consumer = reservation.consumer();
        let (limit, held) = if consumer.can_spill() {
            let holding = s.active.contains_key(&consumer.id());
            let n = s.active.len() + usize::from(!holding);
            (self.pool_size.saturating_sub(s.unspillable) / n.max(1), reservation.size())
        } else {
            (self.pool_size.saturating_sub(s.spillable), s.unspillable)
        };
        if held + additional > limit {
            return Err(resources_datafusion_err!(
                "Failed to allocate additional {} for {} with {} already allocated - {} is this consumer's share of \
                 the memory pool ({} limit, {} spillable and {} unspillable in use); raise --memory-limit",
                mib(additional),
                consumer.name(),
                mib(reservation.size()),
                mib(limit),
                mib(self.pool_size),
                mib(s.spillable),
                mib(s.unspillable)
            ));
        }
        s.add(reservation, additional);
        Ok(())
    }

    fn reserved(&self) -> usize {
        let s = self.state();
        s.spillable + s.unspillable
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.pool_size)
    }
}

impl fmt::Display for ActiveFairPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(pool_size: {})", self.name(), mib(self.pool_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::MemoryConsumer;
    use std::sync::Arc;

    #[test]
    fn idle_spillers_do_not_shrink_the_share() {
        let pool: Arc<dyn MemoryPool> = Arc::new(ActiveFairPool::new(100));
        let idle: Vec<_> =
            (0..50).map(|i| MemoryConsumer::new(format!("idle{i}")).with_can_spill(true).register(&pool)).collect();
        let a = MemoryConsumer::new("a").with_can_spill(true).register(&pool);
        a.try_grow(90).unwrap();
        assert!(a.try_grow(20).is_err(), "never above the limit");
        let b = MemoryConsumer::new("b").with_can_spill(true).register(&pool);
        b.try_grow(40).unwrap();
        assert!(a.try_grow(1).is_err(), "a is above its share once b is active");
        a.shrink(60);
        b.try_grow(10).unwrap();
        assert!(b.try_grow(1).is_err(), "b at its half");
        let c = MemoryConsumer::new("c").register(&pool);
        assert!(c.try_grow(70).is_err(), "unspillable within what spillers leave");
        c.try_grow(20).unwrap();
        assert_eq!(pool.reserved(), 100);
        drop(idle);
    }
}

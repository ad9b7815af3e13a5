//! The queue builds wait in before they run. Today: [`PriorityGate`], in-process — at most
//! `maxConcurrentBuilds` builds hold a slot, the others wait by priority, then age.

use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// How many builds wait and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    pub queued: usize,
    pub running: usize,
    pub max_concurrent: usize,
}

/// Admits at most `max` builds at once; waiting builds are admitted by priority, then age.
pub struct PriorityGate {
    max: usize,
    state: Mutex<GateState>,
}

struct GateState {
    running: usize,
    next_seq: u64,
    waiting: BinaryHeap<Waiter>,
}

struct Waiter {
    priority: i32,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.seq) == (other.priority, other.seq)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Max-heap: higher priority first, then the older (smaller seq) first.
        self.priority.cmp(&other.priority).then(other.seq.cmp(&self.seq))
    }
}

/// A running build's slot; freeing it admits the next waiter.
pub struct Permit {
    gate: Arc<PriorityGate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release();
    }
}

/// Removes a waiter that gave up (its build was cancelled), returning a slot it was handed.
struct WaitGuard {
    gate: Arc<PriorityGate>,
    seq: u64,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        if rx.try_recv().is_ok() {
            // A slot was handed over as we gave up: pass it on.
            self.gate.release();
        } else {
            self.gate.lock().waiting.retain(|w| w.seq != self.seq);
        }
    }
}

impl PriorityGate {
    pub fn new(max: usize) -> PriorityGate {
        PriorityGate { max, state: Mutex::new(GateState { running: 0, next_seq: 0, waiting: BinaryHeap::new() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn status(&self) -> QueueStatus {
        let s = self.lock();
        QueueStatus { queued: s.waiting.len(), running: s.running, max_concurrent: self.max }
    }

    pub async fn acquire(self: &Arc<Self>, priority: i32) -> Permit {
        let (tx, rx) = oneshot::channel();
        let seq = {
            let mut s = self.lock();
            if s.running < self.max && s.waiting.is_empty() {
                s.running += 1;
                return Permit { gate: self.clone() };
            }
            let seq = s.next_seq;
            s.next_seq += 1;
            s.waiting.push(Waiter { priority, seq, wake: tx });
            seq
        };
        let mut guard = WaitGuard { gate: self.clone(), seq, rx: Some(rx) };
        let rx = guard.rx.as_mut().expect("set just above");
        // The sender lives in the heap until a release pops it, so this only ends by a wake.
        let _ = rx.await;
        guard.rx = None;
        Permit { gate: self.clone() }
    }

    /// Hand the freed slot to the best waiter, or free it.
    fn release(&self) {
        let mut s = self.lock();
        while let Some(waiter) = s.waiting.pop() {
            if waiter.wake.send(()).is_ok() {
                return;
            }
        }
        s.running = s.running.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_gate_admits_by_priority_then_age() {
        let gate = Arc::new(PriorityGate::new(1));
        let first = gate.acquire(0).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [("low", 0), ("high", 5), ("low2", 0)] {
            let gate = gate.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let _p = gate.acquire(priority).await;
                order.lock().unwrap().push(name);
            }));
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(gate.status().queued, 3);
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["high", "low", "low2"]);
        assert_eq!(gate.status(), QueueStatus { queued: 0, running: 0, max_concurrent: 1 });
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_no_trace() {
        let gate = Arc::new(PriorityGate::new(1));
        let first = gate.acquire(0).await;
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _p = gate.acquire(0).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(gate.status().queued, 1);
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(gate.status().queued, 0);
        drop(first);
        assert_eq!(gate.status().running, 0);
        let _again = gate.acquire(0).await;
        assert_eq!(gate.status().running, 1);
    }
}

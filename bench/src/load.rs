//! Closed-loop load: a fixed number of workers, each sending its next call when the previous
//! one is answered, for a fixed time; every latency is kept for the percentiles.

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// What one load run measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Calls answered with OK.
    pub ok: u64,
    /// Calls answered with an error.
    pub errors: u64,
    /// Length of the measured window.
    pub seconds: f64,
    /// Latency of every call, microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// p50, p90, p99 and max, microseconds, when a tool gave only those.
    pub summary_us: Option<[u32; 4]>,
}

impl Measured {
    /// OK calls per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Adds `other`, measured in another window of the same scenario. Where only a tool's
    /// summary is known, each percentile is the larger of the two (an upper bound).
    pub fn merge(&mut self, other: Measured) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.seconds += other.seconds;
        self.latencies_us.extend(other.latencies_us);
        self.latencies_us.sort_unstable();
        self.summary_us = match (self.summary_us, other.summary_us) {
            (Some(a), Some(b)) => Some(std::array::from_fn(|i| a[i].max(b[i]))),
            (a, b) => a.or(b),
        };
    }

    /// These percentiles instead of every latency.
    pub fn with_percentiles(mut self, p50: u32, p90: u32, p99: u32, max: u32) -> Self {
        self.summary_us = Some([p50, p90, p99, max]);
        self
    }

    /// The `p`-th percentile latency (0-100), milliseconds. With only a tool's summary, the
    /// next percentile it gave at or above `p`.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if let Some([p50, p90, p99, max]) = self.summary_us {
            let us = match p {
                p if p <= 50.0 => p50,
                p if p <= 90.0 => p90,
                p if p <= 99.0 => p99,
                _ => max,
            };
            return f64::from(us) / 1000.0;
        }
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
        f64::from(self.latencies_us[rank.min(self.latencies_us.len() - 1)]) / 1000.0
    }
}

/// Runs `call` from `workers` workers for `warm_up` (not measured) then `duration`. `call`
/// gets the worker index and its call count and says whether the call succeeded.
pub async fn drive<F, Fut>(
    workers: usize,
    warm_up: Duration,
    duration: Duration,
    call: F,
) -> Measured
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let start = Instant::now() + warm_up;
    let end = start + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut measured = Measured::default();
                let mut n = 0;
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let ok = call(worker, n).await;
                    n += 1;
                    if sent < start {
                        continue;
                    }
                    let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                    measured.latencies_us.push(micros);
                    if ok {
                        measured.ok += 1;
                    } else {
                        measured.errors += 1;
                    }
                }
                measured
            })
        })
        .collect();
    let mut total = Measured::default();
    for task in tasks {
        let part = task.await.expect("a load worker panicked");
        total.ok += part.ok;
        total.errors += part.errors;
        total.latencies_us.extend(part.latencies_us);
    }
    total.seconds = duration.as_secs_f64();
    total.latencies_us.sort_unstable();
    total
}

/// Busy loops at the lowest CPU priority (`SCHED_IDLE` on Linux, as the auth service's
/// password hashing threads), one per thread, until dropped: a control that saturates the
/// cores with work every other thread may preempt, and nothing else.
///
/// With [`Turns::Yield`] each loop also gives up its core at every turn (`sched_yield`), which
/// a password hash, one long library call, cannot do. The two controls side by side tell a
/// tail lengthened by cores kept busy from one lengthened by a kernel that lets a woken thread
/// wait for the busy one's time slice rather than preempt it at once. With [`Turns::Sweep`]
/// each loop works through as much memory as a password hash does, as a hash does: what it
/// adds to the tail over [`Turns::Spin`] is what the hash's use of the caches and the memory
/// bus costs the other threads, which no priority can spare them.
#[derive(Debug)]
pub struct IdleSpinners {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// What a busy loop of [`IdleSpinners`] does at each turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turns {
    /// Counts, never entering the kernel.
    Spin,
    /// Counts and yields its core.
    Yield,
    /// Mixes [`SWEPT_BYTES`] of memory, block by block, each block with one read from an
    /// index the last block gives (as Argon2's passes go over their memory).
    Sweep,
}

/// The memory a password hash works in: the auth service's Argon2id cost (19 MiB).
pub const SWEPT_BYTES: usize = 19 * 1024 * 1024;

/// One pass of a [`Turns::Sweep`] loop over `memory`, in blocks of 128 words (1 KiB), or
/// until `stop`.
fn sweep(memory: &mut [u64], stop: &std::sync::atomic::AtomicBool) {
    const BLOCK: usize = 128;
    let blocks = memory.len() / BLOCK;
    for block in 1..blocks {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let (done, rest) = memory.split_at_mut(block * BLOCK);
        let previous = &done[(block - 1) * BLOCK..];
        let other = usize::try_from(previous[0] % block as u64).unwrap_or(0) * BLOCK;
        let reference = &done[other..other + BLOCK];
        let current = &mut rest[..BLOCK];
        for ((word, before), referred) in current.iter_mut().zip(previous).zip(reference) {
            *word = word
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(before ^ referred);
        }
    }
}

impl IdleSpinners {
    /// `count` busy loops.
    pub fn start(count: usize, turns: Turns) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..count)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    #[cfg(target_os = "linux")]
                    let _ = thread_priority::set_thread_priority_and_policy(
                        thread_priority::thread_native_id(),
                        thread_priority::ThreadPriority::Min,
                        thread_priority::ThreadSchedulePolicy::Normal(
                            thread_priority::NormalThreadSchedulePolicy::Idle,
                        ),
                    );
                    #[cfg(not(target_os = "linux"))]
                    let _ = thread_priority::set_current_thread_priority(
                        thread_priority::ThreadPriority::Min,
                    );
                    let mut memory = match turns {
                        Turns::Sweep => (0..SWEPT_BYTES / 8).map(|i| i as u64).collect(),
                        Turns::Spin | Turns::Yield => Vec::new(),
                    };
                    let mut n = 0_u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        n = std::hint::black_box(n.wrapping_add(1));
                        match turns {
                            Turns::Spin => {}
                            Turns::Yield => std::thread::yield_now(),
                            Turns::Sweep => sweep(std::hint::black_box(&mut memory), &stop),
                        }
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for IdleSpinners {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_mixes_every_block_but_the_first_and_stops_when_told() {
        let start: Vec<u64> = (0..4 * 128).collect();
        let mut memory = start.clone();
        let stop = std::sync::atomic::AtomicBool::new(false);
        sweep(&mut memory, &stop);
        assert_eq!(memory[..128], start[..128]);
        for block in 1..4 {
            let range = block * 128..(block + 1) * 128;
            assert!(
                memory[range.clone()]
                    .iter()
                    .zip(&start[range])
                    .all(|(after, before)| after != before),
                "block {block} was left as it was"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let before = memory.clone();
        sweep(&mut memory, &stop);
        assert_eq!(memory, before, "a stopped sweep wrote");
    }

    #[test]
    fn sweeping_loops_end_when_dropped() {
        let spinners = IdleSpinners::start(2, Turns::Sweep);
        std::thread::sleep(Duration::from_millis(100));
        let dropping = Instant::now();
        drop(spinners);
        // The loops run at idle priority, so they see the stop only when a core is free: with
        // two busy loops of normal priority beside this test, dropping took over 2 s.
        assert!(dropping.elapsed() < Duration::from_secs(20));
    }
}

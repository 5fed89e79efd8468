//! The async runtime quinn runs on, for the broker and the CLI alike:
//! tokio's, with connection timers that do not wake the runtime needlessly.
//!
//! quinn moves each connection's timer on almost every packet: loss
//! detection when it sends, the ACK delay when it receives. Tokio wakes its
//! own I/O driver (an eventfd write, then one more `epoll_wait`) whenever a
//! timer moves earlier than the deadline the driver last parked with, even
//! when the runtime's own thread moves it and the driver is not parked
//! (tokio-rs/tokio#5207). That was two system calls per packet on the
//! request path, on both ends of the tunnel.
//!
//! [`CoarseTimer`] keeps quinn's exact deadline but registers it with tokio
//! rounded down to a fixed grid, and moves the registration only when it
//! would otherwise fire late. A busy connection's deadlines drift slowly
//! later, so the registration mostly stays where it is. It may come due
//! early; then it moves to the real deadline, which is later (no wake-up
//! needed), and the timer completes only once that deadline has passed.
//! It never fires late.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use quinn::{AsyncTimer, AsyncUdpSocket, Runtime, TokioRuntime};

/// The grid registrations are rounded down to. An early registration costs
/// one extra wake-up per grid step while a connection is busy; a coarse
/// grid absorbs the jitter between the ACK-delay and loss-detection
/// deadlines (about 25 ms ahead, a millisecond apart).
const GRID: Duration = Duration::from_millis(20);

/// Tokio's runtime for quinn, with [`CoarseTimer`]s.
#[derive(Debug, Default)]
pub struct QuicRuntime;

impl QuicRuntime {
    pub fn shared() -> Arc<dyn Runtime> {
        Arc::new(Self)
    }
}

impl Runtime for QuicRuntime {
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        let at = registration(deadline, Instant::now());
        Box::pin(CoarseTimer {
            sleep: Box::pin(tokio::time::sleep_until(at.into())),
            deadline,
        })
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        TokioRuntime.spawn(future);
    }

    fn wrap_udp_socket(
        &self,
        socket: std::net::UdpSocket,
    ) -> std::io::Result<Arc<dyn AsyncUdpSocket>> {
        TokioRuntime.wrap_udp_socket(socket)
    }
}

/// A connection timer: completes at `deadline`, registered with tokio at
/// a grid point at or before it.
pub struct CoarseTimer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    deadline: Instant,
}

impl fmt::Debug for CoarseTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoarseTimer")
            .field("deadline", &self.deadline)
            .field("registered", &self.sleep.deadline())
            .finish()
    }
}

impl AsyncTimer for CoarseTimer {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        let this = self.get_mut();
        this.deadline = deadline;
        // A registration at or before the deadline fires in time: leave it.
        if this.sleep.deadline().into_std() > deadline {
            let at = registration(deadline, Instant::now());
            this.sleep.as_mut().reset(at.into());
        }
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Each pass either completes, waits, or moves the registration to
        // a later point; three passes cover time moving on between them.
        for _ in 0..3 {
            if Instant::now() >= this.deadline {
                return Poll::Ready(());
            }
            if Future::poll(this.sleep.as_mut(), cx).is_pending() {
                return Poll::Pending;
            }
            // Came due early: wait on for the real deadline.
            let at = registration(this.deadline, Instant::now());
            this.sleep.as_mut().reset(at.into());
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Where to register `deadline` with tokio: the grid point at or before
/// it, unless that has passed already.
fn registration(deadline: Instant, now: Instant) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let Some(since) = deadline.checked_duration_since(epoch) else {
        return deadline;
    };
    let grid = GRID.as_nanos();
    let point = u64::try_from(since.as_nanos() / grid * grid)
        .ok()
        .and_then(|nanos| epoch.checked_add(Duration::from_nanos(nanos)));
    match point {
        Some(p) if p > now => p,
        _ => deadline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_never_after_the_deadline_nor_in_the_past() {
        let now = Instant::now();
        for ms in [0u64, 1, 5, 19, 20, 21, 25, 26, 100, 30_000] {
            let deadline = now + Duration::from_millis(ms);
            let at = registration(deadline, now);
            assert!(at <= deadline, "{ms} ms: registered after the deadline");
            assert!(
                at > now || at == deadline,
                "{ms} ms: registered in the past"
            );
        }
    }

    #[test]
    fn slowly_later_deadlines_share_a_registration() {
        let now = Instant::now();
        let distinct: std::collections::HashSet<Instant> = (0..100u64)
            .map(|us| {
                registration(
                    now + Duration::from_secs(1) + Duration::from_micros(us * 100),
                    now,
                )
            })
            .collect();
        // A 10 ms drift crosses at most one grid line.
        assert!(distinct.len() <= 2, "{} registrations", distinct.len());
    }

    #[tokio::test]
    async fn a_timer_completes_at_its_deadline_not_at_its_registration() {
        let deadline = Instant::now() + Duration::from_millis(55);
        let mut timer = QuicRuntime.new_timer(deadline);
        std::future::poll_fn(|cx| timer.as_mut().poll(cx)).await;
        assert!(Instant::now() >= deadline);
    }

    #[tokio::test]
    async fn moving_a_deadline_earlier_is_honoured() {
        let start = Instant::now();
        let mut timer = QuicRuntime.new_timer(start + Duration::from_secs(30));
        timer.as_mut().reset(start + Duration::from_millis(7));
        // Far less than the first deadline: the move was not lost.
        tokio::time::timeout(
            Duration::from_secs(20),
            std::future::poll_fn(|cx| timer.as_mut().poll(cx)),
        )
        .await
        .expect("the timer kept its first, later deadline");
        assert!(Instant::now() >= start + Duration::from_millis(7));
    }
}

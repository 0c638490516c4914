//! sd_notify(3) for the three daemons' `Type=notify` units (`*/deploy/*.service`): once a
//! daemon is ready (each decides when: listening, mentor table loaded, control port up),
//! [`ready_then_watchdog`] sends `READY=1`, then `WATCHDOG=1` every half `WATCHDOG_USEC`
//! if the service manager asked for it. Without `NOTIFY_SOCKET` it sends nothing. The
//! future never completes; each daemon polls it in its main loop's `select!`, so a stalled
//! loop stops the pings and systemd restarts the service.

use std::convert::Infallible;
use std::time::Duration;

/// `READY=1`, then the watchdog pings; never completes.
pub async fn ready_then_watchdog() -> Infallible {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        let mut tick = tokio::time::interval(Duration::from_micros(usec / 2));
        loop {
            tick.tick().await;
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        }
    }
    std::future::pending().await
}

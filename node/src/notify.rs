//! A shard-local, single-threaded broadcast notification: appenders call
//! [`LocalNotify::notify_all`], waiting fetches hold a [`Listen`] future.
//!
//! Invariant: a waiter is registered only while its `Listen` is alive (removed on
//! drop), so an idle partition polled forever by long-poll fetches keeps at most
//! one entry per live fetch.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Wakes every current listener when something happened.
#[derive(Debug, Default)]
pub struct LocalNotify {
    epoch: Cell<u64>,
    next_id: Cell<u64>,
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl LocalNotify {
    /// Marks an event and wakes all listeners.
    pub fn notify_all(&self) {
        self.epoch.set(self.epoch.get() + 1);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, waker) in waiters {
            waker.wake();
        }
    }

    /// A future that completes at the next [`LocalNotify::notify_all`] after this call.
    pub fn listen(self: &Rc<Self>) -> Listen {
        Listen { notify: self.clone(), epoch: self.epoch.get(), id: None }
    }

    /// Registered waiters (for tests and metrics).
    pub fn waiter_count(&self) -> usize {
        self.waiters.borrow().len()
    }
}

/// Completes once the notifier's epoch moved past the one seen at creation.
#[derive(Debug)]
pub struct Listen {
    notify: Rc<LocalNotify>,
    epoch: u64,
    id: Option<u64>,
}

impl Future for Listen {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.epoch.get() != self.epoch {
            return Poll::Ready(());
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                let id = self.notify.next_id.get();
                self.notify.next_id.set(id + 1);
                self.id = Some(id);
                id
            }
        };
        self.notify.waiters.borrow_mut().insert(id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.notify.waiters.borrow_mut().remove(&id);
        }
    }
}

/// Completes when any of `listens` completes (immediately if it is empty: callers
/// pair it with a timer and must not wait on nothing).
pub struct AnyOf(pub Vec<Listen>);

impl Future for AnyOf {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.is_empty() {
            return Poll::Ready(());
        }
        let mut ready = false;
        for listen in self.0.iter_mut() {
            ready |= Pin::new(listen).poll(cx).is_ready();
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn wakes_and_unregisters() {
        let notify = Rc::new(LocalNotify::default());
        let mut listen = notify.listen();
        assert!(future::block_on(future::poll_once(&mut listen)).is_none());
        assert_eq!(notify.waiter_count(), 1);
        drop(listen);
        assert_eq!(notify.waiter_count(), 0);

        let mut listen = notify.listen();
        assert!(future::block_on(future::poll_once(&mut listen)).is_none());
        notify.notify_all();
        assert_eq!(notify.waiter_count(), 0);
        assert!(future::block_on(future::poll_once(&mut listen)).is_some());

        let other = Rc::new(LocalNotify::default());
        let mut any = AnyOf(vec![notify.listen(), other.listen()]);
        assert!(future::block_on(future::poll_once(&mut any)).is_none());
        other.notify_all();
        assert!(future::block_on(future::poll_once(&mut any)).is_some());
    }
}

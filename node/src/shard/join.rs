//! Running several futures of one task concurrently, polled in list order.
//!
//! A partition orders appends by itself: `Partition::append` checks sequences and reserves
//! offsets synchronously, and `Shard::produce_local` calls it for every part before it
//! returns the future this joins. Across the owner groups of one request, and across the
//! requests of one connection, order comes from polling: on the first poll each future runs
//! up to its first await in list order (an owner group's `produce_local` call, or the send
//! of its cross-shard call), and the connection polls a request once before reading the next.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Awaits every future; outputs in input order. Bounded by the input length.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future completed")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn first_polls_run_in_list_order_and_outputs_keep_it() {
        let log = RefCell::new(Vec::new());
        let step = |i: u32, yields: u32| {
            let log = &log;
            async move {
                log.borrow_mut().push(i);
                for _ in 0..yields {
                    futures_lite::future::yield_now().await;
                }
                i * 10
            }
        };
        let out = futures_lite::future::block_on(join_all(vec![step(0, 3), step(1, 0), step(2, 1)]));
        assert_eq!(out, vec![0, 10, 20]);
        assert_eq!(*log.borrow(), vec![0, 1, 2]);
    }
}

//! Token-paged listings exposed as streams: the next page is requested only when the
//! previous one has been consumed.

use std::future::Future;

use futures::Stream;
use futures::stream::{self, StreamExt};

use crate::error::Result;

enum State {
    Start,
    Next(String),
    Done,
}

/// Turns `fetch(page_token) -> (items, next_token)` into a stream of items. An empty or
/// missing next token ends the stream.
pub fn paginate<T, F, Fut>(fetch: F) -> impl Stream<Item = Result<T>>
where
    F: Fn(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>)>>,
{
    stream::unfold((State::Start, fetch), |(state, fetch)| async move {
        let token = match state {
            State::Start => None,
            State::Next(t) => Some(t),
            State::Done => return None,
        };
        match fetch(token).await {
            Ok((items, next)) => {
                let state = match next {
                    Some(t) if !t.is_empty() => State::Next(t),
                    _ => State::Done,
                };
                let items: Vec<Result<T>> = items.into_iter().map(Ok).collect();
                Some((stream::iter(items), (state, fetch)))
            }
            Err(e) => Some((stream::iter(vec![Err(e)]), (State::Done, fetch))),
        }
    })
    .flatten()
}

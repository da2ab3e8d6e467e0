//! Token-paged listings as streams: the next page is requested only when the previous one has
//! been consumed.

use std::future::Future;

use futures::Stream;
use futures::stream::{self, StreamExt};

enum State {
    Start,
    Next(String),
    Done,
}

/// Turns `fetch(token) -> (items, next token)` into a stream of items. The first call gets
/// `None`; an absent or empty next token ends the stream; an error ends it after being yielded.
pub fn paginate<T, E, F, Fut>(fetch: F) -> impl Stream<Item = Result<T, E>>
where
    F: Fn(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), E>>,
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
                let items: Vec<Result<T, E>> = items.into_iter().map(Ok).collect();
                Some((stream::iter(items), (state, fetch)))
            }
            Err(e) => Some((stream::iter(vec![Err(e)]), (State::Done, fetch))),
        }
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn pages_follow_tokens_lazily() {
        let calls = AtomicUsize::new(0);
        let s = super::paginate(|token: Option<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let page = token.map_or(0, |t| t.parse::<usize>().unwrap_or(99));
                let next = (page < 2).then(|| (page + 1).to_string());
                Ok::<_, String>((vec![page * 10, page * 10 + 1], next))
            }
        });
        let all: Vec<usize> = s.try_collect().await.expect("pages");
        assert_eq!(all, vec![0, 1, 10, 11, 20, 21]);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
